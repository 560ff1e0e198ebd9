"""ExpressionActivation: any formula of the search space as a Keras layer."""

import keras
from keras import constraints, initializers, ops, regularizers

from keras_swish.expressions.formula import parse
from keras_swish.layers.swish_beta import _beta_axes, _build_beta, _set_beta_arguments


@keras.saving.register_keras_serializable(package="keras_swish")
class ExpressionActivation(keras.layers.Layer):
    """Activation layer computing a formula, with a trainable β if it has one.

    The formula is text over `x` (the input), `beta`, numbers, `eps` and the
    functions of the search space (see `keras_swish.expressions.parse`), read
    by a safe parser: nothing of it is ever evaluated as Python, also when a
    `.keras` file is loaded. Every `beta` in the formula is the same weight,
    by default one value per channel (the last axis), created only if the
    formula uses `beta`. β is a float32 weight named `beta`, also under mixed
    precision, cast to the input's dtype in `call`.

    Args:
        formula: A formula string, such as `"max(x, sigmoid(x))"`, or an
            `Expression`. It is stored in canonical form.
        beta_initializer: Initial β: a float (default `1.0`) or any Keras
            initializer.
        beta_regularizer: Regularizer for β.
        beta_constraint: Constraint for β.
        shared_axes: The axes along which one β is shared, as in `SwishBeta`.
            By default every axis but the last shares, giving one β per
            channel; for inputs of shape `(batch, height, width, channels)`,
            `shared_axes=[1, 2, 3]` gives a single β for the layer.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Input tensor (of rank ≥ 2 when the formula uses `beta`).

    Returns:
        A tensor of the same shape and dtype as `inputs`.

    Example:

    >>> layer = keras_swish.ExpressionActivation("sigmoid(beta * x) * x")
    >>> layer.formula
    'x * sigmoid(beta * x)'
    >>> y = layer(np.array([[-1.0, 0.0, 3.0]]))
    >>> tuple(layer.beta.shape)
    (3,)

    As the activation of any Keras layer, each use with its own β:

    >>> dense = keras.layers.Dense(4, activation="expr:max(x, sigmoid(x))")
    """

    def __init__(
        self,
        formula,
        beta_initializer=1.0,
        beta_regularizer=None,
        beta_constraint=None,
        shared_axes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.expression = parse(formula)
        _set_beta_arguments(self, beta_initializer, beta_regularizer, beta_constraint, shared_axes)

    @property
    def formula(self):
        """The canonical formula string."""
        return str(self.expression)

    _beta_owner = "ExpressionActivation with `beta`"

    def _beta_axes(self, input_shape):
        return _beta_axes(self._beta_owner, input_shape, self.shared_axes)

    def build(self, input_shape):
        if self.expression.uses_beta:
            _build_beta(self, input_shape)

    def call(self, inputs):
        if not self.expression.uses_beta:
            return self.expression.evaluate(inputs)
        beta = ops.cast(self.beta, inputs.dtype)
        rank = len(inputs.shape)
        if self._param_axes != [rank - 1]:
            shape = [1] * (rank - 1)
            for axis in self._param_axes:
                shape[axis - 1] = inputs.shape[axis]
            beta = ops.reshape(beta, shape)
        return self.expression.evaluate(inputs, beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    @classmethod
    def from_config(cls, config):
        # Parse first, so that a bad formula (in a `.keras` file too) raises
        # FormulaError itself rather than Keras's generic TypeError.
        parse(config.get("formula"))
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "formula": self.formula,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "shared_axes": self.shared_axes,
            }
        )
        return config


def expression_activation(formula, **kwargs):
    """A new `ExpressionActivation(formula, **kwargs)`.

    Args:
        formula: The activation as a formula of `x` (and `beta`), e.g.
            `"x * sigmoid(beta * x)"`; see `keras_swish.expressions`.
        **kwargs: The layer's other arguments (`beta_initializer`,
            `shared_axes`, ..., `name`), as `ExpressionActivation` takes them.

    Returns:
        An `ExpressionActivation` layer.

    Example:

    >>> act = keras_swish.expression_activation("cos(x) - x")
    >>> dense = keras.layers.Dense(4, activation=act)
    """
    return ExpressionActivation(formula, **kwargs)
