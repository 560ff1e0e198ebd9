"""The one training driver every recipe shares.

`resolve_config` merges defaults, the recipe's preset for the data source, a
YAML file and command-line overrides, and validates the result. `train`
picks the strategy and precision, builds data, model and optimizer (model,
optimizer, metrics and `compile` inside `strategy.scope()`), trains with
resumable checkpoints, TensorBoard logs and β monitoring, and writes the
run's folder:

    <output>/config.yaml     the resolved config (a re-run must match it)
    <output>/backup/         BackupAndRestore state while training runs
    <output>/best.keras      the best model by the recipe's validation metric
    <output>/final.keras     the model after the last epoch
    <output>/logs/           TensorBoard: Keras's train/validation logs and β
    <output>/metrics.json    per-epoch metrics, final metrics, run facts

Nothing here is specific to images: a recipe brings its own data, model,
optimizer, loss and metrics.
"""

import dataclasses
import json
import os
import platform
import shutil
import time

from keras_swish.recipes.config import (
    ConfigError,
    apply_overrides,
    dump_yaml,
    load_yaml,
    to_dict,
    write_atomic,
)


def _nested(dotted):
    """{"train.epochs": 3} → {"train": {"epochs": 3}}."""
    out = {}
    for key, value in dotted.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def resolve_config(recipe, config_file=None, flags=None, overrides=None):
    """Defaults ← preset for the data source ← YAML file ← flags ← `--set`.

    Args:
        recipe: A `Recipe`.
        config_file: Path of a YAML file, or None.
        flags: {flag name: value} for flags given on the command line.
        overrides: Nested {section: {key: value}} from `--set`.

    Returns:
        The validated config dataclass.
    """
    file_overrides = load_yaml(config_file) if config_file else {}
    if isinstance(file_overrides, dict):
        named = file_overrides.pop("recipe", recipe.name)
        if named != recipe.name:
            raise ConfigError(
                f"--config {config_file} is for recipe '{named}', not '{recipe.name}'."
            )
    flag_overrides = _nested(
        {recipe.flags[name]: value for name, value in (flags or {}).items() if value is not None}
    )
    layers = [
        (file_overrides, f"--config {config_file}"),
        (flag_overrides, "the command line"),
        (overrides or {}, "--set"),
    ]
    config = recipe.default_config()
    for values, source in layers:  # a first pass only to learn the data source
        config = apply_overrides(config, values, source)
    key = recipe.preset_key(config.data.source)
    preset = recipe.presets.get(key) or recipe.presets.get(key.partition(":")[0]) or {}
    config = apply_overrides(recipe.default_config(), preset, f"the '{key}' preset")
    for values, source in layers:
        config = apply_overrides(config, values, source)
    if config.train.output is None:
        output = os.path.join("runs", f"{recipe.name}-{config.model.activation}")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, output=output))
    recipe.validate(config)
    return config


def config_text(recipe, config):
    """What `<output>/config.yaml` holds for this recipe and config."""
    return f"recipe: {recipe.name}\n" + dump_yaml(config)


def _flatten(values, prefix=""):
    flat = {}
    for key, value in (values or {}).items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_output(recipe, config):
    """True if the output dir holds this very run (resume), False if new.

    Raises `ConfigError` when it holds a different run's config.
    """
    import yaml

    path = os.path.join(config.train.output, "config.yaml")
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        old = _flatten(yaml.safe_load(f))
    new = _flatten(yaml.safe_load(config_text(recipe, config)))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not changed:
        return True
    raise ConfigError(
        f"Output dir {config.train.output} holds a different run: its config.yaml "
        f"differs in {', '.join(changed)}. Re-run with the same settings to resume "
        "it, or choose another --output."
    )


def _versions():
    import keras
    import numpy
    import tensorflow as tf

    import keras_swish

    return {
        "keras_swish": keras_swish.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _metrics_callback(path, header, examples_per_epoch, write):
    import keras

    class MetricsWriter(keras.callbacks.Callback):
        """Writes `metrics.json` after every epoch, keeping earlier sessions'."""

        def __init__(self):
            super().__init__()
            previous = _read_json(path) or {}
            self.record = dict(header, epochs=previous.get("epochs", []))
            self.record["sessions"] = previous.get("sessions", [])
            self._started = False

        def on_epoch_begin(self, epoch, logs=None):
            if not self._started:
                self._started = True
                self.record["epochs"] = [e for e in self.record["epochs"] if e["epoch"] <= epoch]
                self.record["sessions"].append(
                    {"started_at_epoch": epoch + 1, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                )
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            wall = time.perf_counter() - self._t0
            entry = {"epoch": epoch + 1}
            entry.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
            entry["wall_time_s"] = round(wall, 3)
            entry["examples_per_s"] = round(examples_per_epoch / wall, 1)
            self.record["epochs"].append(entry)
            if write:
                write_atomic(path, json.dumps(self.record, indent=2))

    return MetricsWriter()


def train(recipe, config, verbose=1):
    """Trains `recipe` with `config`; returns the metrics dict (also in metrics.json)."""
    output = config.train.output
    resuming = check_output(recipe, config)
    metrics_path = os.path.join(output, "metrics.json")
    previous = _read_json(metrics_path) if resuming else None
    if previous and previous.get("completed"):
        print(f"Run in {output} is already complete: {json.dumps(previous['final'])}")
        return previous

    if config.train.cpu_devices > 1:
        from keras_swish.recipes.strategy import split_cpu

        split_cpu(config.train.cpu_devices)

    import keras

    from keras_swish.callbacks import BetaMonitor
    from keras_swish.callbacks.chief import is_chief
    from keras_swish.recipes.strategy import make_strategy, resolve_precision, tf_config_workers

    if config.train.strategy == "multi_worker" or (
        config.train.strategy == "auto" and not config.train.tpu and tf_config_workers() > 1
    ):
        # Keras 3's fit fails inside its own distribution code under
        # MultiWorkerMirroredStrategy (keras-team/keras#20585): say so up front.
        raise ConfigError(
            "MultiWorkerMirroredStrategy (TF_CONFIG with several workers, or --strategy "
            f"multi_worker) is not supported by Keras {keras.__version__}'s fit on the "
            "TensorFlow backend (keras-team/keras#20585). Use --strategy mirrored on one "
            "machine with several GPUs, or --tpu."
        )
    strategy, strategy_name = make_strategy(config.train.strategy, config.train.tpu)
    precision = resolve_precision(config.train.precision, strategy_name)
    replicas = strategy.num_replicas_in_sync
    chief = is_chief(strategy)
    if config.train.batch_size % replicas:
        raise ConfigError(
            f"'train.batch_size' must be divisible by the {replicas} replicas. "
            f"Received: train.batch_size={config.train.batch_size}"
        )
    print(
        f"Strategy: {strategy_name} ({type(strategy).__name__}), {replicas} replica(s), "
        f"global batch {config.train.batch_size} ({config.train.batch_size // replicas} "
        f"per replica), precision {precision}"
    )

    backup_dir = os.path.join(output, "backup")
    meta = _read_json(os.path.join(backup_dir, "training_metadata.json")) or {}
    resume_epoch = int(meta.get("epoch", 0))
    keras.utils.set_random_seed(config.train.seed)
    data = recipe.make_data(config)
    steps = config.train.steps_per_epoch or data.steps_per_epoch
    train_data = data.train.skip(resume_epoch * steps)  # a resumed run continues the stream
    print(f"Data: {data.summary}")

    # Everything is checked: from here on the run's folder is written.
    os.makedirs(output, exist_ok=True)
    if chief and not resuming:
        write_atomic(os.path.join(output, "config.yaml"), config_text(recipe, config))

    keras.config.set_dtype_policy(precision)
    try:
        with strategy.scope():
            model = recipe.make_model(config, data)
            model.compile(
                optimizer=recipe.make_optimizer(config, steps),
                loss=recipe.make_loss(config),
                metrics=recipe.make_metrics(config),
            )
    finally:
        keras.config.set_dtype_policy("float32")

    log_dir = os.path.join(output, "logs")
    header = {
        "recipe": recipe.name,
        "activation": config.model.activation,
        "data": data.summary,
        "strategy": strategy_name,
        "replicas": replicas,
        "precision": precision,
        "global_batch_size": config.train.batch_size,
        "steps_per_epoch": steps,
        "versions": _versions(),
        "completed": False,
    }
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True),
        _metrics_callback(metrics_path, header, steps * data.examples_per_step, chief),
    ]
    if chief:
        callbacks += [
            keras.callbacks.ModelCheckpoint(
                os.path.join(output, "best.keras"),
                monitor=recipe.monitor,
                mode="max",
                save_best_only=True,
            ),
            keras.callbacks.TensorBoard(log_dir),
            BetaMonitor(log_dir),
        ]
    start = time.perf_counter()
    model.fit(
        train_data,
        epochs=config.train.epochs,
        steps_per_epoch=steps,
        validation_data=data.validation,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles, with the seed
        verbose=verbose,
    )
    final = _final_metrics(recipe, config, model, data)
    record = callbacks[1].record
    record.update(
        completed=True,
        final=final,
        train_wall_time_s=round(time.perf_counter() - start, 2),
    )
    if chief:
        model.save(os.path.join(output, "final.keras"))
        write_atomic(metrics_path, json.dumps(record, indent=2))
    shutil.rmtree(backup_dir, ignore_errors=True)
    print(
        "Final validation: "
        + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in record["final"].items()
        )
        + f"\nRun folder: {output}\nTensorBoard logs: {log_dir}  (tensorboard --logdir {log_dir})"
    )
    return record


def _final_metrics(recipe, config, model, data):
    results = model.evaluate(data.validation, return_dict=True, verbose=0)
    final = {k: float(v) for k, v in results.items()}
    if recipe.final_metrics is not None:
        final.update(recipe.final_metrics(config, model, data))
    return final


def load_run_config(recipe_lookup, run_dir):
    """Reads `<run_dir>/config.yaml` back into its recipe and config."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        raise ConfigError(f"{run_dir} is not a run folder: it has no config.yaml.")
    values = load_yaml(path)
    try:
        recipe = recipe_lookup(values.pop("recipe"))
    except KeyError as error:
        raise ConfigError(f"{path}: {error.args[0]}") from None
    config = apply_overrides(recipe.default_config(), values, path)
    return recipe, config


def evaluate(recipe, config, run_dir, verbose=0):
    """Evaluates a run's best (else final) model on `config`'s validation data."""
    import keras

    for name in ("best.keras", "final.keras"):
        model_path = os.path.join(run_dir, name)
        if os.path.exists(model_path):
            break
    else:
        raise ConfigError(f"{run_dir} holds no model yet (best.keras or final.keras).")
    data = recipe.make_data(config)
    model = keras.models.load_model(model_path)
    try:
        metrics = _final_metrics(recipe, config, model, data)
    except ValueError as error:  # e.g. another number of classes
        raise ConfigError(f"The model in {run_dir} does not fit {data.summary}: {error}") from None
    report = {
        "model": model_path,
        "data": data.summary,
        "metrics": metrics,
        "config": to_dict(config)["data"],
    }
    return report
