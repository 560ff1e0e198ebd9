"""`keras-swish search`: the paper's activation search, on KerasTuner.

A search is a folder (`--output`, default `runs/search-EXPERIMENT-STRATEGY`):

```
search.json                the settings (re-running with other settings is refused)
oracle.json, tuner*.json   KerasTuner's state: trials handed out, the strategy's state
chief.json                 --workers: the chief's tuner state (as tuner*.json)
workers/tuner<i>.log       --workers: each local worker's output
controller-N.npz           the RNN controller's weights and optimizer slots after N updates (rnn)
trial_<id>/trial.json      one trial: its formula, reward, steps and time
trial_<id>/child/          the child's run folder (an ordinary `keras-swish train` run)
leaderboard.md/.csv/.json  every candidate by reward; rejected ones and why
curves.png, rewards.png    the top functions on [-6, 6]; reward over trials
```

Re-running the same command after a kill resumes it: finished trials are
kept, the trials that were running start again (their child resumes at its
last finished epoch), and the strategy continues from its saved state.

Distributed: with `KERASTUNER_ORACLE_IP`/`KERASTUNER_ORACLE_PORT` set, the
process whose `KERASTUNER_TUNER_ID` is `chief` serves the oracle and the
others (`tuner0`, `tuner1`, ... on any machine) train children;
`--workers N` starts such a chief and N workers on this machine. A chief
restarted alone while its workers train on leaves each running trial to the
worker whose lock is on its child folder, and re-runs the others.
"""

import dataclasses
import json
import os
import sys
import time

from keras_swish.errors import UsageError

STRATEGY_NAMES = ("exhaustive", "random", "rnn")

# The child's step budget. The paper: ResNet-20 on CIFAR-10, 10K steps. On the
# embedded digits a small budget, so that a CPU search of a reduced space
# takes minutes: it separates working activations from degenerate ones, not
# close contenders.
PAPER_CHILD_STEPS = 10_000
_LATE_WORKER_GRACE_S = 30  # --workers: after the chief ends, before stopping the rest
EMBEDDED_CHILD = {"steps": 40, "validations": 1, "batch_size": 32}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a search folder is: checked again when it is resumed."""

    experiment: str
    strategy: str
    units: int
    unary: tuple
    binary: tuple
    max_trials: int | None
    child_steps: int
    validations: int
    batch_size: int
    seed: int
    monitor: str
    space: str
    child_flags: dict
    overrides: dict
    config_file: str | None
    # Its contents: an edited --config file is another search (the path alone
    # let a resumed search train new children under other settings).
    config_file_values: dict | None = None


def _space(units, unary, binary):
    from keras_swish.expressions import SearchSpace

    if units not in (1, 2, 3):
        raise UsageError(f"--units must be 1, 2 or 3 (core units). Received: --units {units}")
    try:
        return SearchSpace(units=units, unary=unary, binary=binary)
    except ValueError as error:
        raise UsageError(str(error)) from None


def plan(
    experiment="resnet20/embedded",
    strategy="exhaustive",
    units=1,
    unary=None,
    binary=None,
    max_trials=None,
    steps=None,
    validations=None,
    seed=0,
    train_flags=None,
    overrides=None,
    config_file=None,
):
    """Checks a search's settings before anything is written; returns (space, Settings).

    Raises:
        UsageError: a bad strategy, space, budget or child setting.
    """
    from keras_swish.recipes.core import runner

    if strategy not in STRATEGY_NAMES:
        raise UsageError(
            f"--strategy must be one of {', '.join(STRATEGY_NAMES)}. "
            f"Received: --strategy {strategy}"
        )
    space = _space(units, unary, binary)
    from keras_swish.recipes.search.oracles import ExhaustiveOracle

    if strategy == "exhaustive" and space.size > ExhaustiveOracle.limit:
        raise UsageError(
            f"An exhaustive search of {space.size:,} candidates ({space.describe()}) is too "
            f"large (at most {ExhaustiveOracle.limit:,}); use --strategy random or rnn."
        )
    if strategy != "exhaustive" and not max_trials:
        raise UsageError(f"--strategy {strategy} needs --max-trials N (children to train).")
    if seed < 0:
        raise UsageError(f"--seed must be at least 0. Received: --seed {seed}")
    if max_trials is not None and max_trials < 1:
        raise UsageError(f"--max-trials must be at least 1. Received: --max-trials {max_trials}")
    flags = dict(train_flags or {})
    # The child's budget: defaults by data, then the flags.
    _, probe, probe_config = runner.resolve(
        experiment, config_file=config_file, flags=flags, overrides=overrides
    )
    from keras_swish.recipes.core.config import load_yaml
    from keras_swish.recipes.core.strategy import tf_config_workers

    if probe_config.train.strategy == "multi_worker" or tf_config_workers() > 1:
        # Children train one after another in each search process: a second
        # MultiWorkerMirroredStrategy in one process fails, and every later
        # child would be scored as failed.
        raise UsageError(
            "A search child trains inside its search process, on one machine: "
            f"train.strategy {probe_config.train.strategy!r} and a TF_CONFIG of several "
            "workers are not for it. Spread a search over processes or machines with "
            "--workers (KerasTuner's chief and workers)."
        )
    embedded = probe_config.data.source in (None, "embedded")  # None: the embedded data
    if steps is None:
        steps = EMBEDDED_CHILD["steps"] if embedded else PAPER_CHILD_STEPS
    if validations is None:
        validations = EMBEDDED_CHILD["validations"] if embedded else 10
    if steps < 1 or not 1 <= validations <= steps:
        raise UsageError(
            "--steps must be at least 1 and --validations between 1 and --steps. "
            f"Received: --steps {steps} --validations {validations}"
        )
    if "batch_size" not in flags and embedded:
        flags["batch_size"] = EMBEDDED_CHILD["batch_size"]
    if "precision" not in flags and probe_config.train.precision == "auto":
        # The paper's children trained in float32, and the hygiene check proves a
        # candidate finite in float64 only: `auto` would be float16 on a GPU, where
        # exp(x)·cosh(x) (8.1e4 at x = 6) overflows. --precision still chooses.
        flags["precision"] = "float32"
    flags["epochs"] = validations
    flags["steps_per_epoch"] = -(-steps // validations)
    flags.setdefault("seed", seed)
    recipe, resolved, config = runner.resolve(
        experiment,
        config_file=config_file,
        flags=dict(flags, activation="expr:x"),
        overrides=overrides,
    )
    settings = Settings(
        experiment=resolved.name,
        strategy=strategy,
        units=units,
        unary=tuple(space.unary),
        binary=tuple(space.binary),
        max_trials=max_trials,
        child_steps=config.train.epochs * config.train.steps_per_epoch,
        validations=validations,
        batch_size=config.train.batch_size,
        seed=seed,
        monitor=recipe.monitor,
        space=space.describe(),
        child_flags=flags,
        overrides=overrides or {},
        config_file=config_file,
        config_file_values=None if config_file is None else load_yaml(config_file),
    )
    return space, settings


def default_output(settings):
    return os.path.join(
        "runs", f"search-{settings.experiment.replace('/', '-')}-{settings.strategy}"
    )


def _finished_children(output):
    """How many trials in a search folder KerasTuner marked completed."""
    count = 0
    for name in os.listdir(output):
        path = os.path.join(output, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    count += json.load(f).get("status") == "COMPLETED"
            except ValueError:
                continue
    return count


def _check_settings(output, settings):
    """`(settings as JSON, changed)`: `changed` lists the settings a rerun changes."""
    oracle = os.path.join(output, "oracle.json")
    if os.path.exists(oracle):
        try:
            with open(oracle, encoding="utf-8") as f:
                foreign = "search" not in json.load(f)
        except ValueError:
            foreign = False  # unreadable: KerasTuner's reload says so
        if foreign:  # refused before KerasTuner's reload writes a tuner file there
            from keras_swish.recipes.search.oracles import not_a_search

            raise UsageError(not_a_search(output))
    path = os.path.join(output, "search.json")
    mine = json.loads(json.dumps(dataclasses.asdict(settings)))
    changed = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            theirs = json.load(f)
        # A larger (or smaller) --max-trials continues the same search; a key
        # its search.json lacks (written by an earlier version) is not compared;
        # nor are locations, which differ between machines of one search.
        a, b = _without_locations(mine, theirs), _without_locations(theirs, mine)
        changed = sorted(
            k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "max_trials" and k in b
        )
        # A search that never finished a child (stopped by bad child settings) may
        # be rerun with corrected ones in the same folder.
        if changed and _finished_children(output):
            raise UsageError(
                f"{output} holds another search (different {', '.join(changed)}); "
                "use another --output or the same settings to resume it."
            )
    return mine, changed


def comparable_settings(header):
    """What a search's processes must agree on, as JSON: `header` (settings as
    `search.json` records them) less the locations and `max_trials`."""
    out = _without_locations(header, header)
    out.pop("max_trials", None)
    return out


def _check_distributed_environment():
    """KerasTuner's variables, checked before KerasTuner raises on them deep inside."""
    ip = os.environ.get("KERASTUNER_ORACLE_IP")
    if ip is None:
        return
    missing = [k for k in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if k not in os.environ]
    if missing:
        raise UsageError(
            f"KERASTUNER_ORACLE_IP is set ({ip}) but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: a "
            "distributed search needs all three, KERASTUNER_TUNER_ID=chief for the process "
            "that holds the oracle and a name of its own (tuner0, tuner1, ...) for each worker."
        )
    port = os.environ["KERASTUNER_ORACLE_PORT"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            f"KERASTUNER_ORACLE_PORT must be a port number, 1-65535. Received: {port!r}"
        )


def _without_locations(settings, other):
    """Search settings less where things are on this machine: `--data-dir` (each
    worker's mount of the same data) and the `--config` file's path (its
    contents are compared instead, where both settings record them)."""
    out = dict(settings)
    out["child_flags"] = {
        k: v for k, v in (settings.get("child_flags") or {}).items() if k != "data_dir"
    }
    if "config_file_values" in settings and "config_file_values" in other:
        out.pop("config_file", None)
    return out


def _drop_search(output):
    """Removes what a search with other settings left: its oracle, tuners, trials, reports.

    Only when none of its children finished (`_check_settings`); `search.json`
    is rewritten with the new settings, other files in the folder stay.
    """
    import shutil

    # The tuner file of the process that holds the oracle (tuner0.json alone,
    # chief.json for --workers) goes with it: KerasTuner would reload the oracle
    # it names. Workers' own files hold an empty state: left for them to read.
    mine = f"{os.environ.get('KERASTUNER_TUNER_ID', 'tuner0')}.json"
    for name in os.listdir(output):
        path = os.path.join(output, name)
        if name.startswith("trial_") and os.path.isdir(path):
            shutil.rmtree(path)
        elif (
            name in ("oracle.json", mine, "chief.json", "curves.png", "rewards.png")
            or (name.startswith("controller-") and name.endswith(".npz"))
            or (name.startswith("leaderboard.") and name.split(".")[-1] in ("json", "csv", "md"))
        ):
            os.remove(path)


def search(space, settings, output, stream=sys.stdout):
    """Runs (or resumes) a search in `output`; returns its leaderboard record (or None
    in a distributed worker, which only trains children)."""
    import keras_tuner

    from keras_swish.recipes.core.config import check_local_folder, write_atomic
    from keras_swish.recipes.search import report
    from keras_swish.recipes.search.oracles import STRATEGIES
    from keras_swish.recipes.search.tuner import (
        ChildSettingsError,
        ChildTuner,
        WorkerSettingsError,
    )

    check_local_folder(output, "--output")
    _check_distributed_environment()
    header, changed = _check_settings(output, settings)
    holds_oracle = not keras_tuner.src.distribute.utils.has_chief_oracle() or (
        keras_tuner.src.distribute.utils.is_chief_oracle()
    )
    if keras_tuner.src.distribute.utils.is_chief_oracle():
        _no_gpus_for_the_chief()
    started = time.monotonic()

    def on_change(oracle):
        report.write_leaderboard(oracle, output, header)
        report.write_plots(oracle, output)
        print(report.progress_line(oracle, started), file=stream, flush=True)

    oracle = STRATEGIES[settings.strategy](
        space, max_trials=settings.max_trials, seed=settings.seed, on_change=on_change
    )
    comparable = comparable_settings(header)
    oracle.settings = json.dumps(comparable, sort_keys=True)
    print(
        f"search: {settings.strategy} over {settings.space}; child {settings.experiment}, "
        f"{settings.child_steps} steps at batch {settings.batch_size}, reward = best "
        f"validation {settings.monitor}; folder {output}",
        file=stream,
        flush=True,
    )
    if holds_oracle and changed:
        # No child finished: the search starts again with the new settings (its
        # oracle too: a reloaded one would go on with the old seed's draws).
        _drop_search(output)
    try:
        tuner = ChildTuner(
            oracle,
            settings.experiment,
            settings.child_flags,
            overrides=settings.overrides,
            config_file=settings.config_file,
            directory=os.path.dirname(os.path.abspath(output)),
            project_name=os.path.basename(os.path.abspath(output)),
            settings=comparable,
        )
    except keras_tuner.errors.FatalError as error:  # another strategy's or space's folder
        raise UsageError(str(error)) from None
    if holds_oracle:  # the folder is this search's: it may be written
        os.makedirs(output, exist_ok=True)
        write_atomic(os.path.join(output, "search.json"), json.dumps(header, indent=2))
    try:
        tuner.search()
    except ChildSettingsError as error:
        raise UsageError(f"Every child would fail: {error}") from None
    except WorkerSettingsError as error:
        raise UsageError(str(error)) from None
    if not holds_oracle:
        return None
    report.write_leaderboard(oracle, output, header)
    report.write_plots(oracle, output)
    with open(os.path.join(output, "leaderboard.json"), encoding="utf-8") as f:
        return json.load(f)


def _no_gpus_for_the_chief():
    """A distributed search's chief only serves the oracle: it leaves the GPUs to workers.

    (TensorFlow would otherwise reserve memory on every GPU of the chief's
    machine as soon as the RNN controller creates its variables.)
    """
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # the runtime already started: nothing to hide any more
        pass


def top_formulas(output, k):
    """The best `k` trained formulas of the search in `output` (failed ones left out)."""
    path = os.path.join(output, "leaderboard.json")
    if not os.path.exists(path):
        raise UsageError(f"{output} holds no search leaderboard (leaderboard.json).")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)["leaderboard"]
    formulas = [r["formula"] for r in rows if not r.get("error")][:k]
    if not formulas:
        raise UsageError(f"The search in {output} has no trained candidate yet.")
    return formulas


def run_workers(workers, search_argv, output, poll_s=0.5):
    """`keras-swish search --workers N`: a chief oracle and N workers on this machine.

    Each is `keras-swish search *search_argv` with KerasTuner's variables
    (`KERASTUNER_TUNER_ID` = `chief` or `tuner<i>`, the oracle on a free
    127.0.0.1 port). The chief's output (the progress line) streams here, the
    workers' goes to `OUTPUT/workers/tuner<i>.log`. Each worker gets its own
    GPU or share of the CPU cores. When a process fails the others are
    stopped; re-running the command resumes the search.

    Returns:
        0 when the search finished, else the failing process's exit status.
    """
    import functools
    import subprocess

    from keras_swish.recipes.compare import _gpus, _pinning
    from keras_swish.recipes.launch import (
        _stop,
        child_setup,
        free_ports,
        stop_on_termination,
        supervise,
    )

    if workers < 1:
        raise UsageError(f"--workers must be at least 1. Received: --workers {workers}")
    (port,) = free_ports(1)
    logs = os.path.join(output, "workers")
    os.makedirs(logs, exist_ok=True)
    command = [sys.executable, "-m", "keras_swish_cli", "search", *search_argv, "--output", output]
    base = dict(
        os.environ,
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    print(
        f"search: a chief oracle on 127.0.0.1:{port} and {workers} worker(s); "
        f"worker logs in {logs}",
        flush=True,
    )
    gpus = _gpus()
    processes, names, logs_of = [], [], []
    parent = os.getpid()
    with stop_on_termination():
        try:
            chief_env = dict(base, KERASTUNER_TUNER_ID="chief", CUDA_VISIBLE_DEVICES="")
            processes.append(
                subprocess.Popen(
                    command, env=chief_env, preexec_fn=functools.partial(child_setup, None, parent)
                )
            )
            names.append("chief")
            logs_of.append(None)  # its output is this command's
            for index in range(workers):
                env_changes, cores = _pinning(index, workers, gpus)
                name = f"tuner{index}"
                log = open(os.path.join(logs, f"{name}.log"), "a", encoding="utf-8")
                processes.append(
                    subprocess.Popen(
                        command,
                        env=dict(base, KERASTUNER_TUNER_ID=name, **env_changes),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=functools.partial(child_setup, cores, parent),
                    )
                )
                log.close()
                names.append(name)
                logs_of.append(os.path.join(logs, f"{name}.log"))
            # The chief ends once the search is over and no trial runs: a worker still
            # waiting for it then (one that started late) has nothing left to do.
            return supervise(
                processes,
                names,
                logs_of,
                "search",
                poll_s,
                done_when_first_ends=_LATE_WORKER_GRACE_S,
            )
        except BaseException:
            _stop(processes)
            raise
