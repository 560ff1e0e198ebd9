import numpy as np
import pytest

from keras_swish.expressions.formula import Expression, FormulaError, parse
from keras_swish.expressions.space import BINARY, UNARY, SearchSpace


def test_the_paper_sets_in_order():
    assert len(UNARY) == 25 and len(BINARY) == 10
    assert list(UNARY)[:3] == ["x", "neg", "abs"] and list(UNARY)[-1] == "beta"
    assert list(BINARY) == [
        "add",
        "mul",
        "sub",
        "div",
        "max",
        "min",
        "sigmoid_mul",
        "exp_sq_diff",
        "exp_abs_diff",
        "beta_mix",
    ]
    u = parse("sin(x)").root.args[0]  # the AST of x
    printed = {name: str(Expression(c.build(u))) for name, c in UNARY.items()}
    assert printed["log_abs"] == "log(eps + abs(x))"
    assert printed["softplus"] == "softplus(x)"
    assert printed["exp_neg_square"] == "exp(-(x ** 2))"
    assert printed["beta"] == "beta"
    v = parse("cos(x)").root
    assert str(Expression(BINARY["beta_mix"].build(u, v))) == "beta * x + cos(x) * (1 - beta)"


def test_sizes():
    assert SearchSpace().size == 25 * 25 * 10 == 6250
    assert SearchSpace(units=2).size == (1 * 1 * 6250) * (2 * 2 * 6250)
    assert SearchSpace(units=3).size == 6250 * (4 * 6250) * (9 * 6250)
    small = SearchSpace(units=2, unary=["x", "sin", "beta"], binary=["add", "max"])
    assert small.size == (3 * 3 * 2) * (4 * 3 * 3 * 2)
    assert small.size == sum(1 for _ in small.enumerate())
    assert SearchSpace().describe() == (
        "1 core unit, 25 unary × 10 binary functions: 6,250 candidate token sequences"
    )


def test_steps_and_decode():
    space = SearchSpace(units=3, unary=["x", "sigmoid", "beta_x"], binary=["add", "mul"])
    steps = space.steps()
    assert [kind for kind, _ in steps] == ["input", "input", "unary", "unary", "binary"] * 3
    assert steps[0] == ("input", ["x"]) and steps[5] == ("input", ["x", "u0"])
    assert steps[10] == ("input", ["x", "u0", "u1"])
    assert steps[2] == ("unary", ["x", "sigmoid", "beta_x"])
    # unit 0: x + sigmoid(x); unit 1: u0 * beta*x; unit 2: u1 + sigmoid(u0)
    tokens = [0, 0, 0, 1, 0] + [1, 0, 0, 2, 1] + [2, 1, 0, 1, 0]
    expr = space.decode(tokens)
    assert str(expr) == "sigmoid(x + sigmoid(x)) + beta * x * (x + sigmoid(x))"
    assert space.contains(expr)
    for bad in ([0] * 14, [0, 1] + [0] * 13, [0, 0, 3] + [0] * 12, [True] + [0] * 14):
        with pytest.raises(ValueError, match="[Tt]oken"):
            space.decode(bad)


def test_enumerate_is_lexicographic():
    space = SearchSpace(unary=["x", "sin"], binary=["add", "sub"])
    tokens = [t for t, _ in space.enumerate()]
    assert tokens == sorted(tokens) and len(tokens) == len(set(tokens)) == 8
    first = next(iter(space.enumerate()))
    assert first == ((0, 0, 0, 0, 0), parse("x + x"))


def test_invalid_arguments_name_the_bad_value():
    with pytest.raises(ValueError, match="'cbrt'.*Allowed: x, neg, abs"):
        SearchSpace(unary=["x", "cbrt"])
    with pytest.raises(ValueError, match="'pow'.*Allowed: add, mul"):
        SearchSpace(binary=["pow"])
    with pytest.raises(ValueError, match="units"):
        SearchSpace(units=0)
    with pytest.raises(ValueError, match="list of names"):
        SearchSpace(unary="sin")


@pytest.mark.parametrize(
    "formula",
    [
        "x * sigmoid(beta * x)",
        "sigmoid(beta * x) * x",
        "max(x, sigmoid(x))",
        "cos(x) - x",
        "min(x, sin(x))",
        "max(x, tanh(x))",
        "sinc(x) + x",
        "x / (eps + x ** 2)",
        "exp(-(beta * (x - sin(x)) ** 2))",
        "beta * x + (1 - beta) * softplus(x)",
        "max(0, x) + beta",
    ],
)
def test_one_unit_members(formula):
    assert SearchSpace().contains(formula)
    assert SearchSpace(units=2).contains(formula)


def test_membership_needs_enough_units():
    two_units = "atan(x) * atan(x) - x"  # unit 0: atan(x)·atan(x); unit 1: u0 − x
    assert not SearchSpace().contains(two_units)
    assert SearchSpace(units=2).contains(two_units)
    assert SearchSpace(units=2).contains("max(atan(x), atan(x)) ** 2 - x")
    assert not SearchSpace().contains("sin(sin(sin(sin(x))))")
    assert not SearchSpace(units=3).contains("sin(sin(sin(sin(x))))")
    assert not SearchSpace().contains("x")  # a candidate is a unit's output
    assert not SearchSpace().contains("x ** 4 + x")
    assert SearchSpace(unary=["x", "sin"]).contains("min(x, sin(x))") is not False
    assert not SearchSpace(binary=["add"]).contains("min(x, sin(x))")
    # A unit output used twice counts once: u0 = x + sin(x); u1 = u0 * u0.
    shared = "(x + sin(x)) * (x + sin(x))"
    assert SearchSpace(units=2).contains(shared)
    three = "(x + sin(x)) * (x + cos(x))"  # u0, u1, then u2 = u0 * u1
    assert not SearchSpace(units=2).contains(three)
    assert SearchSpace(units=3).contains(three)
    with pytest.raises(FormulaError):
        SearchSpace().contains("__import__('os')")


def test_every_one_unit_candidate_round_trips_and_is_a_member():
    space = SearchSpace()
    seen = set()
    for _, expr in space.enumerate():
        text = str(expr)
        again = parse(text)
        assert again == expr and str(again) == text, text
        assert space.contains(text), text
        seen.add(expr)
    assert 2000 < len(seen) < 6250  # commutative duplicates share a canonical form


@pytest.mark.parametrize("units", [1, 2, 3])
def test_sampled_candidates_round_trip_and_are_members(units):
    space = SearchSpace(units=units)
    rng = np.random.default_rng(units)
    for _ in range(2000 if units < 3 else 700):
        tokens = space.sample(rng)
        expr = space.decode(tokens)
        text = str(expr)
        again = parse(text)
        assert again == expr and str(again) == text, (tokens, text)
        assert space.contains(again), text
    assert space.sample(np.random.default_rng(7)) == space.sample(np.random.default_rng(7))
