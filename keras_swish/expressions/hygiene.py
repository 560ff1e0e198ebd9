"""Candidate hygiene, before any training: reject the unusable, collapse the equal.

Everything is computed in NumPy float64 with β = 1 (where a trainable β
starts) on `PROBE`: 2001 evenly spaced points on [−6, 6], 0 exactly among
them.

`check(expr)` rejects a candidate (`CandidateRejected`, with a short
`reason`) when

- "not finite on [-6, 6]": an output is inf or nan (`sqrt(x)`, `log(x)`…);
- "constant": max − min < 1e-6 · (1 + |mean|) (`x - x`, `beta`…);
- "no usable gradient": the derivative df/dx has a non-finite value on the
  probe, or |df/dx| < 1e-6 everywhere. The derivative is exact, computed by
  forward-mode differentiation of the formula with the chain rule that
  backpropagation applies (|u|′ = sign(u), so 0 at 0; max/min pass the
  derivative of the larger/smaller operand, the first one on ties). So a
  candidate whose training gradient would be inf or nan at a probe point is
  rejected: `sqrt(abs(x))` has slope ∞ at 0 (0 · ∞ = nan there).

`equivalence_key(expr)` fingerprints the function: equal keys mean equal
outputs on the probe to about 6 significant digits, so `max(x, x)`, `x + x`
and `2 * x` are told apart from `x` only where they differ.

Example:

>>> from keras_swish.expressions.formula import parse
>>> check(parse("max(x, sigmoid(x))"))
>>> try:
...     check(parse("x - x"))
... except CandidateRejected as error:
...     print(error.reason)
constant
>>> equivalence_key(parse("max(x, x)")) == equivalence_key(parse("x"))
True
"""

import hashlib

import numpy as np

from keras_swish.expressions.formula import (
    _NUMPY_FUNCTIONS,
    Add,
    Beta,
    Call,
    Const,
    Div,
    Mul,
    Neg,
    Pow,
    Sub,
    X,
    parse,
)

PROBE = np.linspace(-6.0, 6.0, 2001)
PROBE[1000] = 0.0
NOT_FINITE = "not finite on [-6, 6]"
CONSTANT = "constant"
NO_GRADIENT = "no usable gradient"


class CandidateRejected(ValueError):
    """A candidate unusable as an activation; `reason` says why in a few words.

    Example:

    >>> try:
    ...     keras_swish.expressions.check("x - x")
    ... except keras_swish.expressions.CandidateRejected as rejection:
    ...     print(rejection.reason)
    constant
    """

    def __init__(self, expr, reason):
        self.expression = expr
        self.reason = reason
        super().__init__(f"{expr}: {reason}")


def _derivatives(name, args):
    """(value, [∂value/∂arg]) of a function on NumPy float64 arrays."""
    u = args[0]
    if name == "max":
        first = args[0] >= args[1]
        return np.maximum(*args), [first, ~first]
    if name == "min":
        first = args[0] <= args[1]
        return np.minimum(*args), [first, ~first]
    if name == "sinc":
        safe = np.where(u == 0, 1.0, u)
        value = np.where(u == 0, 1.0, np.sin(safe) / safe)
        return value, [np.where(u == 0, 0.0, (np.cos(safe) - value) / safe)]
    value = _NUMPY_FUNCTIONS[name](u)  # the values `Expression.numpy` computes
    slope = {
        "abs": lambda: np.sign(u),
        "sqrt": lambda: 0.5 / value,
        "log": lambda: 1.0 / u,
        "exp": lambda: value,
        "sin": lambda: np.cos(u),
        "cos": lambda: -np.sin(u),
        "sinh": lambda: np.cosh(u),
        "cosh": lambda: np.sinh(u),
        "tanh": lambda: 1.0 - value**2,
        "asinh": lambda: 1.0 / np.sqrt(1.0 + u**2),
        "atan": lambda: 1.0 / (1.0 + u**2),
        "sigmoid": lambda: value * (1.0 - value),
        "softplus": lambda: _NUMPY_FUNCTIONS["sigmoid"](u),
        "erf": lambda: 2 / np.sqrt(np.pi) * np.exp(-(u**2)),
    }[name]()
    return value, [slope]


def value_and_slope(expr, x=PROBE, beta=1.0, wrt="x"):
    """f(x) and df/dx (`wrt="beta"`: df/dβ) in float64, by forward-mode differentiation."""
    x = np.asarray(x, dtype=np.float64)
    root = parse(expr).root
    seed_x, seed_beta = (1.0, 0.0) if wrt == "x" else (0.0, 1.0)

    def run(node):
        if isinstance(node, X):
            return x, np.full_like(x, seed_x)
        if isinstance(node, Beta):
            return np.float64(beta), np.float64(seed_beta)
        if isinstance(node, Const):
            return np.float64(node.value), np.float64(0.0)
        if isinstance(node, Neg):
            a, da = run(node.a)
            return -a, -da
        if isinstance(node, Pow):
            a, da = run(node.a)
            return a**node.n, node.n * a ** (node.n - 1) * da
        if isinstance(node, Call):
            pairs = [run(arg) for arg in node.args]
            value, partials = _derivatives(node.name, [v for v, _ in pairs])
            return value, sum(p * d for p, (_, d) in zip(partials, pairs, strict=True))
        (a, da), (b, db) = run(node.a), run(node.b)
        if isinstance(node, Add):
            return a + b, da + db
        if isinstance(node, Sub):
            return a - b, da - db
        if isinstance(node, Mul):
            return a * b, da * b + a * db
        assert isinstance(node, Div)
        return a / b, (da * b - a * db) / b**2

    with np.errstate(all="ignore"):
        value, slope = run(root)
    shape = x.shape
    return np.broadcast_to(value, shape).copy(), np.broadcast_to(slope, shape).copy()


def check(expr, trainable_beta=False):
    """Raises `CandidateRejected` if `expr` is unusable (see the module doc).

    Args:
        expr: An `Expression` or a formula string.
        trainable_beta: Whether β trains (the search's children: it starts at
            1). Then a candidate constant at β = 1 is usable where its
            gradient for β, ∂f/∂β at β = 1, varies with x: the first step of β
            makes it a function of x. `beta * x - x` (∂f/∂β = x) is usable;
            `beta * (x - x)`, or `exp(-beta * (beta * x - x) ** 2)` (∂f/∂β = 0
            at β = 1: β never moves), are not.

    Raises:
        CandidateRejected: Its outputs on [-6, 6] are not all finite, or are
            constant, or its slope is not finite or zero everywhere there;
            `reason` says which.

    Example:

    >>> keras_swish.expressions.check("x * sigmoid(beta * x)")  # usable: no error
    >>> keras_swish.expressions.check("log(abs(x) - 1)")
    Traceback (most recent call last):
    ...
    keras_swish.expressions.hygiene.CandidateRejected: log(abs(x) - 1): not finite on [-6, 6]
    """
    expr = parse(expr)
    value, slope = value_and_slope(expr)
    if not np.all(np.isfinite(value)):
        raise CandidateRejected(expr, NOT_FINITE)
    if _constant(value):
        if not (trainable_beta and expr.root.uses_beta):
            raise CandidateRejected(expr, CONSTANT)
        _, by_beta = value_and_slope(expr, wrt="beta")
        if not np.all(np.isfinite(by_beta)) or _constant(by_beta):
            raise CandidateRejected(expr, CONSTANT)
        return  # β's gradient moves it off the constant
    if not np.all(np.isfinite(slope)) or np.all(np.abs(slope) < 1e-6):
        raise CandidateRejected(expr, NO_GRADIENT)


def _constant(value):
    return value.max() - value.min() < 1e-6 * (1.0 + abs(value.mean()))


def equivalence_key(expr, betas=(1.0,)):
    """A sha1 hex fingerprint of the function on `PROBE`.

    Outputs are computed for each β of `betas` (default: β = 1 only, so
    `x * sigmoid(beta * x)` ≡ `x * sigmoid(x)`; pass more values to tell
    β-dependent candidates apart), values below 1e-9 in magnitude are taken
    as 0, and the rest are rounded to 6 significant digits.

    Args:
        expr: An `Expression` or a formula string.
        betas: The values of β to compute the outputs at.

    Returns:
        A 40-character hex string, equal for functions with the same
        (rounded) outputs.

    Example:

    >>> key = keras_swish.expressions.equivalence_key
    >>> key("max(x, x)") == key("x")
    True
    >>> swish, swish_1 = "x * sigmoid(beta * x)", "x * sigmoid(x)"
    >>> key(swish) == key(swish_1), key(swish, (0.5, 1.0, 2.0)) == key(swish_1, (0.5, 1.0, 2.0))
    (True, False)
    """
    expr = parse(expr)
    parts = []
    for beta in betas:
        y = np.asarray(expr.numpy(PROBE, beta=beta), dtype=np.float64)
        y = np.where(np.abs(y) < 1e-9, 0.0, y) + 0.0  # also turns -0.0 into 0.0
        parts.append(";".join(np.char.mod("%.5e", y)))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def collapse(exprs, betas=(1.0,)):
    """Groups equivalent candidates: `{key: [expr, ...]}` in first-seen order.

    The first expression of each list is the group's representative.

    Args:
        exprs: `Expression`s or formula strings.
        betas: The values of β to compare outputs at (see `equivalence_key`).

    Returns:
        A dict from `equivalence_key` to the list of `Expression`s with it.

    Example:

    >>> groups = collapse(["x", "max(x, x)", "sin(x)"])
    >>> [[str(e) for e in group] for group in groups.values()]
    [['x', 'max(x, x)'], ['sin(x)']]
    """
    groups = {}
    for expr in exprs:
        expr = parse(expr)
        groups.setdefault(equivalence_key(expr, betas), []).append(expr)
    return groups
