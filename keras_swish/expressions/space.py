"""The paper's search space: core units b(u1(in1), u2(in2)).

A candidate activation is built from `units` core units. Unit i (0-based)
applies two unary functions u1, u2 to two inputs in1, in2 and combines the
results with a binary function b. Its inputs are chosen among the
pre-activation `x` and the outputs of units 0 … i−1; the candidate is the
output of the last unit. The unary and binary sets are the paper's (`UNARY`,
`BINARY`, in the paper's order), or subsets of them.

`beta` is ONE trainable weight per activation layer (per channel by
default): every `beta` in a candidate's formula — from βx, x+β, β, or the
binary functions that use it — is that same weight.

Example:

>>> space = SearchSpace(units=1)
>>> space.size
6250
>>> [kind for kind, _ in space.steps()]
['input', 'input', 'unary', 'unary', 'binary']
>>> str(space.decode([0, 0, 0, list(UNARY).index("sigmoid"), 0]))
'x + sigmoid(x)'
>>> space.contains("x * sigmoid(beta * x)")
True
"""

import dataclasses
import itertools
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from keras_swish.expressions.formula import (
    COMMUTATIVE_FUNCTIONS,
    EPS,
    Add,
    Beta,
    Call,
    Const,
    Div,
    Expression,
    Mul,
    Neg,
    Node,
    Pow,
    Sub,
    X,
    canonical,
    parse,
)


class Component(NamedTuple):
    """A unary or binary function of the search space.

    Attributes:
        name: Stable name, used in `SearchSpace(unary=..., binary=...)`.
        paper: How the paper writes it.
        build: Builds its AST from the AST(s) of its input(s).
    """

    name: str
    paper: str
    build: Callable


def _eps():
    return Const(EPS, "eps")


def _call(name, *args):
    return Call(name, args)


_UNARY_LIST = [
    Component("x", "x", lambda u: u),
    Component("neg", "−x", lambda u: Neg(u)),
    Component("abs", "|x|", lambda u: _call("abs", u)),
    Component("square", "x²", lambda u: Pow(u, 2)),
    Component("cube", "x³", lambda u: Pow(u, 3)),
    Component("sqrt", "√x", lambda u: _call("sqrt", u)),
    Component("beta_x", "βx", lambda u: Mul(Beta(), u)),
    Component("x_plus_beta", "x + β", lambda u: Add(u, Beta())),
    Component("log_abs", "log(|x| + ε)", lambda u: _call("log", Add(_call("abs", u), _eps()))),
    Component("exp", "eˣ", lambda u: _call("exp", u)),
    Component("sin", "sin(x)", lambda u: _call("sin", u)),
    Component("cos", "cos(x)", lambda u: _call("cos", u)),
    Component("sinh", "sinh(x)", lambda u: _call("sinh", u)),
    Component("cosh", "cosh(x)", lambda u: _call("cosh", u)),
    Component("tanh", "tanh(x)", lambda u: _call("tanh", u)),
    Component("asinh", "sinh⁻¹(x)", lambda u: _call("asinh", u)),
    Component("atan", "tan⁻¹(x)", lambda u: _call("atan", u)),
    Component("sinc", "sinc(x)", lambda u: _call("sinc", u)),
    Component("max0", "max(x, 0)", lambda u: _call("max", u, Const(0))),
    Component("min0", "min(x, 0)", lambda u: _call("min", u, Const(0))),
    Component("sigmoid", "σ(x)", lambda u: _call("sigmoid", u)),
    Component("softplus", "log(1 + eˣ)", lambda u: _call("softplus", u)),
    Component("exp_neg_square", "e^(−x²)", lambda u: _call("exp", Neg(Pow(u, 2)))),
    Component("erf", "erf(x)", lambda u: _call("erf", u)),
    Component("beta", "β", lambda u: Beta()),
]

_BINARY_LIST = [
    Component("add", "x1 + x2", lambda a, b: Add(a, b)),
    Component("mul", "x1 · x2", lambda a, b: Mul(a, b)),
    Component("sub", "x1 − x2", lambda a, b: Sub(a, b)),
    Component("div", "x1 / (x2 + ε)", lambda a, b: Div(a, Add(b, _eps()))),
    Component("max", "max(x1, x2)", lambda a, b: _call("max", a, b)),
    Component("min", "min(x1, x2)", lambda a, b: _call("min", a, b)),
    Component("sigmoid_mul", "σ(x1) · x2", lambda a, b: Mul(_call("sigmoid", a), b)),
    Component(
        "exp_sq_diff",
        "e^(−β(x1 − x2)²)",
        lambda a, b: _call("exp", Neg(Mul(Beta(), Pow(Sub(a, b), 2)))),
    ),
    Component(
        "exp_abs_diff",
        "e^(−β|x1 − x2|)",
        lambda a, b: _call("exp", Neg(Mul(Beta(), _call("abs", Sub(a, b))))),
    ),
    Component(
        "beta_mix",
        "βx1 + (1 − β)x2",
        lambda a, b: Add(Mul(Beta(), a), Mul(Sub(Const(1), Beta()), b)),
    ),
]

# name → Component, in the paper's order (25 unary, 10 binary functions).
UNARY = {c.name: c for c in _UNARY_LIST}
BINARY = {c.name: c for c in _BINARY_LIST}


def _names(given, table, what):
    if given is None:
        return tuple(table)
    if isinstance(given, str) or not all(isinstance(n, str) for n in given):
        raise ValueError(f"`{what}` must be a list of names. Received: {what}={given!r}")
    for name in given:
        if name not in table:
            raise ValueError(f"Unknown {what} function {name!r}. Allowed: {', '.join(table)}.")
    names = tuple(dict.fromkeys(given))
    if not names:
        raise ValueError(f"`{what}` needs at least one name. Allowed: {', '.join(table)}.")
    return names


class SearchSpace:
    """Candidates made of `units` core units over given function sets.

    A controller emits one component per step (`steps()`), as integer
    indices; `decode` turns such a token sequence into an `Expression`.

    Args:
        units: Number of core units (≥ 1).
        unary: Names of the unary functions (keys of `UNARY`); None for all 25.
        binary: Names of the binary functions (keys of `BINARY`); None for all 10.

    Example:

    >>> space = SearchSpace(units=2, unary=["x", "sin", "sigmoid"], binary=["add", "mul"])
    >>> space.describe()
    '2 core units, 3 unary × 2 binary functions: 1,296 candidate token sequences'
    >>> rng = np.random.default_rng(0)
    >>> expr = space.decode(space.sample(rng))
    >>> space.contains(expr)
    True
    """

    def __init__(self, units=1, unary=None, binary=None):
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"`units` must be an integer >= 1. Received: units={units!r}")
        self.units = int(units)
        self.unary = _names(unary, UNARY, "unary")
        self.binary = _names(binary, BINARY, "binary")
        self._unary = [UNARY[n].build for n in self.unary]
        self._binary = [BINARY[n].build for n in self.binary]
        self._unary_patterns = [build(_Hole(0)) for build in self._unary]
        self._binary_patterns = [build(_Hole(0), _Hole(1)) for build in self._binary]

    def __repr__(self):
        return (
            f"SearchSpace(units={self.units}, unary={list(self.unary)}, binary={list(self.binary)})"
        )

    def steps(self):
        """The controller's steps: `[(kind, choices), ...]`, five per unit:
        ("input", labels), ("input", labels), ("unary", names),
        ("unary", names), ("binary", names). Input labels are "x" and "u0",
        "u1", … (the outputs of earlier units)."""
        steps = []
        for i in range(self.units):
            inputs = ["x"] + [f"u{j}" for j in range(i)]
            steps += [("input", inputs), ("input", list(inputs))]
            steps += [("unary", list(self.unary)), ("unary", list(self.unary))]
            steps.append(("binary", list(self.binary)))
        return steps

    @property
    def size(self):
        """Number of token sequences: ∏ᵢ (i+1)² · U² · B over units i = 0 … N−1,
        that is (N!)² · (U²·B)ᴺ."""
        per_unit = len(self.unary) ** 2 * len(self.binary)
        return math.factorial(self.units) ** 2 * per_unit**self.units

    def describe(self):
        """One line: units, set sizes and the size of the space."""
        units = f"{self.units} core unit{'s' if self.units > 1 else ''}"
        return (
            f"{units}, {len(self.unary)} unary × {len(self.binary)} binary functions: "
            f"{self.size:,} candidate token sequences"
        )

    def _check_tokens(self, tokens):
        steps = self.steps()
        tokens = list(tokens)
        if len(tokens) != len(steps):
            raise ValueError(
                f"Expected {len(steps)} tokens ({self.units} unit(s) × 5). "
                f"Received {len(tokens)}: {tokens}"
            )
        for i, (token, (kind, choices)) in enumerate(zip(tokens, steps, strict=True)):
            ok = isinstance(token, (numbers.Integral, np.integer)) and not isinstance(token, bool)
            if not ok or not 0 <= token < len(choices):
                raise ValueError(
                    f"Token {i} ({kind} of unit {i // 5}) must be an integer in "
                    f"[0, {len(choices)}) for {choices}. Received: {token!r}"
                )
        return [int(t) for t in tokens]

    def decode(self, tokens):
        """The candidate `Expression` of a token sequence (one index per step)."""
        tokens = self._check_tokens(tokens)
        values = [X()]
        for i in range(self.units):
            in1, in2, u1, u2, b = tokens[5 * i : 5 * i + 5]
            out = self._binary[b](self._unary[u1](values[in1]), self._unary[u2](values[in2]))
            values.append(canonical(out))
        return Expression(values[-1])

    def enumerate(self):
        """Every `(tokens, Expression)`, tokens in lexicographic order."""
        ranges = [range(len(choices)) for _, choices in self.steps()]
        for tokens in itertools.product(*ranges):
            yield tokens, self.decode(tokens)

    def sample(self, rng=None):
        """Uniformly random tokens, from a `numpy.random.Generator` (or seed)."""
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        return [int(rng.integers(len(choices))) for _, choices in self.steps()]

    def contains(self, formula):
        """Whether a formula is structurally a candidate of this space.

        Compares canonical forms: the operand order of `+ * max min` does not
        matter, anything else does (`x ** 2 - x` is not `x * x - x`). Only
        subtrees of the target are considered: each is matched, memoized,
        against every binary template as a unit output, whose operands must
        match unary templates applied to `x` or to other unit outputs, and the
        distinct units a decomposition needs are counted (one unit's output
        may feed several later units), up to `units`.

        Args:
            formula: A formula string or an `Expression`.
        """
        target = parse(formula).root
        units = self.units
        memo = {}

        def inputs(value):
            """The unit sets that make `value` an input: x, or a unit output."""
            if isinstance(value, X):
                return [frozenset()]
            return unit_outputs(value)

        def operands(node):
            """The unit sets that make `node` some u(input)."""
            found = set()
            for pattern in self._unary_patterns:
                for bound in _match(pattern, node, {}):
                    # The β unary ignores its input: take x.
                    found.update(inputs(bound.get(0, X())))
            return found

        def unit_outputs(node):
            key = id(node)
            if key not in memo:
                memo[key] = []  # no unit depends on itself
                found = set()
                for pattern in self._binary_patterns:
                    for bound in _match(pattern, node, {}):
                        left, right = operands(bound[0]), operands(bound[1])
                        for a in left:
                            for b in right:
                                need = a | b | {node.text}
                                if len(need) <= units:
                                    found.add(need)
                memo[key] = list(found)
            return memo[key]

        return bool(unit_outputs(target))


@dataclasses.dataclass(frozen=True)
class _Hole(Node):
    """A placeholder in a template pattern (operand `index`)."""

    index: int

    def __post_init__(self):
        object.__setattr__(self, "size", 1)
        object.__setattr__(self, "depth", 1)
        object.__setattr__(self, "text", f"?{self.index}")
        object.__setattr__(self, "precedence", 5)
        object.__setattr__(self, "uses_beta", False)


def _match(pattern, node, bound):
    """Yields every binding {hole index: node} under which `pattern` is `node`
    (both operand orders of commutative nodes)."""
    if isinstance(pattern, _Hole):
        if pattern.index not in bound:
            yield {**bound, pattern.index: node}
        elif bound[pattern.index] == node:
            yield bound
        return
    if type(pattern) is not type(node):
        return
    if isinstance(pattern, (X, Beta, Const)):
        if pattern == node:
            yield bound
        return
    if isinstance(pattern, Pow) and pattern.n != node.n:
        return
    if isinstance(pattern, Call) and pattern.name != node.name:
        return
    children = node.children()
    orders = [children]
    commutative = isinstance(node, (Add, Mul)) or (
        isinstance(node, Call) and node.name in COMMUTATIVE_FUNCTIONS
    )
    if commutative and children[0] != children[1]:
        orders.append(children[::-1])
    for order in orders:
        yield from _match_all(pattern.children(), order, bound)


def _match_all(patterns, nodes, bound):
    if not patterns:
        yield bound
        return
    for first in _match(patterns[0], nodes[0], bound):
        yield from _match_all(patterns[1:], nodes[1:], first)
