"""The activations of the paper's tables, as layers a model builder can inject.

Every recipe takes its activation by name and calls `activation_layer(name)`
at each place its architecture has a nonlinearity; no model code names an
activation itself.
"""

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


def check_activation(name):
    """Raises a ValueError naming the choices if `name` is not one of ours."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation '{name}'. Choose one of: {', '.join(ACTIVATIONS)}.")


def is_piecewise_linear(name):
    check_activation(name)
    return ACTIVATIONS[name][1]


def activation_layer(name, rank=4, layer_name=None):
    """A new layer applying activation `name`, with its own weights if any.

    Args:
        name: One of `ACTIVATIONS`.
        rank: Rank of the inputs it will see (batch included); PReLU shares α
            over every axis but the channels.
        layer_name: Name of the layer.
    """
    import keras

    from keras_swish.layers.swish_beta import SwishBeta

    check_activation(name)
    kwargs = {"name": layer_name}
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
