"""The SwishBeta layer: x * sigmoid(beta * x) with a trainable β."""

import numbers

import keras
from keras import constraints, initializers, ops, regularizers

from keras_swish import ops as swish_ops


@keras.saving.register_keras_serializable(package="keras_swish")
class SwishBeta(keras.layers.Layer):
    """Swish activation layer with a trainable β per channel.

    Formula:
    ``` python
    f(x) = x * sigmoid(beta * x)
    ```
    where `beta` is learned, by default one value per channel (the last
    axis). β = 1 gives SiLU ("Swish-1"), β = 0 gives `x / 2` and a large β
    approaches ReLU, so training lets every channel pick its place between
    linear and ReLU. β is a float32 weight named `beta`, also under mixed
    precision.

    Args:
        beta_initializer: Initial β: a float (default `1.0`) or any Keras
            initializer.
        beta_regularizer: Regularizer for β.
        beta_constraint: Constraint for β.
        shared_axes: The axes along which one β is shared. By default every
            axis but the last shares, giving one β per channel. For inputs
            of shape `(batch, height, width, channels)`,
            `shared_axes=[1, 2, 3]` gives a single β for the layer and
            `shared_axes=[1, 2]` is the per-channel default.
        **kwargs: Base layer keyword arguments, such as `name`, `dtype` and
            `trainable` (`trainable=False` keeps β constant: Swish-1 when
            β = 1).

    Call arguments:
        inputs: Input tensor of any rank ≥ 2.

    Returns:
        A tensor of the same shape and dtype as `inputs`.

    Example:

    >>> layer = keras_swish.SwishBeta(beta_initializer=0.5)
    >>> y = layer(np.array([[-1.0, 0.0, 3.0]]))
    >>> tuple(layer.beta.shape)
    (3,)

    Any Keras layer that takes `activation=` accepts `"swish_beta"` once
    `keras_swish` is imported, each use with its own β:

    >>> dense = keras.layers.Dense(4, activation="swish_beta")

    Reference:
    - [Ramachandran et al., 2017](https://arxiv.org/abs/1710.05941)
    """

    def __init__(
        self,
        beta_initializer=1.0,
        beta_regularizer=None,
        beta_constraint=None,
        shared_axes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        _set_beta_arguments(self, beta_initializer, beta_regularizer, beta_constraint, shared_axes)

    _beta_owner = "SwishBeta"

    def _beta_axes(self, input_shape):
        return _beta_axes(self._beta_owner, input_shape, self.shared_axes)

    def build(self, input_shape):
        _build_beta(self, input_shape)

    def call(self, inputs):
        beta = self.beta
        if len(self._param_axes) == 1:
            return swish_ops.swish(inputs, beta, axis=self._param_axes[0])
        if len(self._param_axes) > 1:
            rank = len(inputs.shape)
            shape = [1] * (rank - 1)
            for axis in self._param_axes:
                shape[axis - 1] = inputs.shape[axis]
            beta = ops.reshape(beta, shape)
        return swish_ops.swish(inputs, beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "shared_axes": self.shared_axes,
            }
        )
        return config


def _beta_axes(owner, input_shape, shared_axes):
    """The non-batch axes that own their β values (not shared).

    Shared by `SwishBeta` and `keras_swish.ExpressionActivation`, whose β
    follows the same `shared_axes` rule; `owner` names the layer in errors.
    """
    rank = len(input_shape)
    if rank < 2:
        raise ValueError(
            f"{owner} needs inputs of rank >= 2 (batch, ..., channels). "
            f"Received: input_shape={input_shape}"
        )
    if shared_axes is None:
        return [rank - 1]
    shared = set()
    for axis in shared_axes:
        if not (1 <= axis < rank or -rank < axis <= -1):
            raise ValueError(
                f"`shared_axes` must name non-batch axes of the input "
                f"(1..{rank - 1} or -{rank - 1}..-1). Received: "
                f"shared_axes={shared_axes} for "
                f"input_shape={input_shape}"
            )
        shared.add(axis % rank)
    return [a for a in range(1, rank) if a not in shared]


def _build_beta(layer, input_shape):
    """Creates `layer.beta` (float32, one value per non-shared axis) and its input spec."""
    beta_axes = layer._beta_axes(input_shape)
    for axis in beta_axes:
        if input_shape[axis] is None:
            raise ValueError(
                f"{layer._beta_owner} needs a known size on axis {axis}, which has "
                f"its own β. Received: input_shape={input_shape}. Share "
                "that axis with `shared_axes` or give it a fixed size."
            )
    layer._param_axes = beta_axes
    layer.beta = layer.add_weight(
        shape=tuple(input_shape[a] for a in beta_axes),
        name="beta",
        initializer=layer.beta_initializer,
        regularizer=layer.beta_regularizer,
        constraint=layer.beta_constraint,
        dtype=layer.variable_dtype,
        # The op takes β as float32 also under mixed precision, so that its
        # gradient (a sum over every shared axis) stays float32 as well.
        autocast=False,
    )
    axes = {a: input_shape[a] for a in beta_axes}
    layer.input_spec = keras.layers.InputSpec(ndim=len(input_shape), axes=axes)


def _set_beta_arguments(layer, beta_initializer, beta_regularizer, beta_constraint, shared_axes):
    """Checks and stores the β arguments (SwishBeta's, also ExpressionActivation's)."""
    if isinstance(beta_initializer, numbers.Real) and not isinstance(beta_initializer, bool):
        beta_initializer = initializers.Constant(float(beta_initializer))
    layer.beta_initializer = initializers.get(beta_initializer)
    layer.beta_regularizer = regularizers.get(beta_regularizer)
    layer.beta_constraint = constraints.get(beta_constraint)
    if shared_axes is None:
        layer.shared_axes = None
    elif isinstance(shared_axes, numbers.Integral):
        layer.shared_axes = [int(shared_axes)]
    elif isinstance(shared_axes, (list, tuple)) and all(
        isinstance(a, numbers.Integral) for a in shared_axes
    ):
        layer.shared_axes = [int(a) for a in shared_axes]
    else:
        raise ValueError(
            "`shared_axes` must be None, an int or a list of ints. "
            f"Received: shared_axes={shared_axes}"
        )
