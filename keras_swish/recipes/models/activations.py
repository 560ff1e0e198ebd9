"""The activations of the paper's tables, as layers a model builder can inject.

Every recipe takes its activation by name and calls `activation_layer(name)`
at each place its architecture has a nonlinearity; no model code names an
activation itself. Besides the names of `ACTIVATIONS`, any formula of the
search space is accepted as `"expr:<formula>"` (an `ExpressionActivation`).
"""

import hashlib
import re

EXPRESSION_PREFIX = "expr:"

# name → (description, piecewise linear?)
ACTIVATIONS = {
    "relu": ("max(x, 0)", True),
    "relu6": ("min(max(x, 0), 6), MobileNet's own", True),
    "leaky_relu": ("x if x > 0 else 0.01·x (the paper's slope)", True),
    "prelu": ("x if x > 0 else α·x, one α per channel, α initialised 0.25", True),
    "softplus": ("log(1 + eˣ)", False),
    "elu": ("x if x > 0 else eˣ − 1 (α = 1)", False),
    "selu": ("scaled ELU", False),
    "gelu": ("x·Φ(x)", False),
    "swish": ("x·σ(x): Swish-1, β fixed at 1 (Keras's silu)", False),
    "swish_beta": ("x·σ(βx), trainable β per channel", False),
}


def _expression(name):
    """The parsed `Expression` of an `"expr:<formula>"` name, or None."""
    if not (isinstance(name, str) and name.startswith(EXPRESSION_PREFIX)):
        return None
    from keras_swish.expressions.formula import FormulaError, parse

    try:
        return parse(name[len(EXPRESSION_PREFIX) :])
    except FormulaError as error:
        raise ValueError(f"Invalid activation '{name}': {error}") from None


def check_activation(name):
    """Raises a ValueError naming the choices if `name` is not one of ours
    (or, for `"expr:<formula>"`, the position of what the parser refused)."""
    if _expression(name) is not None:
        return
    if name not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation '{name}'. Choose one of: {', '.join(ACTIVATIONS)}, "
            "or expr:<formula>."
        )


def is_piecewise_linear(name):
    if _expression(name) is not None:
        return False
    check_activation(name)
    return ACTIVATIONS[name][1]


def activation_slug(name):
    """A short filesystem-safe name for an activation (for run folders).

    A name of `ACTIVATIONS` is its own slug; a formula gives
    `expr-<its canonical text, squeezed>-<8 hex digits of its sha1>`, at most 60
    characters of [A-Za-z0-9_.-], the same for every spelling of one formula.

    Example:

    >>> activation_slug("expr:sigmoid(x) * x")[:-8]
    'expr-x_sigmoid_x-'
    """
    expr = _expression(name)
    if expr is None:
        check_activation(name)
        return name
    text = str(expr)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    body = re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_.")[:46].rstrip("_.")
    return f"expr-{body}-{digest}"


def activation_layer(name, rank=4, layer_name=None):
    """A new layer applying activation `name`, with its own weights if any.

    Args:
        name: One of `ACTIVATIONS`, or `"expr:<formula>"`.
        rank: Rank of the inputs it will see (batch included); PReLU shares α
            over every axis but the channels.
        layer_name: Name of the layer.
    """
    import keras

    from keras_swish.layers.swish_beta import SwishBeta

    check_activation(name)
    kwargs = {"name": layer_name}
    expr = _expression(name)
    if expr is not None:
        from keras_swish.expressions.layer import ExpressionActivation

        return ExpressionActivation(expr, **kwargs)
    if name == "relu":
        return keras.layers.ReLU(**kwargs)
    if name == "relu6":
        return keras.layers.ReLU(max_value=6.0, **kwargs)
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01, **kwargs)
    if name == "prelu":
        return keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25),
            shared_axes=list(range(1, rank - 1)) or None,
            **kwargs,
        )
    if name == "swish":
        return keras.layers.Activation("silu", **kwargs)
    if name == "swish_beta":
        return SwishBeta(**kwargs)
    return keras.layers.Activation(name, **kwargs)
