"""The one runner: every train, evaluate, compare and search run goes through it.

`resolve` picks the experiment (`mobilenet/imagenet`, or a recipe's default)
and merges defaults ← experiment ← YAML file ← flags ← `--set`. `train`
chooses the strategy and precision, builds data, model and optimizer
(inside `strategy.scope()`), prints the learning-rate schedule, trains with
a resume state that survives a kill at any moment, and writes the run's
folder:

    <output>/config.yaml     the experiment and resolved config (a re-run must match)
    <output>/state/          resume state (see `run_state`); kept after the run
                             so that a larger --epochs can continue it
    <output>/best.keras      the best model by the recipe's validation metric
    <output>/final.keras     the model after the last epoch
    <output>/averaged.keras  with `train.average_last` N: the mean of the weights
                             after the last N epochs (Vaswani et al.'s checkpoint
                             averaging), the model the run then reports
    <output>/logs/           TensorBoard: Keras's train/validation logs and β
    <output>/metrics.json    per-epoch history; `best` (best.keras: its epoch,
                             validation and test metrics), `averaged`
                             (averaged.keras: its epochs and metrics) and
                             `last` (final.keras); run facts; `completed` last

Re-running the same command resumes an interrupted run at its last
committed epoch; with a larger `--epochs` it continues a finished one. The
final stage — evaluating `best.keras` (loaded back from its file, in safe
mode) on validation and test data, writing `final.keras`, writing and
evaluating `averaged.keras`, marking `metrics.json` complete — is redone
after a kill, never the training.

Nothing here is specific to a task: a recipe brings its own data, model,
optimizer, loss, metrics and final evaluation.
"""

import dataclasses
import os
import platform
import shutil
import tempfile
import time

from keras_swish.errors import UsageError
from keras_swish.files import fsync_path, json_text
from keras_swish.recipes.core import faults
from keras_swish.recipes.core.config import (
    ConfigError,
    dump_yaml,
    load_yaml,
    merge,
    to_dict,
    write_atomic,
)
from keras_swish.recipes.core.registry import find_experiment, get_recipe
from keras_swish.recipes.core.run_state import (
    LOCK_NAME,
    RunLock,
    RunState,
    optimizer_iterations,
    read_json,
)

# Keys that may differ between a run folder's config.yaml and a re-run of it.
_OUTPUT_KEY = "train.output"  # the same folder spelled another way
# Where this machine keeps the run and the prepared data: a resumed run, or
# another worker, may name them otherwise (a moved TFDS folder, a mount point).
_LOCATION_KEYS = (_OUTPUT_KEY, "data.data_dir")
# How the same steps are run: a resumed run may change it (not other workers).
_RESUMABLE_KEYS = (*_LOCATION_KEYS, "train.steps_per_execution")
_EPOCHS_KEY = "train.epochs"  # more epochs continue the run
# Config keys added after runs were made, with the behaviour those runs had
# (what a config.yaml without the key means; a function of the old config's
# values where it depends on them): such a run resumes where the key still has
# that value, and is another run where it does not.
ADDED_KEYS = {
    "data.color_distortion": False,
    "optimizer.decay_after_warmup": False,
    "data.pad_mode": "zeros",
    "model.decay_all_parameters": False,
    "model.kernel_initializer": "he_normal",
    "train.average_last": 0,
    # Inception-ResNet-v2 had no auxiliary head and no decay on its biases.
    "model.auxiliary_weight": 0.0,
    "model.decay_biases": False,
    # keras-hub's layers used `dropout` on the attention probabilities too.
    "model.attention_dropout": lambda old: old.get("model.dropout"),
}


def nested(dotted):
    """{"train.epochs": 3} → {"train": {"epochs": 3}}."""
    out = {}
    for key, value in dotted.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def _explicit_source(layers):
    """The `data.source` the user gave (last layer wins), or `...` if none."""
    source = ...
    for values, _ in layers:
        data = (values or {}).get("data")
        if isinstance(data, dict) and "source" in data:
            source = data["source"]
    return source


def resolve(name, config_file=None, flags=None, overrides=None, require_data=True):
    """Defaults ← experiment ← YAML file ← flags ← `--set`.

    Args:
        name: An experiment (`mobilenet/imagenet`) or a recipe (`mobilenet`:
            its experiment for `--data`, else its default one).
        config_file: Path of a YAML file of config sections, or None.
        flags: {flag name: value} of the flags given on the command line.
        overrides: Nested {section: {key: value}} from `--set`.
        require_data: Whether an experiment that reads only data given with
            `--data` (`transformer_nmt/text`) needs it (False: to show it).

    Returns:
        `(recipe, experiment, config)`, the config validated.
    """
    file_overrides = load_yaml(config_file) if config_file else {}
    named = file_overrides.pop("experiment", None) or file_overrides.pop("recipe", None)
    file_overrides.pop("recipe", None)
    if named is not None and named not in (name, name.partition("/")[0]):
        raise ConfigError(f"--config {config_file} is for '{named}', not '{name}'.")
    recipe_name = name.partition("/")[0]
    recipe = _recipe_or_error(recipe_name)
    unknown = sorted(set(flags or {}) - set(recipe.flags))
    if unknown:
        raise ConfigError(f"Recipe '{recipe.name}' does not take --{unknown[0].replace('_', '-')}.")
    flag_overrides = nested({recipe.flags[k]: v for k, v in (flags or {}).items()})
    layers = [
        (file_overrides, f"--config {config_file}"),
        (flag_overrides, "the command line"),
        (overrides or {}, "--set"),
    ]
    source = _explicit_source(layers)
    experiment = find_experiment(name, None if source is ... else (source or "embedded"))
    config = merge(
        recipe.default_config(),
        [(experiment.overrides, f"experiment '{experiment.name}'"), *layers],
    )
    if require_data and not experiment.reads(config.data.source):
        raise ConfigError(
            f"Experiment '{experiment.name}' needs --data {' or '.join(experiment.data)}. "
            f"Received: data.source={config.data.source!r}"
        )
    if config.train.output is None:
        from keras_swish.recipes.models.activations import activation_slug

        recipe.validate(config)  # the activation is checked before it names a folder
        output = os.path.join(
            "runs",
            f"{experiment.name.replace('/', '-')}-{activation_slug(config.model.activation)}",
        )
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, output=output))
    recipe.validate(config)
    return recipe, experiment, config


def _recipe_or_error(name):
    try:
        return get_recipe(name)
    except KeyError as error:
        raise ConfigError(error.args[0]) from None


def config_text(experiment, config):
    """What `<output>/config.yaml` holds."""
    return f"experiment: {experiment.name}\n" + dump_yaml(config)


def flatten(values, prefix=""):
    """{"train": {"epochs": 3}} → {"train.epochs": 3} (an empty dict adds no key)."""
    flat = {}
    for key, value in (values or {}).items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_output(experiment, config):
    """Whether the output folder holds this run already, and what may change.

    Returns:
        None for a new run, else the old config's values (flat dict).

    Raises:
        ConfigError: The folder holds another run (the message names the
            differing keys), a run that trained more epochs than asked for, or
            one whose learning rate at steps it trained the new epochs would
            change.
    """
    old = _check_config(experiment, config)
    if old is not None and old[_EPOCHS_KEY] != config.train.epochs:
        check_longer_schedule(experiment, config, old[_EPOCHS_KEY])
    return old


def check_longer_schedule(experiment, config, old_epochs):
    """Refuses other epochs where they change the learning rate of steps already trained.

    An SGD step schedule falls at fractions of the run: a 182-epoch run ends
    at 1 % of its peak, and the same steps of a 300-epoch run are at 10 %, so
    continuing it would jump back up — a run that is neither. Schedules
    counted in passes over the data (RMSProp's, Vaswani's) are the same for
    every length, and such runs continue (or, stopped, go back to fewer).

    Raises:
        ConfigError: Naming the first step whose rate would change.
    """
    import numpy as np

    output = config.train.output
    header = read_json(os.path.join(output, "metrics.json")) or {}
    record = RunState(output, write=False).record
    # The state's own note first: metrics.json lags the first commit after a kill.
    steps_per_epoch = record.get("steps_per_epoch") or header.get("steps_per_epoch") or 0
    steps_per_pass = record.get("steps_per_pass") or header.get("steps_per_pass")
    done = record.get("optimizer_iterations")  # steps taken (loss scaling skips some)
    if done is None:
        done = int(record["epoch"]) * steps_per_epoch
    if not done:
        return  # nothing trained
    if steps_per_pass is None:  # a run folder made before state.json noted it
        if config.train.steps_per_epoch is None:
            return
        steps_per_pass = config.train.steps_per_epoch
    recipe = get_recipe(experiment.recipe)
    shorter = dataclasses.replace(
        config, train=dataclasses.replace(config.train, epochs=old_epochs)
    )
    before, after = (recipe.make_schedule(c, steps_per_pass) for c in (shorter, config))
    if _same_schedule(before, after):
        return
    steps = np.arange(done, dtype="int64")  # the optimizer's `iterations` before each step
    rates = [_rates(schedule, steps) for schedule in (before, after)]
    moved = np.flatnonzero(~np.isclose(rates[0], rates[1], rtol=1e-6, atol=0.0))
    if moved.size:
        step = int(moved[0])
        raise ConfigError(
            f"Output dir {output} holds a run of {old_epochs} epochs whose learning-rate "
            f"schedule depends on its length: with --epochs {config.train.epochs} the rate "
            f"at step {step + 1} of the {done} it trained would be "
            f"{float(rates[1][step]):.4g} instead of {float(rates[0][step]):.4g}. Keep "
            f"--epochs {old_epochs} for this run, or train {config.train.epochs} epochs into "
            "another --output."
        )


def _same_schedule(a, b):
    """Whether two learning rates (floats or schedules) are the same function."""
    if type(a) is not type(b):
        return False
    if hasattr(a, "get_config"):
        return a.get_config() == b.get_config()
    return a == b


def _rates(schedule, steps):
    """The learning rate at each of `steps` (a NumPy int array), as NumPy.

    A step schedule is evaluated here in NumPy: `compare` checks its runs
    before starting them, in a process that must not start TensorFlow's
    runtime (it would reserve the GPUs its runs need).
    """
    import keras
    import numpy as np

    if isinstance(schedule, keras.optimizers.schedules.PiecewiseConstantDecay):
        config = schedule.get_config()  # values[i] for boundaries[i-1] < step <= boundaries[i]
        values = np.asarray(config["values"], dtype=np.float64)
        return values[np.searchsorted(np.asarray(config["boundaries"]), steps, side="left")]
    if not callable(schedule):
        return np.full(steps.shape, float(schedule))
    return keras.ops.convert_to_numpy(schedule(steps)).astype(np.float64)


def _missing_folders(path):
    """The folders of `path` that do not exist yet, `path` first, then its parents."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _check_writable(output):
    """A new `--output` must be a folder this process can make (exit 2, not a traceback).

    Checked before TensorFlow starts: the folder is made much later, after
    the data is read. (A file is refused by `check_local_folder`; an existing
    run folder is not checked here: a finished run in a read-only archive
    still reports itself.)
    """
    missing = _missing_folders(output)
    if missing:
        parent = os.path.dirname(missing[-1])
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"--output {output}: this process may not make folders in {parent}; give "
                "a folder it can write."
            )


def _check_config(experiment, config):
    """`check_output` without the schedule: the old config's values, or None."""
    _check_writable(config.train.output)
    path = os.path.join(config.train.output, "config.yaml")
    if not os.path.exists(path):
        return None
    old = flatten(load_yaml(path))
    new = _flat_config(experiment, config)
    for key, before in ADDED_KEYS.items():
        if key in new and key not in old:
            old[key] = before(old) if callable(before) else before
    changed = sorted(
        k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in _RESUMABLE_KEYS
    )
    # Epochs the run trained: committed in its state, or (a search prunes its
    # finished children's state) recorded in metrics.json.
    metrics = read_json(os.path.join(config.train.output, "metrics.json")) or {}
    committed = int(RunState(config.train.output, write=False).record.get("epoch") or 0)
    trained = max(committed, trained_epochs(metrics))
    if changed == [_EPOCHS_KEY] and new[_EPOCHS_KEY] > old[_EPOCHS_KEY]:
        if committed < trained:  # its checkpoints are gone: training would start over
            raise ConfigError(
                f"Output dir {config.train.output} holds a finished run of {trained} "
                "epochs without its resume checkpoints (state/, pruned by a search): it "
                f"cannot be continued to {new[_EPOCHS_KEY]} epochs. Train them into another "
                "--output."
            )
        return old
    if changed == [_EPOCHS_KEY]:
        # Fewer epochs than config.yaml says, but not fewer than were trained: a
        # longer run that was killed (or failed) is taken back to what it was.
        if new[_EPOCHS_KEY] >= trained:
            return old
        of = f" ({trained} of them trained)" if trained < old[_EPOCHS_KEY] else ""
        raise ConfigError(
            f"Output dir {config.train.output} holds a run of {old[_EPOCHS_KEY]} epochs{of}; "
            f"--epochs {new[_EPOCHS_KEY]} would shorten it. Re-run with --epochs "
            f"{trained} or more, or choose another --output."
        )
    if changed:
        details = ", ".join(f"{k} ({old.get(k)!r} → {new.get(k)!r})" for k in changed)
        raise ConfigError(
            f"Output dir {config.train.output} holds a different run: its config.yaml "
            f"differs in {details}. Re-run with the same settings to resume it (a larger "
            "--epochs continues it), or choose another --output."
        )
    return old


def _flat_config(experiment, config):
    """`config` as config.yaml writes it, flat: {"train.epochs": 3, ...}."""
    return flatten(load_yaml_text(config_text(experiment, config)))


def load_yaml_text(text):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(text))


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


def schedule_lines(recipe, config, steps_per_pass, steps_per_epoch):
    """The printout of a run's learning rate at 0/25/50/75/100 % of training."""
    from keras_swish.recipes.core.schedules import describe_schedule

    schedule = recipe.make_schedule(config, steps_per_pass)
    total = config.train.epochs * steps_per_epoch
    return describe_schedule(schedule, total, steps_per_pass)


def _state_callback(state, monitor, examples_per_step, steps, on_commit, average_last):
    import keras

    class CommitEpochs(keras.callbacks.Callback):
        """Commits every epoch to the run state (see `run_state`)."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            wall = time.perf_counter() - self._t0
            entry = {"epoch": epoch + 1}
            entry.update({k: float(v) for k, v in (logs or {}).items()})
            entry["wall_time_s"] = round(wall, 3)
            entry["examples_per_s"] = round(examples_per_step * steps / wall, 1)
            state.commit_epoch(self.model, epoch + 1, entry, monitor, average_last)
            on_commit()

    return CommitEpochs()


def _tensorboard(log_dir):
    """Keras's TensorBoard callback, with its evaluation points written after the commit.

    Keras writes `evaluation_<metric>_vs_iterations` when validation ends,
    before `on_epoch_end` (where the epoch is committed): an epoch killed in
    between would leave its point, and the resumed run, training that epoch
    again, would write a second one at the same step. Here they wait for
    `on_epoch_end`, which runs after the commit callback's, and go through
    Keras's own validation writer (`tensorboard_validation_writer`).
    """
    import keras

    from keras_swish.activations import tensorboard_validation_writer

    class CommittedTensorBoard(keras.callbacks.TensorBoard):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self._evaluations = None

        def on_test_end(self, logs=None):
            from keras import ops

            if self.model.optimizer is not None:
                step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
                self._evaluations = (dict(logs or {}), step)
            super().on_test_end({})  # Keras's bookkeeping (its writer), no points

        def on_epoch_end(self, epoch, logs=None):
            import tensorflow as tf

            super().on_epoch_end(epoch, logs)
            if self._evaluations is not None:
                values, step = self._evaluations
                self._evaluations = None
                with tensorboard_validation_writer(self).as_default():
                    for name, value in values.items():
                        tf.summary.scalar(f"evaluation_{name}_vs_iterations", value, step=step)

    return CommittedTensorBoard(log_dir)


def trained_epochs(metrics):
    """The last epoch a run's `metrics.json` (as a dict) records, 0 for none."""
    return max((int(e.get("epoch", 0)) for e in metrics.get("epochs") or ()), default=0)


def _metrics_record(header, state, extra=None):
    record = dict(header)
    record["epochs"] = state.history
    record["sessions"] = state.record["sessions"]
    best = state.best
    if best:
        epoch = next((e for e in state.history if e["epoch"] == best["epoch"]), {})
        record["best"] = {
            "model": "best.keras",
            "epoch": best["epoch"],
            "monitor": best["monitor"],
            "validation": {k: v for k, v in epoch.items() if k.startswith("val_")},
        }
    record.update(extra or {})
    return record


def train(recipe, experiment, config, verbose=1):
    """Trains (or resumes, or continues) a run; returns its metrics (also in metrics.json)."""
    output = config.train.output
    old = _check_config(experiment, config)  # the schedule's part: after the strategy
    metrics_path = os.path.join(output, "metrics.json")
    previous = read_json(metrics_path) if old is not None else None
    # More epochs than config.yaml says (or fewer, back to what a longer run
    # that was stopped had trained): config.yaml is rewritten.
    resized = old is not None and old[_EPOCHS_KEY] != config.train.epochs
    # Another --data-dir or steps_per_execution: config.yaml says the new one
    # (what `evaluate RUN` reads).
    new = _flat_config(experiment, config) if old is not None else {}
    relocated = old is not None and any(old.get(k) != new.get(k) for k in _RESUMABLE_KEYS[1:])
    # Complete means complete for *these* epochs: a longer run killed after it
    # rewrote config.yaml, before metrics.json, must still train the rest.
    if previous and previous.get("completed") and trained_epochs(previous) >= config.train.epochs:
        if resized:  # a longer run stopped before its metrics.json said so: back to these
            try:
                lock = RunLock(output)
            except UsageError:
                lock = None  # another process holds the folder (a second worker): it writes
            if lock is not None:
                try:
                    text = config_text(experiment, config)
                    write_atomic(os.path.join(output, "config.yaml"), text)
                finally:
                    lock.release()
        print(f"Run in {output} is already complete: {_summary(previous)}")
        return previous

    if config.train.cpu_devices > 1:
        from keras_swish.recipes.core.strategy import split_cpu

        split_cpu(config.train.cpu_devices)

    import keras

    from keras_swish.callbacks import BetaMonitor
    from keras_swish.callbacks.chief import is_chief
    from keras_swish.recipes.core.strategy import make_strategy, resolve_precision

    strategy, strategy_name = make_strategy(config.train.strategy, config.train.tpu)
    precision = resolve_precision(config.train.precision, strategy_name)
    replicas = strategy.num_replicas_in_sync
    chief = is_chief(strategy)
    if resized:
        check_longer_schedule(experiment, config, old[_EPOCHS_KEY])
    _check_precision(output, previous, config.train.precision, precision)
    if config.train.batch_size % replicas:
        raise ConfigError(
            f"'train.batch_size' must be divisible by the {replicas} replicas. "
            f"Received: train.batch_size={config.train.batch_size}"
        )
    print(f"Experiment: {experiment.name} ({experiment.reference or experiment.summary})")
    print(
        f"Strategy: {strategy_name} ({type(strategy).__name__}), {replicas} replica(s), "
        f"global batch {config.train.batch_size} ({config.train.batch_size // replicas} "
        f"per replica), precision {precision}"
    )

    # One writer per run folder: a second process (a command started twice, an
    # orphaned child of a killed `compare`) would delete the first's files.
    missing = _missing_folders(output)  # what this run makes (runs/ of runs/x too)
    created = bool(missing)
    lock = RunLock(output) if chief else None
    scratch = None
    try:
        state = RunState(output, write=chief)
        rolled = state.recover()
        keras.utils.set_random_seed(config.train.seed)
        if not chief:  # files a recipe's data writes (a vocabulary) go to a private folder
            scratch, scratch_lock = _worker_scratch()
            data = recipe.make_data(
                dataclasses.replace(config, train=dataclasses.replace(config.train, output=scratch))
            )
        else:
            data = recipe.make_data(config)
        steps = config.train.steps_per_epoch or data.steps_per_pass
        print(f"Data: {data.summary}")
        if steps % config.train.steps_per_execution:
            raise ConfigError(
                "'train.steps_per_execution' must divide the steps of an epoch (one pass "
                f"over the data: {steps}; Keras would run past each epoch's end). Received: "
                f"train.steps_per_execution={config.train.steps_per_execution}"
            )
        _check_same_data(old, config, state, previous, data)
        for line in schedule_lines(recipe, config, data.steps_per_pass, steps):
            print(line)

        if strategy_name == "multi_worker":  # before the first variable is made
            _check_workers_agree(
                strategy,
                state.epoch,
                state.record.get("optimizer_iterations") or 0,
                output,
                _run_fingerprint(experiment, config, precision, data),
                precision,
            )

        # Everything is checked: from here on the run's folder is written.
        os.makedirs(output, exist_ok=True)
        if chief and (old is None or resized or relocated):
            write_atomic(os.path.join(output, "config.yaml"), config_text(experiment, config))
        faults.point("configured")

        keras.config.set_dtype_policy(precision)
        try:
            with strategy.scope():
                model = recipe.make_model(config, data)
                model.compile(
                    optimizer=recipe.make_optimizer(
                        config, recipe.make_schedule(config, data.steps_per_pass)
                    ),
                    loss=recipe.make_loss(config),
                    metrics=recipe.make_metrics(config),
                    steps_per_execution=config.train.steps_per_execution,
                )
                if state.checkpoint:
                    model.optimizer.build(model.trainable_variables)
                    state.restore(model)
                    _check_restored(model, state)
        finally:
            keras.config.set_dtype_policy("float32")

        log_dir = os.path.join(output, "logs")
        header = {
            "recipe": recipe.name,
            "experiment": experiment.name,
            "activation": config.model.activation,
            "data": data.summary,
            "strategy": strategy_name,
            "replicas": replicas,
            "precision": precision,
            "global_batch_size": config.train.batch_size,
            "steps_per_epoch": steps,
            "steps_per_pass": data.steps_per_pass,
            "monitor": recipe.monitor,
            "versions": _versions(),
            "completed": False,
        }

        def write_metrics(extra=None):
            if chief:
                write_atomic(
                    metrics_path, json_text(_metrics_record(header, state, extra), indent=2)
                )

        if rolled or state.epoch:  # metrics.json may lag the last commit: roll it forward
            write_metrics()
        start = time.perf_counter()
        initial_epoch = state.epoch
        if initial_epoch < config.train.epochs:
            if initial_epoch:
                print(f"Resuming at epoch {initial_epoch + 1} of {config.train.epochs}.")
            state.start_session(initial_epoch, steps_per_pass=data.steps_per_pass, steps=steps)
            # The commit first, then the curves: a kill while an epoch is saved
            # (seconds) must not leave its points in TensorBoard (both callbacks
            # flush every epoch), to be drawn a second time when the resumed run
            # trains that epoch again.
            callbacks = [
                _state_callback(
                    state,
                    recipe.monitor,
                    data.examples_per_step,
                    steps,
                    write_metrics,
                    config.train.average_last,
                )
            ]
            if chief:
                callbacks += [_tensorboard(log_dir), BetaMonitor(log_dir)]
            try:
                model.fit(
                    _training_data(data, strategy, strategy_name, initial_epoch, steps),
                    initial_epoch=initial_epoch,
                    epochs=config.train.epochs,
                    steps_per_epoch=steps,
                    validation_data=data.validation,
                    callbacks=callbacks,
                    shuffle=False,  # the pipeline orders the data, by seed and epoch
                    verbose=verbose,
                )
            except _peer_errors() as error:
                if strategy_name != "multi_worker":
                    raise
                raise RuntimeError(
                    f"A peer worker was lost during epoch {state.epoch + 1} "
                    f"({type(error).__name__}); {state.epoch} finished epoch(s) are committed in "
                    f"{output}. Restart every worker with the same command to resume."
                ) from error
        if strategy_name == "multi_worker":
            print(
                f"Trainable weights checksum (the same on every worker): {weights_checksum(model)}"
            )
        if not chief:
            print(f"Worker done; the chief writes the run folder {output}.")
            return {"completed": True, "chief": False}
        record = _finish(
            recipe, config, model, data, state, header, chief, metrics_path, strategy_name
        )
        record["train_wall_time_s"] = round(time.perf_counter() - start, 2)
        print(
            f"{_summary(record)}\nRun folder: {output}\n"
            f"TensorBoard logs: {log_dir}  (tensorboard --logdir {log_dir})"
        )
        return record
    except UsageError:
        # Bad input found late (data that fits no batch, after the vocabulary was
        # built): a folder this run made and never configured is removed whole.
        if created and chief and not os.path.exists(os.path.join(output, "config.yaml")):
            shutil.rmtree(output, ignore_errors=True)
            for parent in missing[1:]:  # and the parents it made, while empty
                try:
                    os.rmdir(parent)
                except OSError:
                    break
        raise
    finally:
        if scratch:  # a worker's private folder, whatever exception ended the run
            shutil.rmtree(scratch, ignore_errors=True)
            scratch_lock.release()
        if lock is not None:
            lock.release()


_SCRATCH = "keras-swish-worker-"


def _worker_scratch():
    """A new private folder for a non-chief worker's files (a vocabulary), in TMPDIR.

    Returns `(path, lock)`: the worker holds the folder's `RunLock` while it
    runs. A worker removes its folder when it ends; one killed with SIGKILL
    cannot, so a worker starting removes the folders whose lock nobody holds
    (the operating system drops a lock with its process). A folder is named
    as a worker's only once it is locked: a worker starting beside this one
    cannot take it for abandoned.
    """
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        if name.startswith(_SCRATCH):
            _remove_if_abandoned(os.path.join(base, name))
    starting = tempfile.mkdtemp(prefix=f".{_SCRATCH}starting-{os.getpid()}-")
    lock = RunLock(starting)
    suffix = os.path.basename(starting).rsplit("-", 1)[1]  # mkdtemp's, without "-"
    path = os.path.join(base, f"{_SCRATCH}{os.getpid()}-{suffix}")
    os.rename(starting, path)
    return path, lock


def _remove_if_abandoned(path):
    """Removes a worker's scratch folder if no process holds its lock."""
    try:
        import fcntl

        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR)
    except (ImportError, OSError):  # no locks here, or no lock file: not judged
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (its worker runs), or a file system without locks
        return
    finally:
        os.close(fd)
    shutil.rmtree(path, ignore_errors=True)


def _check_precision(output, previous, asked, precision):
    """Refuses to resume a run across a change of loss scaling.

    `precision: auto` resolves per machine; mixed_float16 wraps the optimizer
    in a `LossScaleOptimizer`, whose saved state another precision cannot load
    (Keras would skip it with a warning: step 0 of the schedule again, no
    momentum).
    """
    before = (previous or {}).get("precision")
    if before and ("mixed_float16" in (before, precision)) and before != precision:
        raise ConfigError(
            f"Output dir {output} holds a run trained in {before}; here precision "
            f"{asked} is {precision}, which cannot load its optimizer's state (loss "
            f"scaling {'on' if before == 'mixed_float16' else 'off'} there, "
            f"{'on' if precision == 'mixed_float16' else 'off'} here). Resume it where "
            f"{asked} means {before}, or choose another --output."
        )


def _check_restored(model, state):
    """The optimizer's step after a restore is the committed one, or the run stops.

    Keras skips optimizer state it cannot match (with a warning) and the run
    would go on from step 0 of its schedule; this turns that into an error.
    (Not epochs × steps: a loss-scaled step with non-finite gradients is not
    counted.)
    """
    expected = state.record.get("optimizer_iterations")
    got = optimizer_iterations(model)
    if expected is not None and got != expected:
        raise RuntimeError(
            f"Restoring {state.checkpoint} left the optimizer at step {got}, not at the "
            f"committed {expected}: its state was not loaded."
        )


def _training_data(data, strategy, strategy_name, initial_epoch, steps):
    """The training dataset `fit` reads: under multi_worker, one input pipeline per worker.

    A worker then decodes and augments only its slice of each global batch (see
    `make_image_data`); Keras's `fit` takes the distributed dataset as it is.
    Data whose `train` takes no input context is distributed by Keras
    (`experimental_distribute_dataset`, tf.data auto-sharding).
    """
    if strategy_name == "multi_worker" and getattr(data, "per_pipeline_input", False):

        def pipeline(context):
            share = data.examples_per_step // context.num_input_pipelines
            print(
                f"Input: pipeline {context.input_pipeline_id + 1} of "
                f"{context.num_input_pipelines}, decodes and augments {share} of the "
                f"{data.examples_per_step} examples of each global batch."
            )
            return data.train(initial_epoch, steps, input_context=context)

        return strategy.distribute_datasets_from_function(pipeline)
    return data.train(initial_epoch, steps)


def _check_same_data(old, config, state, previous, data):
    """A resumed run must find the data it trained on.

    Checked on every resume, not only from another `--data-dir`: the files
    under a `folder:` or `text:` source (or a TFDS folder) can change between
    a kill and the rerun. The data's sizes (the numbers of its summary in
    metrics.json: examples per split, classes, vocabulary) and its steps per
    pass must be those the run recorded: the order of the data, the position
    a resumed pass starts from and the schedules depend on them.
    """
    import re

    if old is None:
        return
    previous = previous or {}
    recorded = state.record.get("steps_per_pass") or previous.get("steps_per_pass")
    summary = previous.get("data")

    def sizes(text):
        return re.findall(r"\d+", text)

    same_size = not recorded or recorded == data.steps_per_pass
    same_summary = not summary or sizes(summary) == sizes(data.summary)
    if same_size and same_summary:
        return
    moved = old.get("data.data_dir") != config.data.data_dir
    where = (
        f"under --data-dir {config.data.data_dir} (the run's was {old.get('data.data_dir')})"
        if moved
        else f"of --data {config.data.source}"
    )
    found = (
        f"a pass over it is {data.steps_per_pass} steps, the run's was {recorded}"
        if not same_size
        else f"found: {data.summary}; the run trained on: {summary}"
    )
    raise ConfigError(
        f"The data {where} is not the data this run trained on ({found}). Resume it on "
        "that data, or choose another --output for the data as it is now."
    )


def _run_fingerprint(experiment, config, precision, data):
    """16 hex digits of the run's config (its locations aside), precision and data.

    The strategy and precision as resolved, not as asked (`auto` beside
    `multi_worker` is the same run); the data as this worker found it: its
    summary (the splits' sizes) and the vocabulary it built, if any (each
    worker builds its own: its `vocabulary_digest`).
    """
    import hashlib

    values = _flat_config(experiment, config)
    asked = {"train.strategy", "train.precision", "train.tpu"}
    digest = hashlib.sha256()
    for key in sorted(set(values) - set(_LOCATION_KEYS) - asked):
        digest.update(f"{key}={values[key]!r}\n".encode())
    digest.update(f"precision={precision}\ndata={data.summary}\n".encode())
    digest.update(getattr(data, "vocabulary_digest", "").encode())
    return digest.hexdigest()[:16]


def _check_workers_agree(strategy, epoch, step, output, fingerprint, precision):
    """Every worker must run the same config and resume from the same committed epoch.

    A worker that read another folder (its own local `runs/...`) would
    average its gradients with a different model's; one started with other
    settings, or whose `precision: auto` resolved otherwise on its machine
    (float32 beside mixed_float16), with a different computation.

    tf.distribute reduces by SUM or MEAN only: values agree on every worker
    iff n·Σv² = (Σv)², which each worker computes alike (exactly in float64:
    the fingerprint goes in 16-bit parts).
    """
    import numpy as np
    import tensorflow as tf

    values = [epoch, step] + [int(fingerprint[i : i + 4], 16) for i in range(0, 16, 4)]
    values = np.array(values, np.float64)
    local = tf.constant(np.concatenate([values, values**2, [1.0]]), tf.float64)
    total = strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(local)), axis=None
    ).numpy()
    count = len(values)
    sums, squares, n = total[:count], total[count : 2 * count], total[-1]
    agree = n * squares == sums**2
    if not agree[2:].all():
        raise UsageError(
            "The workers run different settings: this one's config, precision and data "
            f"(fingerprint {fingerprint}, precision {precision}) differ from another "
            "worker's. Start every worker with the same command and config (only --output "
            "and --data-dir may differ, naming the same folders), on the same prepared "
            "data, and give --precision where `auto` resolves differently on different "
            "machines (each worker prints its own data summary and precision above)."
        )
    if not agree[:2].all():
        raise UsageError(
            f"The workers resume from different points: this one from epoch {epoch} "
            f"(optimizer step {step}) of {output}, the workers' mean is epoch "
            f"{sums[0] / n:g} (step {sums[1] / n:g}). Every worker must read and the chief "
            "write one run folder: give --output a folder that all machines share."
        )


def _peer_errors():
    """What TensorFlow raises in a collective when a peer process is gone."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)


def weights_checksum(model):
    """A SHA-256 of every trainable weight's bytes (β included): equal models, equal sums.

    BatchNorm's moving statistics are left out: under MultiWorkerMirroredStrategy
    each worker's track its own local batches (the chief's are the ones saved,
    as MirroredStrategy keeps the first replica's).
    """
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weight in model.trainable_weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _finish(recipe, config, model, data, state, header, chief, metrics_path, strategy_name):
    """Evaluates best.keras, writes final.keras, marks the run complete (last)."""
    import keras

    output = config.train.output
    faults.point("final_evaluation")
    if state.best is not None:
        # The best model as a user gets it: loaded back from its file, in safe mode.
        best_model = keras.models.load_model(os.path.join(output, "best.keras"), safe_mode=True)
        best = {"model": "best.keras", "epoch": state.best["epoch"]}
    else:  # no epoch gave a finite validation metric: report the last model
        # Under MultiWorkerMirroredStrategy the chief evaluates alone (the
        # other workers are done): evaluating the distributed model would wait
        # for them in its collectives, so a copy outside the strategy does.
        if strategy_name == "multi_worker":
            best_model = _undistributed_copy(model, output)
        else:
            best_model = model
        best = {"model": "final.keras", "epoch": state.epoch}
    best["monitor"] = recipe.monitor
    best.update(evaluate_model(recipe, config, best_model, data))
    last = {
        "model": "final.keras",
        "epoch": state.epoch,
        "validation": {k: v for k, v in state.history[-1].items() if k.startswith("val_")},
    }
    if chief:
        final_path = os.path.join(output, "final.keras")
        # On the disk before metrics.json says `completed`.
        _save_model_atomic(model, final_path, "saving_final")
    extra = {"best": best, "last": last}
    if config.train.average_last and chief:
        averaged = _average(recipe, config, state, data, final_path)
        if averaged is not None:
            extra["averaged"] = averaged
    faults.point("before_complete")
    record = _metrics_record(header, state, {**extra, "completed": True})
    if chief:
        write_atomic(metrics_path, json_text(record, indent=2))
    return record


def _average(recipe, config, state, data, final_path):
    """Writes and evaluates `averaged.keras`: the mean of the last epochs' weights.

    Vaswani et al.'s checkpoint averaging. The model is final.keras (a copy
    outside any strategy) with the averaged weights, evaluated as a user
    gets it: loaded back from its file, in safe mode.
    """
    import keras

    output = config.train.output
    wanted = min(config.train.average_last, state.epoch)
    first = state.epoch - wanted + 1
    path = os.path.join(output, "averaged.keras")
    faults.point("averaging")
    state.prune_averages(config.train.average_last)
    model = keras.models.load_model(final_path, safe_mode=True)
    epochs = state.average_into(model, first)
    if not epochs:  # their files were deleted by hand
        if os.path.exists(path):  # an average of other epochs
            os.remove(path)
        print(
            f"No weights are kept for epochs {first}-{state.epoch} in {state.dir}: "
            "averaged.keras is not written; the run reports best.keras."
        )
        return None
    _save_model_atomic(model, path, "saving_averaged")
    averaged = {"model": "averaged.keras", "epochs": epochs}
    if len(epochs) < wanted:  # files deleted by hand
        averaged["note"] = f"only {len(epochs)} of the last {wanted} epochs' weights were kept"
    model = keras.models.load_model(path, safe_mode=True)
    averaged.update(evaluate_model(recipe, config, model, data))
    return averaged


def _save_model_atomic(model, path, fault_point):
    """Saves `model` as `path` through `.tmp-<name>` and a rename, both synced.

    A kill leaves the old file or the new one (a leftover `.tmp-` file is
    removed when the run resumes). `fault_point` is the kill point the tests
    use between the write and the rename.
    """
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, ".tmp-" + os.path.basename(path))
    model.save(tmp)
    fsync_path(tmp)
    faults.point(fault_point)
    os.replace(tmp, path)
    fsync_path(directory)


def _undistributed_copy(model, output):
    """`model` saved and loaded back (as final.keras will be), outside any strategy."""
    import keras

    tmp = os.path.join(output, ".tmp-evaluate.keras")
    try:
        model.save(tmp)
        return keras.models.load_model(tmp, safe_mode=True)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def evaluate_model(recipe, config, model, data):
    """`{"validation": {...}, "test": {...}}` of `model` (test only if the data has one)."""
    results = {}
    for split, dataset in (("validation", data.validation), ("test", data.test)):
        if dataset is not None:
            values = model.evaluate(dataset, return_dict=True, verbose=0)
            prefix = "val_" if split == "validation" else "test_"
            results[split] = {prefix + k: float(v) for k, v in values.items()}
    if recipe.final_metrics is not None:
        extra = recipe.final_metrics(config, model, data)
        for key, value in extra.items():
            split = "test" if key.startswith("test_") else "validation"
            if key.endswith("_signature"):
                results.setdefault("signatures", {})[key] = value
            else:
                results.setdefault(split, {})[key] = value
    return results


def reported(record):
    """The part of a `metrics.json` record (a dict) for the model the run reports.

    `averaged` (averaged.keras) where the run averages its last epochs'
    weights (`train.average_last`), else `best` (best.keras, or final.keras
    when no epoch had a finite validation metric).
    """
    return record.get("averaged") or record.get("best") or {}


def _summary(record):
    lines = []
    for part in ("averaged", "best"):
        model = record.get(part) or {}
        values = []
        for split in ("validation", "test"):
            for key, value in (model.get(split) or {}).items():
                values.append(
                    f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                )
        if values:
            if part == "averaged":
                epochs = model["epochs"]
                which = f"the mean of epochs {epochs[0]}-{epochs[-1]}"
            else:
                which = f"epoch {model.get('epoch')}"
            lines.append(f"{model.get('model', part)} ({which}): " + ", ".join(values))
    return "\n".join(lines) or "no epoch finished yet"


def load_run_config(run_dir):
    """Reads `<run_dir>/config.yaml` back into its recipe and config."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        raise ConfigError(f"{run_dir} is not a run folder: it has no config.yaml.")
    values = load_yaml(path)
    name = values.pop("experiment", None) or values.pop("recipe", None)
    values.pop("recipe", None)
    if not name:
        raise ConfigError(f"{path} names no experiment.")
    recipe = _recipe_or_error(name.partition("/")[0])
    config = merge(recipe.default_config(), [(values, path)])
    return recipe, config


def model_path(run_dir):
    """The model a run reports: `averaged.keras`, else `best.keras`, else `final.keras`.

    `averaged.keras` only while `metrics.json` reports it: a finished run
    continued with more epochs reports `best.keras` until its new average is
    written.
    """
    record = read_json(os.path.join(run_dir, "metrics.json")) or {}
    names = ("best.keras", "final.keras")
    if record.get("averaged"):
        names = ("averaged.keras", *names)
    for name in names:
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            return path
    raise ConfigError(f"{run_dir} holds no model yet (averaged.keras, best.keras or final.keras).")


def evaluate(recipe, config, run_dir):
    """Evaluates the model a run reports (see `model_path`) on validation (and test) data."""
    import keras

    path = model_path(run_dir)
    data = recipe.make_data(config)
    model = keras.models.load_model(path, safe_mode=True)
    classes = getattr(data, "num_classes", None)
    if classes is not None and model.output_shape[-1] != classes:
        raise ConfigError(
            f"The model in {run_dir} has {model.output_shape[-1]} classes; "
            f"{data.summary} has {classes}."
        )
    metrics = evaluate_model(recipe, config, model, data)
    return {
        "model": os.path.basename(path),
        "data": data.summary,
        "metrics": metrics,
        "config": to_dict(config)["data"],
    }
