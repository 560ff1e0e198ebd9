"""keras-swish: Swish with a trainable β as a first-class Keras activation.

Importing this package registers `activation="swish_beta"` with Keras.
"""

from keras_swish import activations as _activations
from keras_swish import callbacks, expressions
from keras_swish.activations import register_activation
from keras_swish.expressions.layer import ExpressionActivation, expression_activation
from keras_swish.layers.swish_beta import SwishBeta
from keras_swish.ops import swish
from keras_swish.replace import replace_activations

__version__ = "0.1.0"

_activations.install()

# Everything a recipe writes into a `.keras` file is registered on import, so
# that `keras.models.load_model(".../best.keras", safe_mode=True)` works in a
# process that imports only keras_swish (neither imports keras_hub or data code).
from keras_swish.recipes.core import schedules as _schedules  # noqa: E402, F401
from keras_swish.recipes.models import auxiliary as _auxiliary  # noqa: E402, F401
from keras_swish.recipes.models import cifar as _cifar  # noqa: E402, F401
from keras_swish.recipes.models import transformer as _transformer  # noqa: E402, F401

__all__ = [
    "ExpressionActivation",
    "SwishBeta",
    "callbacks",
    "expression_activation",
    "expressions",
    "register_activation",
    "replace_activations",
    "swish",
    "__version__",
]
