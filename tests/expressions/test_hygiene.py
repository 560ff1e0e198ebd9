import re

import numpy as np
import pytest

from keras_swish.expressions import hygiene
from keras_swish.expressions.formula import parse
from keras_swish.expressions.hygiene import CandidateRejected, check, collapse, equivalence_key
from keras_swish.expressions.space import SearchSpace

PAPER_BEST = [
    "x * sigmoid(beta * x)",
    "max(x, sigmoid(x))",
    "cos(x) - x",
    "min(x, sin(x))",
    "atan(x) ** 2 - x",
    "max(x, tanh(x))",
    "sinc(x) + x",
    "x * asinh(x) ** 2",
]


def test_probe_is_2001_points_on_minus_6_6_with_0():
    assert hygiene.PROBE.shape == (2001,) and hygiene.PROBE.dtype == np.float64
    assert hygiene.PROBE[0] == -6 and hygiene.PROBE[-1] == 6 and 0.0 in hygiene.PROBE


@pytest.mark.parametrize("formula", PAPER_BEST + ["x / (eps + x)", "max(0, x)", "1e-05 * x"])
def test_good_candidates_pass(formula):
    check(parse(formula))


@pytest.mark.parametrize(
    "formula, reason",
    [
        ("x - x", "constant"),
        ("beta", "constant"),
        ("log(abs(x) + eps) * 0", "constant"),
        ("max(x, x) - x", "constant"),
        ("sin(x) ** 2 + cos(x) ** 2", "constant"),
        ("sqrt(x)", "not finite on [-6, 6]"),
        ("log(x) + x", "not finite on [-6, 6]"),
        ("x / x", "not finite on [-6, 6]"),
        ("exp(exp(exp(x)))", "not finite on [-6, 6]"),
        ("sqrt(abs(x))", "no usable gradient"),
        ("x + sqrt(abs(x))", "no usable gradient"),
        ("log(abs(x)) * 0 + max(0, 1e-09 * x)", "not finite on [-6, 6]"),
        ("5e-07 * x", "no usable gradient"),
    ],
)
def test_bad_candidates_are_rejected_with_a_reason(formula, reason):
    with pytest.raises(CandidateRejected) as info:
        check(formula)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError) and reason in str(info.value)


def test_slope_is_exact_forward_mode():
    x = np.array([-2.0, 0.0, 1.5])
    value, slope = hygiene.value_and_slope(parse("x * sigmoid(beta * x)"), x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(value, x * s)
    np.testing.assert_allclose(slope, s + x * s * (1 - s))
    _, slope = hygiene.value_and_slope(parse("sinc(x) + abs(x)"), x)
    np.testing.assert_allclose(slope[1], 0.0)
    _, slope = hygiene.value_and_slope(parse("sqrt(abs(x))"), x)
    assert np.isnan(slope[1]) and np.all(np.isfinite(slope[[0, 2]]))


def test_equivalent_candidates_collapse():
    key = equivalence_key(parse("x"))
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert equivalence_key(parse("max(x, x)")) == key
    assert equivalence_key(parse("min(x, x)")) == key
    assert equivalence_key(parse("x * (sin(x) ** 2 + cos(x) ** 2)")) == key  # float noise
    assert equivalence_key(parse("x + x")) == equivalence_key(parse("2 * x"))
    assert equivalence_key(parse("sin(x)")) != equivalence_key(parse("cos(x)"))
    swish = parse("x * sigmoid(beta * x)")
    assert equivalence_key(swish) == equivalence_key(parse("x * sigmoid(x)"))
    betas = (0.5, 1.0, 2.0)
    assert equivalence_key(swish, betas) != equivalence_key(parse("x * sigmoid(x)"), betas)

    groups = collapse(["x", "sin(x)", "max(x, x)", parse("x + x"), "2 * x", "x"])
    assert [[str(e) for e in group] for group in groups.values()] == [
        ["x", "max(x, x)", "x"],
        ["sin(x)"],
        ["x + x", "2 * x"],
    ]


def test_one_unit_space_hygiene():
    space = SearchSpace(unary=["x", "neg", "sqrt", "sin", "beta"], binary=["add", "sub", "max"])
    candidates = [expr for _, expr in space.enumerate()]
    usable = []
    for expr in candidates:
        try:
            check(expr)
            usable.append(expr)
        except CandidateRejected as error:
            assert error.reason in (hygiene.NOT_FINITE, hygiene.CONSTANT, hygiene.NO_GRADIENT)
    assert parse("x - x") not in usable and parse("x + sin(x)") in usable
    groups = collapse(usable)
    assert len(groups) < len(set(usable)) < len(candidates)
    # Groups in first-seen order, each led by its first candidate and holding only its equals.
    seen, firsts = set(), []
    for expr in usable:
        if equivalence_key(expr) not in seen:
            seen.add(equivalence_key(expr))
            firsts.append(expr)
    assert [group[0] for group in groups.values()] == firsts
    assert all(len({equivalence_key(e) for e in group}) == 1 for group in groups.values())


@pytest.mark.parametrize(
    "formula",
    ["beta * x - x", "x - beta * x", "beta * beta + (1 - beta) * sigmoid(x)", "(beta - 1) * x"],
)
def test_a_candidate_constant_at_its_initial_beta_is_usable_where_beta_moves_it(formula):
    # (β − 1)·x is 0 at β = 1, where a child's β starts, but its gradient for β
    # (x times the upstream gradient) varies with x: β's first step makes it a function of x.
    with pytest.raises(CandidateRejected, match="constant"):
        check(formula)
    check(formula, trainable_beta=True)
    _, by_beta = hygiene.value_and_slope(parse(formula), wrt="beta")
    assert by_beta.max() - by_beta.min() > 0.5


@pytest.mark.parametrize(
    "formula, reason",
    [
        ("beta", "constant"),  # ∂f/∂β = 1 everywhere: β shifts a constant
        ("beta * (x - x)", "constant"),
        ("exp(-(beta * (beta * x - x) ** 2))", "constant"),  # ∂f/∂β = 0 at β = 1
        ("exp(-(beta * abs(beta * x - x)))", "constant"),  # |u|′ = 0 at u = 0, as backprop
        ("beta * 1e-07 * x", "no usable gradient"),
        ("log(beta - 1 + x * 0) + x", "not finite on [-6, 6]"),
        ("(beta - 1) * sqrt(abs(x)) + x", "no usable gradient"),  # ∞ slope at 0, β = 1
    ],
)
def test_trainable_beta_does_not_rescue_what_beta_cannot_move(formula, reason):
    with pytest.raises(CandidateRejected) as info:
        check(formula, trainable_beta=True)
    assert info.value.reason == reason


def test_the_beta_derivative_is_exact_forward_mode():
    x = np.array([-2.0, 0.0, 1.5])
    _, by_beta = hygiene.value_and_slope(parse("x * sigmoid(beta * x)"), x, beta=0.5, wrt="beta")
    s = 1 / (1 + np.exp(-0.5 * x))
    np.testing.assert_allclose(by_beta, x * x * s * (1 - s))
