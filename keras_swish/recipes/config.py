"""Recipe configs: typed dataclasses, YAML files, `--set` overrides, validation.

A recipe's config is a dataclass of sections (`model`, `data`, `optimizer`,
`train`), each a dataclass of typed fields with the reference defaults.
Override order: defaults ← the recipe's preset for the data source ← a YAML
file (`--config`) ← command-line flags and `--set section.key=value`.
"""

import dataclasses
import os
import tempfile
import types
import typing

import yaml


@dataclasses.dataclass
class TrainConfig:
    """The `train` section every recipe has; the driver reads it."""

    epochs: int = 1
    steps_per_epoch: int | None = None  # None: one pass over the training set
    batch_size: int = 32  # global, over all replicas
    label_smoothing: float = 0.1
    seed: int = 0
    strategy: str = "auto"
    tpu: str | None = None
    precision: str = "auto"
    cpu_devices: int = 1  # >1 splits the CPU into logical devices (mirrored on a CPU)
    output: str | None = None  # default: runs/<recipe>-<activation>


class ConfigError(ValueError):
    """A config key or value that is not allowed; the message says why."""


def check(condition, key, value, allowed):
    """Raises `ConfigError` naming `key`, its value and what is allowed."""
    if not condition:
        raise ConfigError(f"'{key}' must be {allowed}. Received: {key}={value!r}")


def validate_train(train):
    """Checks the `train` section (a `TrainConfig`) that every recipe has."""
    from keras_swish.recipes.strategy import PRECISIONS, STRATEGIES

    check(train.epochs >= 1, "train.epochs", train.epochs, "at least 1")
    check(
        train.steps_per_epoch is None or train.steps_per_epoch >= 1,
        "train.steps_per_epoch",
        train.steps_per_epoch,
        "at least 1 (or null for one pass over the data)",
    )
    check(train.batch_size >= 1, "train.batch_size", train.batch_size, "at least 1")
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


def to_dict(config):
    """A config dataclass as plain nested dicts (for YAML and metrics)."""
    return dataclasses.asdict(config)


def _field_types(cls):
    return typing.get_type_hints(cls)


def _coerce(value, annotation, key):
    """Checks `value` against a field's type; YAML-ish strings are parsed."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last_error = None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                last_error = error
        raise last_error
    if isinstance(value, str) and annotation is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, args[0], key) for v in value)
    else:
        raise ConfigError(f"Unsupported type for '{key}': {annotation}")
    expected = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"'{key}' must be a {expected}. Received: {key}={value!r}")


def apply_overrides(config, overrides, source):
    """Returns `config` with nested `overrides` ({section: {key: value}}) applied.

    Args:
        config: A recipe config dataclass.
        overrides: Nested dict of new values.
        source: Where the overrides come from, for error messages.
    """
    if not overrides:
        return config
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"{source} must be a mapping of sections to keys. Received: {overrides!r}"
        )
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    changes = {}
    for section_name, values in overrides.items():
        if section_name not in sections:
            raise ConfigError(
                f"Unknown config section '{section_name}' in {source}. "
                f"Sections: {', '.join(sections)}."
            )
        if not isinstance(values, dict):
            raise ConfigError(
                f"Section '{section_name}' in {source} must be a mapping. Received: {values!r}"
            )
        section = sections[section_name]
        types_ = _field_types(type(section))
        updated = {}
        for key, value in values.items():
            if key not in types_:
                raise ConfigError(
                    f"Unknown config key '{section_name}.{key}' in {source}. "
                    f"Keys of '{section_name}': {', '.join(types_)}."
                )
            updated[key] = _coerce(value, types_[key], f"{section_name}.{key}")
        changes[section_name] = dataclasses.replace(section, **updated)
    return dataclasses.replace(config, **changes)


def parse_set(assignments):
    """`["optimizer.learning_rate=0.2", ...]` → `{"optimizer": {...}}`."""
    overrides = {}
    for item in assignments or ():
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(
                "--set takes SECTION.KEY=VALUE, such as "
                f"optimizer.learning_rate=0.2. Received: --set {item}"
            )
        overrides.setdefault(section, {})[name] = value
    return overrides


def load_yaml(path):
    """Reads a `--config` YAML file into nested overrides."""
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except OSError as error:
        raise ConfigError(f"Cannot read --config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--config {path} is not valid YAML: {error}") from None
    return content or {}


def dump_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def write_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
