"""The recipe registry: a recipe is a named config plus the builders it uses."""

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A registered recipe.

    Attributes:
        name: What users type: `keras-swish train NAME`.
        summary: One line for `keras-swish recipes`.
        default_config: Returns the reference config (a dataclass).
        presets: Per-dataset defaults: preset key ("embedded", "tfds:NAME",
            "folder") → overrides applied over the reference config.
        preset_key: `data source -> preset key`; raises `ConfigError` for a
            data source the recipe cannot read.
        validate: Raises `ConfigError` on a bad config.
        make_data: `(config, skip_batches) -> data` with `train`,
            `validation`, `num_classes`, `train_examples`, ...
        make_model: `(config, data) -> keras.Model` (called in strategy scope).
        make_optimizer: `(config, steps_per_epoch) -> keras.optimizers.Optimizer`.
        make_loss: `config -> loss`.
        make_metrics: `config -> list of metrics`.
        monitor: The validation metric that picks the best model.
        flags: Command-line flag → config key ("section.key") for this recipe.
        docs: How to run it, how long it takes and what it reaches.
    """

    name: str
    summary: str
    default_config: Callable
    presets: dict
    preset_key: Callable
    validate: Callable
    make_data: Callable
    make_model: Callable
    make_optimizer: Callable
    make_loss: Callable
    make_metrics: Callable
    monitor: str
    flags: dict
    docs: str = ""


_RECIPES = {}


def register_recipe(recipe):
    if recipe.name in _RECIPES:
        raise ValueError(f"A recipe named '{recipe.name}' is already registered.")
    _RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name):
    _load_builtin_recipes()
    if name not in _RECIPES:
        raise KeyError(
            f"Unknown recipe '{name}'. Recipes: {', '.join(sorted(_RECIPES))}."
        )
    return _RECIPES[name]


def list_recipes():
    _load_builtin_recipes()
    return [_RECIPES[name] for name in sorted(_RECIPES)]


def _load_builtin_recipes():
    from keras_swish.recipes import mobilenet  # noqa: F401  (registers itself)
