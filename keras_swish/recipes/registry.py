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
        make_data: `config -> data`, an object with `train` (an endless,
            batched tf.data.Dataset), `validation` (finite, batched),
            `steps_per_epoch` (one pass), `examples_per_step` and `summary`
            (one line for the log).
        make_model: `(config, data) -> keras.Model` (called in strategy scope).
        make_optimizer: `(config, steps_per_epoch) -> keras.optimizers.Optimizer`.
        make_loss: `config -> loss`.
        make_metrics: `config -> list of metrics`.
        monitor: The validation metric that picks the best model.
        flags: Command-line flag → config key ("section.key") for this recipe.
        extra_flags: Flags only this recipe takes: name → argparse kwargs
            (each also needs its entry in `flags`).
        final_metrics: Optional `(config, model, data) -> dict` of metrics
            beyond `model.evaluate` (BLEU, ...), added to the final metrics
            of `train` and to `evaluate`.
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
    extra_flags: dict = dataclasses.field(default_factory=dict)
    final_metrics: Callable | None = None
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
        raise KeyError(f"Unknown recipe '{name}'. Recipes: {', '.join(sorted(_RECIPES))}.")
    return _RECIPES[name]


def list_recipes():
    _load_builtin_recipes()
    return [_RECIPES[name] for name in sorted(_RECIPES)]


def _load_builtin_recipes():
    from keras_swish.recipes import (
        inception_resnet_v2,  # noqa: F401  (registers itself)
        mobilenet,  # noqa: F401  (registers itself)
        transformer_nmt,  # noqa: F401  (registers itself)
    )
