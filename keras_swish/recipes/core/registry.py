"""Recipes (a model bound to a task) and named experiments (a recipe's settings).

A `Recipe` is what the runner trains: a config schema with the reference
defaults, and the builders of its task (data, model, optimizer, loss,
metrics, final evaluation). An `Experiment` is a named set of overrides of
that config for one kind of data — `mobilenet/imagenet` (the cited
reference config), `mobilenet/embedded` (the embedded digits) — so that a
data source without its own experiment is refused instead of silently
getting another dataset's settings.

The built-in recipes and experiments register themselves from
`keras_swish.recipes.configs`, which this module imports on first lookup;
nothing here imports a recipe's own modules.
"""

import dataclasses
import fnmatch
from collections.abc import Callable

from keras_swish.recipes.core.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A registered recipe.

    Attributes:
        name: What users type: `keras-swish train NAME`.
        task: The task it belongs to ("image_classification", "translation").
        summary: One line for `keras-swish recipes`.
        default_config: Returns the reference config (a dataclass).
        validate: Raises `ConfigError` on a bad config.
        make_data: `config -> data`, an object with `train(initial_epoch,
            steps_per_epoch)` (an endless, batched tf.data.Dataset whose
            first batch is the first of epoch `initial_epoch`; each epoch's
            order depends only on the seed and the epoch), `validation`
            (finite, batched), `test` (finite, batched, or None),
            `steps_per_pass` (steps of one pass over the training set),
            `examples_per_step` and `summary` (one line for the log); with
            `per_pipeline_input` true, `train` also takes `input_context=`
            (a `tf.distribute.InputContext`: that pipeline's share of each
            global batch, batched per replica).
        make_model: `(config, data) -> keras.Model` (called in strategy scope).
        make_schedule: `(config, steps_per_pass) -> learning rate` (a float
            or a `LearningRateSchedule` counting optimizer steps).
        schedule_needs_data: False where `make_schedule` does not use
            `steps_per_pass` (a formula of the step alone): `keras-swish
            recipes` then prints it without reading the data.
        make_optimizer: `(config, schedule) -> keras.optimizers.Optimizer`.
        make_loss: `config -> loss`.
        make_metrics: `config -> list of metrics`.
        monitor: The validation metric that picks the best model (higher is better).
        flags: Command-line flag → config key ("section.key") for this recipe.
        extra_flags: Flags only this recipe takes: name → argparse kwargs
            (each also needs its entry in `flags`).
        final_metrics: Optional `(config, model, data) -> dict` of metrics
            beyond `model.evaluate` (BLEU, ...), computed on the best model
            at the end of `train` and by `evaluate`.
        docs: How to run it, how long it takes and what it reaches.
        learning_rate_key: The config key that `compare --learning-rates`
            sets ("section.key").
    """

    name: str
    task: str
    summary: str
    default_config: Callable
    validate: Callable
    make_data: Callable
    make_model: Callable
    make_schedule: Callable
    make_optimizer: Callable
    make_loss: Callable
    make_metrics: Callable
    monitor: str
    flags: dict
    extra_flags: dict = dataclasses.field(default_factory=dict)
    final_metrics: Callable | None = None
    docs: str = ""
    learning_rate_key: str = "optimizer.learning_rate"
    schedule_needs_data: bool = True


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment: a recipe's config for one kind of data.

    Attributes:
        name: `RECIPE/VARIANT`, e.g. "mobilenet/imagenet".
        recipe: The recipe's name.
        summary: One line for `keras-swish recipes`.
        data: Patterns (`fnmatch`) of the `--data` specs it reads;
            "embedded" is the embedded default.
        overrides: Nested {section: {key: value}} applied over the recipe's
            reference defaults (with `data.source`, its default data).
        reference: The public config its constants come from.
        train_examples: Training examples of its default data, to print the
            schedule before any data is read (None: unknown).
        default: Whether `keras-swish train RECIPE` without `--data` runs it.
    """

    name: str
    recipe: str
    summary: str
    data: tuple
    overrides: dict = dataclasses.field(default_factory=dict)
    reference: str = ""
    train_examples: int | None = None
    default: bool = False

    def reads(self, source):
        spec = "embedded" if source in (None, "", "embedded") else source
        return any(fnmatch.fnmatchcase(spec, pattern) for pattern in self.data)


_RECIPES = {}
_EXPERIMENTS = {}


def register_recipe(recipe):
    if recipe.name in _RECIPES:
        raise ValueError(f"A recipe named '{recipe.name}' is already registered.")
    _RECIPES[recipe.name] = recipe
    return recipe


def register_experiment(experiment):
    if experiment.name in _EXPERIMENTS:
        raise ValueError(f"An experiment named '{experiment.name}' is already registered.")
    recipe, _, variant = experiment.name.partition("/")
    if recipe != experiment.recipe or not variant:
        raise ValueError(
            f"An experiment's name is RECIPE/VARIANT with its recipe's name first. "
            f"Received: name={experiment.name!r}, recipe={experiment.recipe!r}"
        )
    _EXPERIMENTS[experiment.name] = experiment
    return experiment


def get_recipe(name):
    _load_builtins()
    if name not in _RECIPES:
        raise KeyError(f"Unknown recipe '{name}'. Recipes: {', '.join(sorted(_RECIPES))}.")
    return _RECIPES[name]


def list_recipes():
    _load_builtins()
    return [_RECIPES[name] for name in sorted(_RECIPES)]


def list_experiments(recipe=None):
    """Experiments (of one recipe, or all), by name."""
    _load_builtins()
    return [
        _EXPERIMENTS[name]
        for name in sorted(_EXPERIMENTS)
        if recipe is None or _EXPERIMENTS[name].recipe == recipe
    ]


def find_experiment(name, source=None):
    """The experiment that `keras-swish train NAME [--data SOURCE]` runs.

    Args:
        name: An experiment (`mobilenet/imagenet`) or a recipe (`mobilenet`).
        source: The `--data` spec given, or None.

    Returns:
        An `Experiment`. For a recipe name: its default experiment without
        `--data`, else the one experiment of the recipe that reads `source`.

    Raises:
        ConfigError: Unknown name, or no experiment for this data.
    """
    _load_builtins()
    names = ", ".join(sorted(_EXPERIMENTS))
    if "/" in name:
        if name not in _EXPERIMENTS:
            raise ConfigError(f"Unknown experiment '{name}'. Experiments: {names}.")
        experiment = _EXPERIMENTS[name]
        if source is not None and not experiment.reads(source):
            raise ConfigError(
                f"Experiment '{name}' reads --data {' or '.join(experiment.data)}; "
                f"it has no settings for --data {source}. Experiments: {names}."
            )
        return experiment
    if name not in _RECIPES:
        raise ConfigError(
            f"Unknown recipe or experiment '{name}'. Recipes: {', '.join(sorted(_RECIPES))}; "
            f"experiments: {names}."
        )
    own = list_experiments(name)
    if source is None:
        defaults = [e for e in own if e.default]
        if len(defaults) != 1:
            raise ValueError(f"Recipe '{name}' must have exactly one default experiment.")
        return defaults[0]
    matching = [e for e in own if e.reads(source)]
    if not matching:
        raise ConfigError(
            f"Recipe '{name}' has no experiment for --data {source}: its experiments read "
            + "; ".join(f"{e.name}: {' or '.join(e.data)}" for e in own)
            + ". Settings for another dataset are not guessed: register an experiment "
            "(keras_swish.recipes.register_experiment) or pick one of these."
        )
    return matching[0]


def _load_builtins():
    from keras_swish.recipes import configs  # noqa: F401  (registers the built-ins)
