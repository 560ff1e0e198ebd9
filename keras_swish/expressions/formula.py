"""Activation formulas: an immutable AST, a safe parser, a canonical printer.

A formula is text such as `"x * sigmoid(beta * x)"` over the pre-activation
`x`, the trainable `beta`, numbers, the named constant `eps` (1e-5), the
operators `+ - * / **` (python precedence: `+ -` < `* /` < unary `-` < `**`)
and the functions of `FUNCTIONS`. `parse` reads it with a hand-written
tokenizer and recursive-descent parser: no `eval`, `compile` or attribute
lookup ever sees the text, so a hostile formula can only raise `FormulaError`.

The `Expression` it returns is canonical: the two operands of a commutative
operation (`+`, `*`, `max`, `min`) are ordered smaller subtree first (node
count, then printed text), so equal functions written in either order are
equal, hash alike and print alike:

>>> str(parse("sigmoid(beta * x) * x"))
'x * sigmoid(beta * x)'
>>> parse("max(sigmoid(x), x)") == parse("max(x, sigmoid(x))")
True

Canonical form orders operands only: it does not reassociate (`(a + b) + c`
and `a + (b + c)` differ) nor simplify (`x + x` is not `2 * x`); see
`keras_swish.expressions.hygiene.equivalence_key` for equality as functions.
"""

import dataclasses
import math
import re

import numpy as np

MAX_LENGTH = 1000
MAX_DEPTH = 64
EPS = 1e-5

# name → (arity, description)
FUNCTIONS = {
    "abs": (1, "|u|"),
    "sqrt": (1, "√u"),
    "log": (1, "natural logarithm"),
    "exp": (1, "eᵘ"),
    "sin": (1, "sine"),
    "cos": (1, "cosine"),
    "sinh": (1, "hyperbolic sine"),
    "cosh": (1, "hyperbolic cosine"),
    "tanh": (1, "hyperbolic tangent"),
    "asinh": (1, "inverse hyperbolic sine"),
    "atan": (1, "inverse tangent"),
    "sinc": (1, "sin(u) / u with sinc(0) = 1 (not normalized by π)"),
    "sigmoid": (1, "1 / (1 + e⁻ᵘ)"),
    "softplus": (1, "log(1 + eᵘ)"),
    "erf": (1, "error function"),
    "max": (2, "larger of two"),
    "min": (2, "smaller of two"),
}
COMMUTATIVE_FUNCTIONS = ("max", "min")

ALLOWED = (
    "x, beta, eps, numbers (e.g. 2, 0.5, 1e-3), "
    + ", ".join(f"{name}({', '.join('u' * n)})" for name, (n, _) in FUNCTIONS.items())
    + "; operators + - * / ** (integer powers 2..8) and parentheses"
)


class FormulaError(ValueError):
    """A formula that is not in the grammar.

    Attributes:
        position: 0-based character position of the offending token (None
            when the whole formula is at fault).
        token: The offending token text ("" at the end of the formula).

    Example:

    >>> try:
    ...     keras_swish.expressions.parse("x * sigmod(x)")
    ... except keras_swish.expressions.FormulaError as error:
    ...     print(error.position, repr(error.token))
    4 'sigmod'
    """

    def __init__(self, message, text=None, position=None, token=None):
        self.position = position
        self.token = token
        self.text = text
        lines = [message if position is None else f"{message} at position {position}"]
        if text is not None and position is not None:
            start = max(0, position - 40)
            lines.append("  " + text[start : position + 40])
            lines.append("  " + " " * (position - start) + "^")
        lines.append(f"Allowed: {ALLOWED}.")
        super().__init__("\n".join(lines))


# --- AST ------------------------------------------------------------------------------

# Printing precedence: a child with a lower one than its place needs parentheses.
_SUM, _PRODUCT, _UNARY, _POWER, _ATOM = 1, 2, 3, 4, 5


def _meta():
    return dataclasses.field(init=False, repr=False, compare=False)


def _finish(node, children, text, precedence):
    """Sets the cached size, depth, text and precedence of a new node."""
    object.__setattr__(node, "size", 1 + sum(c.size for c in children))
    object.__setattr__(node, "depth", 1 + max((c.depth for c in children), default=0))
    object.__setattr__(node, "text", text)
    object.__setattr__(node, "precedence", precedence)
    object.__setattr__(
        node, "uses_beta", isinstance(node, Beta) or any(c.uses_beta for c in children)
    )


def _number_text(value):
    if value.is_integer() and value < 1e15:
        return str(int(value))
    return repr(value)


def _wrap(child, below):
    """`child`'s text, parenthesized when its precedence is below `below`."""
    return f"({child.text})" if child.precedence < below else child.text


def _right(child, precedence):
    """Text of the right operand of a left-associative operator."""
    if child.precedence <= precedence or isinstance(child, Neg):
        return f"({child.text})"
    return child.text


class Node:
    """Base class of the AST nodes (frozen dataclasses: immutable, hashable).

    Every node caches `size` (node count), `depth`, `uses_beta` and `text`
    (its formula with minimal parentheses, in the order of its operands).
    """

    def children(self):
        return ()


@dataclasses.dataclass(frozen=True)
class X(Node):
    """The pre-activation input `x`."""

    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()

    def __post_init__(self):
        _finish(self, (), "x", _ATOM)


@dataclasses.dataclass(frozen=True)
class Beta(Node):
    """The layer's trainable `beta` (one weight: every `beta` is the same)."""

    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()

    def __post_init__(self):
        _finish(self, (), "beta", _ATOM)


@dataclasses.dataclass(frozen=True)
class Const(Node):
    """A finite number ≥ 0 (a negative one is `Neg(Const(...))`); `name`
    "eps" prints the constant `EPS` as `eps`."""

    value: float
    name: str | None = None
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()

    def __post_init__(self):
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float, np.number)):
            raise ValueError(f"Const needs a number. Received: value={self.value!r}")
        value = float(self.value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"Const needs a finite number >= 0. Received: value={value!r}")
        if self.name not in (None, "eps") or (self.name == "eps" and value != EPS):
            raise ValueError(f"The only named constant is eps = {EPS}. Received: {self!r}")
        object.__setattr__(self, "value", value)
        _finish(self, (), self.name or _number_text(value), _ATOM)


@dataclasses.dataclass(frozen=True)
class Neg(Node):
    """`-a`."""

    a: Node
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()

    def __post_init__(self):
        # -(x ** 2) and -(a * b) keep explicit parentheses.
        inner = self.a.text if self.a.precedence == _ATOM else f"({self.a.text})"
        _finish(self, (self.a,), "-" + inner, _UNARY)

    def children(self):
        return (self.a,)


def _binary(symbol, precedence):
    def post_init(self):
        text = f"{_wrap(self.a, precedence)} {symbol} {_right(self.b, precedence)}"
        _finish(self, (self.a, self.b), text, precedence)

    def children(self):
        return (self.a, self.b)

    def decorate(cls):
        cls.__post_init__ = post_init
        cls.children = children
        cls.symbol = symbol
        return dataclasses.dataclass(frozen=True)(cls)

    return decorate


@_binary("+", _SUM)
class Add(Node):
    """`a + b`."""

    a: Node
    b: Node
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()


@_binary("-", _SUM)
class Sub(Node):
    """`a - b`."""

    a: Node
    b: Node
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()


@_binary("*", _PRODUCT)
class Mul(Node):
    """`a * b`."""

    a: Node
    b: Node
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()


@_binary("/", _PRODUCT)
class Div(Node):
    """`a / b`."""

    a: Node
    b: Node
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()


@dataclasses.dataclass(frozen=True)
class Pow(Node):
    """`a ** n`, `n` an integer from 2 to 8."""

    a: Node
    n: int
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 2 <= self.n <= 8:
            raise ValueError(f"Pow needs an integer exponent 2..8. Received: n={self.n!r}")
        _finish(self, (self.a,), f"{_wrap(self.a, _ATOM)} ** {self.n}", _POWER)

    def children(self):
        return (self.a,)


@dataclasses.dataclass(frozen=True)
class Call(Node):
    """`name(args...)` for a name of `FUNCTIONS`."""

    name: str
    args: tuple
    size: int = _meta()
    depth: int = _meta()
    text: str = _meta()
    precedence: int = _meta()
    uses_beta: bool = _meta()

    def __post_init__(self):
        object.__setattr__(self, "args", tuple(self.args))
        if self.name not in FUNCTIONS:
            raise ValueError(f"Unknown function {self.name!r}. Allowed: {', '.join(FUNCTIONS)}")
        if len(self.args) != FUNCTIONS[self.name][0]:
            raise ValueError(
                f"{self.name} takes {FUNCTIONS[self.name][0]} argument(s). "
                f"Received: {len(self.args)}"
            )
        text = f"{self.name}({', '.join(a.text for a in self.args)})"
        _finish(self, self.args, text, _ATOM)

    def children(self):
        return self.args


# --- canonical form -------------------------------------------------------------------


def _order_key(node):
    return (node.size, node.text)


def canonical(node):
    """`node` with the operands of every `+`, `*`, `max` and `min` ordered
    smaller subtree first (node count, then printed text). Subtrees already
    canonical are returned as they are."""
    if isinstance(node, (X, Beta, Const)):
        return node
    if isinstance(node, (Neg, Pow)):
        a = canonical(node.a)
        if a is node.a:
            return node
        return Neg(a) if isinstance(node, Neg) else Pow(a, node.n)
    if isinstance(node, Call):
        args = tuple(canonical(a) for a in node.args)
        if node.name in COMMUTATIVE_FUNCTIONS and _order_key(args[1]) < _order_key(args[0]):
            args = args[::-1]
        if all(a is b for a, b in zip(args, node.args, strict=True)):
            return node
        return Call(node.name, args)
    a, b = canonical(node.a), canonical(node.b)
    if isinstance(node, (Add, Mul)) and _order_key(b) < _order_key(a):
        a, b = b, a
    if a is node.a and b is node.b:
        return node
    return type(node)(a, b)


# --- parser ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/(),])"
    r")"
)
_NAMES = ("x", "beta", "eps")


def _tokenize(text):
    """[(kind, token, position)], ending with ("end", "", len(text))."""
    tokens = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            tokens.append(("end", "", position))
            return tokens
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            hint = " (powers are written **)" if text[position] == "^" else ""
            raise FormulaError(
                f"Unexpected character {text[position]!r}{hint}", text, position, text[position]
            )
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()


class _Parser:
    def __init__(self, text):
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.nesting = 0

    def peek(self):
        return self.tokens[self.index]

    def fail(self, message, token=None):
        kind, text, position = token or self.peek()
        shown = "the end of the formula" if kind == "end" else repr(text)
        raise FormulaError(f"{message}: {shown}", self.text, position, text)

    def take(self, op):
        kind, text, _ = self.peek()
        if kind != "op" or text != op:
            self.fail(f"Expected {op!r}, found")
        self.index += 1

    def node(self, cls, *args):
        node = cls(*args)
        if node.depth > MAX_DEPTH:
            self.fail(f"Formula nested deeper than {MAX_DEPTH} levels, near")
        return node

    def enter(self):
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            self.fail(f"Formula nested deeper than {MAX_DEPTH} levels, near")

    def parse(self):
        node = self.expression()
        if self.peek()[0] != "end":
            self.fail("Unexpected token")
        return node

    def expression(self):
        node = self.term()
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            cls = Add if self.peek()[1] == "+" else Sub
            self.index += 1
            node = self.node(cls, node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/"):
            cls = Mul if self.peek()[1] == "*" else Div
            self.index += 1
            node = self.node(cls, node, self.unary())
        return node

    def unary(self):
        if self.peek()[0:2] == ("op", "-"):
            self.index += 1
            self.enter()
            node = self.node(Neg, self.unary())
            self.nesting -= 1
            return node
        return self.power()

    def power(self):
        node = self.primary()
        if self.peek()[0:2] == ("op", "**"):
            self.index += 1
            token = self.peek()
            if token[0] != "number" or not token[1].isdigit() or not 2 <= int(token[1]) <= 8:
                self.fail("The exponent must be an integer from 2 to 8, found", token)
            self.index += 1
            node = self.node(Pow, node, int(token[1]))
            if self.peek()[0:2] == ("op", "**"):
                self.fail("Chained powers need parentheses, as in (x ** 2) ** 3; found")
        return node

    def primary(self):
        token = kind, text, _ = self.peek()
        if kind == "number":
            self.index += 1
            value = float(text)
            if not math.isfinite(value):
                self.fail("Numbers must be finite", token)
            return Const(value)
        if kind == "name":
            self.index += 1
            is_call = self.peek()[0:2] == ("op", "(")
            if text in FUNCTIONS and is_call:
                return self.call(token)
            if text in _NAMES and not is_call:
                return {"x": X, "beta": Beta}.get(text, lambda: Const(EPS, "eps"))()
            if text in FUNCTIONS:
                self.fail(f"A function is called as {text}(...), found", token)
            self.fail("Unknown name", token)
        if (kind, text) == ("op", "("):
            self.index += 1
            self.enter()
            node = self.expression()
            self.take(")")
            self.nesting -= 1
            return node
        self.fail("Expected a number, a name or '(', found")

    def call(self, name_token):
        name = name_token[1]
        self.take("(")
        self.enter()
        args = [self.expression()]
        while self.peek()[0:2] == ("op", ","):
            self.index += 1
            args.append(self.expression())
        self.take(")")
        self.nesting -= 1
        arity = FUNCTIONS[name][0]
        if len(args) != arity:
            self.fail(f"{name} takes {arity} argument(s), not {len(args)}", name_token)
        return self.node(Call, name, tuple(args))


def parse(text):
    """Parses a formula into a canonical `Expression`.

    Args:
        text: The formula, at most 1000 characters, nesting at most 64 deep.

    Returns:
        The canonical `Expression`.

    Raises:
        FormulaError: (a ValueError) naming the 0-based position, the token
            and the allowed names, for anything outside the grammar.

    Example:

    >>> expr = parse("max(sigmoid(x), x)")
    >>> str(expr)
    'max(x, sigmoid(x))'
    >>> parse("x.__class__")
    Traceback (most recent call last):
    ...
    keras_swish.expressions.formula.FormulaError: Unexpected character '.' at position 1
      x.__class__
       ^
    Allowed: ...
    """
    if isinstance(text, Expression):
        return text
    if not isinstance(text, str):
        raise FormulaError(f"A formula must be a string. Received: {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"The formula is {len(text)} characters long; the limit is {MAX_LENGTH}")
    return Expression(_Parser(text).parse())


# --- Expression -----------------------------------------------------------------------


def _integer_power(ops, a, n):
    """`a ** n` by repeated multiplication (exact gradient, also at 0)."""
    result = None
    while n:
        if n & 1:
            result = a if result is None else ops.multiply(result, a)
        n >>= 1
        if n:
            a = ops.multiply(a, a)
    return result


def _np_erf(u):
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover
        return np.vectorize(math.erf, otypes=[float])(u)
    return erf(u)


_NUMPY_FUNCTIONS = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "log": np.log,
    "exp": np.exp,
    "sin": np.sin,
    "cos": np.cos,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "atan": np.arctan,
    "sinc": lambda u: np.sinc(u / np.pi),
    "sigmoid": lambda u: np.exp(-np.logaddexp(0.0, -u)),
    "softplus": lambda u: np.logaddexp(0.0, u),
    "erf": _np_erf,
    "max": np.maximum,
    "min": np.minimum,
}


def _keras_call(ops, name, args):
    if name == "sinc":
        (u,) = args
        zero = ops.equal(u, ops.zeros_like(u))
        one = ops.ones_like(u)
        safe = ops.where(zero, one, u)  # no 0/0, also in the gradient
        return ops.where(zero, one, ops.divide(ops.sin(safe), safe))
    function = {
        "asinh": ops.arcsinh,
        "atan": ops.arctan,
        "max": ops.maximum,
        "min": ops.minimum,
    }.get(name) or getattr(ops, name)
    return function(*args)


class Expression:
    """A canonical activation formula: structural equality, hashable.

    Build one with `parse(text)` or `Expression(node)` (any AST, which is
    canonicalized). `str(expr)` is the canonical formula and
    `parse(str(expr)) == expr`.

    Example:

    >>> expr = parse("sigmoid(beta * x) * x")
    >>> str(expr), expr.size, expr.uses_beta
    ('x * sigmoid(beta * x)', 6, True)
    >>> float(expr.numpy(np.array(0.0)))
    0.0
    """

    __slots__ = ("root",)

    def __init__(self, root):
        if isinstance(root, Expression):
            root = root.root
        if not isinstance(root, Node):
            raise TypeError(f"Expression needs an AST node. Received: {root!r}")
        object.__setattr__(self, "root", canonical(root))

    def __setattr__(self, name, value):
        raise AttributeError("Expression is immutable")

    def __eq__(self, other):
        return isinstance(other, Expression) and self.root == other.root

    def __hash__(self):
        return hash(self.root)

    def __str__(self):
        return self.root.text

    def __repr__(self):
        return f"Expression({self.root.text!r})"

    def __reduce__(self):
        return (parse, (self.root.text,))

    @property
    def uses_beta(self):
        """Whether the formula has `beta` (then its layer has a β weight)."""
        return self.root.uses_beta

    @property
    def size(self):
        """Number of AST nodes."""
        return self.root.size

    @property
    def depth(self):
        return self.root.depth

    def evaluate(self, x, beta=None, ops=None):
        """The formula on tensors, with any Keras backend.

        Args:
            x: Input tensor (or array).
            beta: β, broadcastable to `x`; needed when `uses_beta`.
            ops: The op namespace; default `keras.ops`.

        Returns:
            A tensor of `x`'s shape and dtype (constants are cast to it).
        """
        if ops is None:
            from keras import ops
        x = ops.convert_to_tensor(x)
        dtype = x.dtype
        if self.uses_beta:
            if beta is None:
                raise ValueError(f"The formula {self} uses beta; pass `beta`.")
            beta = ops.cast(beta, dtype)
        cache = {}

        def run(node):
            if id(node) in cache:
                return cache[id(node)]
            if isinstance(node, X):
                out = x
            elif isinstance(node, Beta):
                out = beta
            elif isinstance(node, Const):
                out = ops.convert_to_tensor(node.value, dtype=dtype)
            elif isinstance(node, Neg):
                out = ops.negative(run(node.a))
            elif isinstance(node, Pow):
                out = _integer_power(ops, run(node.a), node.n)
            elif isinstance(node, Call):
                out = _keras_call(ops, node.name, [run(a) for a in node.args])
            else:
                name = {Add: "add", Sub: "subtract", Mul: "multiply", Div: "divide"}
                out = getattr(ops, name[type(node)])(run(node.a), run(node.b))
            cache[id(node)] = out
            return out

        return run(self.root)

    def numpy(self, x, beta=1.0):
        """The formula in NumPy float64 (warnings silenced: inf/nan come out).

        Example:

        >>> parse("max(x, sigmoid(x))").numpy([-10.0, 2.0]).round(4)
        array([0., 2.])
        """
        x = np.asarray(x, dtype=np.float64)
        beta = np.asarray(beta, dtype=np.float64)

        def run(node):
            if isinstance(node, X):
                return x
            if isinstance(node, Beta):
                return beta
            if isinstance(node, Const):
                return np.float64(node.value)
            if isinstance(node, Neg):
                return -run(node.a)
            if isinstance(node, Pow):
                return run(node.a) ** node.n
            if isinstance(node, Call):
                return _NUMPY_FUNCTIONS[node.name](*[run(a) for a in node.args])
            function = {Add: np.add, Sub: np.subtract, Mul: np.multiply, Div: np.divide}
            return function[type(node)](run(node.a), run(node.b))

        shape = np.broadcast(x, beta).shape if self.uses_beta else x.shape
        with np.errstate(all="ignore"):
            out = np.asarray(run(self.root), np.float64)
        return np.broadcast_to(out, shape).copy()
