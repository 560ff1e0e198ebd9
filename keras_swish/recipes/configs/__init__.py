"""The built-in recipes and their named experiments.

Importing this package registers them; `keras_swish.recipes.core.registry`
does so on first lookup. Each module here binds a model of
`keras_swish.recipes.models` to a task of `keras_swish.recipes.tasks` with
the reference config it cites, and names its experiments.
"""

from keras_swish.recipes.configs import (  # noqa: F401  (each registers itself)
    cifar,
    inception_resnet_v2,
    mobilenet,
    transformer_nmt,
)
