"""Training recipes: the paper's experiments as named configs on one runner.

`keras-swish train EXPERIMENT` (or `python -m keras_swish.recipes train ...`)
runs them; in Python:

>>> from keras_swish.recipes import runner
>>> recipe, experiment, config = runner.resolve("mobilenet", overrides={"train": {"epochs": 1}})
>>> experiment.name
'mobilenet/embedded'

Layout: `core/` (config, runner, run state, registry, strategy, schedules),
`tasks/` (image classification, translation), `models/`, `data/` and
`configs/` (the built-in recipes and their experiments). A new experiment
is an `Experiment` given to `register_experiment`.
"""

from keras_swish.recipes.core import runner
from keras_swish.recipes.core.registry import (
    Experiment,
    Recipe,
    find_experiment,
    get_recipe,
    list_experiments,
    list_recipes,
    register_experiment,
    register_recipe,
)

__all__ = [
    "Experiment",
    "Recipe",
    "find_experiment",
    "get_recipe",
    "list_experiments",
    "list_recipes",
    "register_experiment",
    "register_recipe",
    "runner",
]
