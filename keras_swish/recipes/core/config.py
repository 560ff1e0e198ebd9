"""Recipe configs: OmegaConf structured configs over typed dataclasses.

A recipe's config is a dataclass of sections (`model`, `data`, `optimizer`,
`train`), each a dataclass of typed fields holding the reference defaults.
An experiment (`mobilenet/imagenet`, `mobilenet/embedded`, ...) is a set of
overrides of those defaults. Override order: defaults ← experiment ← a YAML
file (`--config`) ← command-line flags ← `--set section.key=value`.

OmegaConf does the merging, type checks and conversions (`--set
train.steps_per_epoch=null`, `--set optimizer.learning_rate=1e-5`); this
module only turns its errors into one-line `ConfigError`s that name the key
and where the value came from.
"""

import dataclasses

from keras_swish.errors import UsageError
from keras_swish.files import write_atomic  # noqa: F401 (where the recipes import it)


@dataclasses.dataclass
class TrainConfig:
    """The `train` section every recipe has; the runner reads it."""

    epochs: int = 1
    # Optimizer steps per epoch: the run trains epochs × this and validates,
    # saves and logs after each; None: one pass over the training set. The
    # RMSProp schedules count passes over the data whatever this is; SGD step
    # schedules fall at fractions of epochs × this.
    steps_per_epoch: int | None = None
    batch_size: int = 32  # global, over all replicas
    label_smoothing: float = 0.1
    seed: int = 0
    strategy: str = "auto"
    tpu: str | None = None
    precision: str = "auto"
    cpu_devices: int = 1  # >1 splits the CPU into logical devices (mirrored on a CPU)
    # Training steps run in one call to the device (Keras's `steps_per_execution`):
    # more keep a TPU (or a fast GPU on a small model) from waiting on Python. It
    # must divide the steps of an epoch; the weights are the same for every value.
    steps_per_execution: int = 1
    # Checkpoint averaging (Vaswani et al. 2017, section 6.1): the weights after
    # each of the last N epochs (all of them if fewer) are kept, and their mean is
    # saved and evaluated as `averaged.keras`, the model the run reports. 0: none
    # (the run reports best.keras).
    average_last: int = 0
    output: str | None = None  # default: runs/<experiment>-<activation> ('/' as '-')


class ConfigError(UsageError):
    """A config key or value that is not allowed; the message says why."""


def check(condition, key, value, allowed):
    """Raises `ConfigError` naming `key`, its value and what is allowed."""
    if not condition:
        raise ConfigError(f"'{key}' must be {allowed}. Received: {key}={value!r}")


def check_local_folder(path, key):
    """Refuses a URL (gs://...) or a file for a folder the project writes with local file calls.

    A file (or a path under one) is found here, before TensorFlow starts: the
    folder is made much later, and `makedirs` would fail there with a traceback.
    """
    import os

    check(
        path is None or "://" not in path,
        key,
        path,
        "a local or mounted folder: runs are written with local file calls "
        "(a lock, atomic renames, fsync), which gs:// and other URLs do not offer",
    )
    if path is None:
        return
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        named = "is a file" if existing == os.path.abspath(path) else f"is in {existing}, a file"
        raise ConfigError(f"'{key}' must be a folder: {path} {named}.")


def validate_train(train):
    """Checks the `train` section (a `TrainConfig`) that every recipe has."""
    from keras_swish.recipes.core.strategy import PRECISIONS, STRATEGIES

    check(train.epochs >= 1, "train.epochs", train.epochs, "at least 1")
    check(
        train.steps_per_epoch is None or train.steps_per_epoch >= 1,
        "train.steps_per_epoch",
        train.steps_per_epoch,
        "at least 1 (or null for one pass over the data)",
    )
    check(train.batch_size >= 1, "train.batch_size", train.batch_size, "at least 1")
    # keras.utils.set_random_seed seeds NumPy, which takes 32 bits.
    check(0 <= train.seed < 2**32, "train.seed", train.seed, "in [0, 2**32)")
    check(
        0 <= train.label_smoothing < 1, "train.label_smoothing", train.label_smoothing, "in [0, 1)"
    )
    check(
        train.strategy in STRATEGIES,
        "train.strategy",
        train.strategy,
        f"one of {', '.join(STRATEGIES)}",
    )
    check(
        train.precision in PRECISIONS,
        "train.precision",
        train.precision,
        f"one of {', '.join(PRECISIONS)}",
    )
    check(train.cpu_devices >= 1, "train.cpu_devices", train.cpu_devices, "at least 1")
    check(
        train.average_last >= 0,
        "train.average_last",
        train.average_last,
        ">= 0 (how many last epochs' weights are averaged; 0: none)",
    )
    check(
        train.steps_per_execution >= 1,
        "train.steps_per_execution",
        train.steps_per_execution,
        "at least 1",
    )
    check(
        train.steps_per_epoch is None or train.steps_per_epoch % train.steps_per_execution == 0,
        "train.steps_per_execution",
        train.steps_per_execution,
        f"a divisor of train.steps_per_epoch={train.steps_per_epoch} (Keras would run "
        "past the end of each epoch)",
    )
    check_local_folder(train.output, "train.output")
    check(
        not train.tpu or train.strategy in ("auto", "tpu"),
        "train.strategy",
        train.strategy,
        f"auto or tpu with a TPU given (train.tpu={train.tpu!r}); a TPU is not used otherwise",
    )


def to_dict(config):
    """A config dataclass as plain nested dicts (for YAML and metrics)."""
    return dataclasses.asdict(config)


def _error(error, source, merged):
    """An OmegaConf error as a one-line `ConfigError` naming the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    message = str(getattr(error, "msg", None) or error).splitlines()[0]
    key = getattr(error, "full_key", None) or ""
    if isinstance(error, ConfigKeyError) and key:
        parent, _, _ = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        known = ", ".join(node.keys()) if OmegaConf.is_config(node) else ""
        kind = "key" if parent else "section"
        where = f" Keys of '{parent}': {known}." if parent else f" Sections: {known}."
        return ConfigError(f"Unknown config {kind} '{key}' in {source}.{where}")
    return ConfigError(f"{source}: '{key}': {message}." if key else f"{source}: {message}.")


def merge(config, layers):
    """Returns `config` with each layer of overrides merged in, in order.

    Args:
        config: A recipe config dataclass (the defaults).
        layers: `(overrides, source)` pairs: nested dicts (or OmegaConf
            configs) of new values, and where they come from, for errors.

    Returns:
        A new config dataclass of the same type, every value checked and
        converted to its field's type.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    merged = OmegaConf.structured(config)
    for overrides, source in layers:
        if overrides is None or len(overrides) == 0:
            continue
        if not OmegaConf.is_config(overrides) and not isinstance(overrides, dict):
            raise ConfigError(
                f"{source} must be a mapping of sections to keys. Received: {overrides!r}"
            )
        _refuse_missing(overrides, source)
        try:
            merged = OmegaConf.merge(merged, overrides)
        except OmegaConfBaseException as error:
            raise _error(error, source, merged) from None
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:  # an interpolation (${...}) or ??? left open
        first = str(error).splitlines()[0]
        raise ConfigError(
            f"Cannot resolve the config: {first}. An interpolation (${{...}}) must name "
            "a key of the config (such as ${model.activation}); give plain values otherwise."
        ) from None


def _refuse_missing(overrides, source, prefix=""):
    """Refuses OmegaConf's "missing" marker `???` as a value.

    OmegaConf.merge skips a `???` in the overrides, so `--set train.epochs=???`
    (or a YAML template's placeholder left in) would silently keep the default.
    """
    from omegaconf import OmegaConf

    if OmegaConf.is_config(overrides):
        overrides = OmegaConf.to_container(overrides, resolve=False)
    items = overrides.items() if isinstance(overrides, dict) else enumerate(overrides)
    for key, value in items:
        name = f"{prefix}[{key}]" if isinstance(overrides, list) else f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            _refuse_missing(value, source, name if isinstance(value, list) else f"{name}.")
        elif isinstance(value, str) and value.strip() == "???":
            raise ConfigError(
                f"{source}: '{name}' is ??? (OmegaConf's missing value): give it "
                "a value, or leave the key out for the default."
            )


def parse_set(assignments):
    """`["optimizer.learning_rate=0.2", ...]` → overrides (null is None)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in assignments or ():
        key, sep, _ = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(
                "--set takes SECTION.KEY=VALUE, such as "
                f"optimizer.learning_rate=0.2. Received: --set {item}"
            )
        try:  # the value is YAML: a bracket left open is a usage error
            OmegaConf.from_dotlist([item])
        except (yaml.YAMLError, OmegaConfBaseException) as error:
            first = str(error).splitlines()[0]
            raise ConfigError(f"--set {item}: the value is not valid YAML ({first}).") from None
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(assignments or ())))


def load_yaml(path):
    """Reads a YAML file into nested overrides (a dict)."""
    from omegaconf import OmegaConf

    try:
        content = OmegaConf.to_container(OmegaConf.load(path))
    except OSError as error:
        raise ConfigError(f"Cannot read config file {path}: {error.strerror}") from None
    except Exception as error:  # yaml's and OmegaConf's parse errors
        first = str(error).splitlines()[0]
        raise ConfigError(f"Config file {path} is not valid YAML: {first}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of sections. Received: {content!r}")
    return content


def dump_yaml(values):
    """A config dataclass (or nested dict) as YAML text."""
    from omegaconf import OmegaConf

    if dataclasses.is_dataclass(values):
        values = to_dict(values)
    return OmegaConf.to_yaml(OmegaConf.create(values), sort_keys=False)
