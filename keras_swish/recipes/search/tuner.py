"""The child trial: one candidate activation trained by the project's runner.

`ChildTuner` is a KerasTuner `BaseTuner` whose `run_trial` trains the
search's child network (by default `resnet20` on the experiment's data) with
`--activation expr:<formula>` for a fixed step budget, through
`keras_swish.recipes.core.runner.train` — the same path as `keras-swish
train`, so a child is an ordinary run folder (`trial_<id>/child/`): it
resumes where it stopped when a killed search is restarted, and its
`best.keras` loads anywhere.

The reward is the child's validation metric (the recipe's monitor, top-1
accuracy for image recipes) of its best epoch (of averaged.keras for a child
given `--set train.average_last=N`). A child that raises, or whose
training loss is not finite (diverged), gets the lowest reward; its error is
kept in the trial's values (`"error"`, the last line: this travels to a
remote oracle with the trial) and in full in `trial_<id>/child/error.txt`.
The values also name the worker (`KERASTUNER_TUNER_ID`) that trained it.
Once a child is complete its resume checkpoints and `final.keras` are
deleted (`best.keras`, metrics and logs stay).
"""

import contextlib
import json
import math
import os
import shutil
import time
import traceback
import warnings

import keras_tuner

from keras_swish.errors import UsageError
from keras_swish.recipes.core.config import write_atomic
from keras_swish.recipes.core.run_state import RunFolderInUse
from keras_swish.recipes.core.runner import flatten, reported
from keras_swish.recipes.search.oracles import LOWEST_REWARD, OBJECTIVE


class ChildSettingsError(keras_tuner.errors.FatalError):
    """A child's settings are bad for every candidate: KerasTuner ends the search."""


class WorkerSettingsError(keras_tuner.errors.FatalError):
    """A worker's search settings differ from those of the chief's trials."""


class ChildTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Trains one child per trial through the runner.

    Args:
        oracle: One of the search oracles.
        experiment: The child's experiment (`resnet20/embedded`, `resnet20/cifar10`).
        flags: `keras-swish train` flags for every child (budget, data, seed).
        overrides: `--set` overrides for every child (nested dict).
        config_file: A `--config` YAML file for every child, or None.
        directory, project_name: The search folder is `directory/project_name`.
        settings: This process's search settings (`search.comparable_settings`):
            a trial handed out with other settings (a distributed search's
            chief started with another command) is refused; None: no check.
    """

    def __init__(
        self,
        oracle,
        experiment,
        flags,
        overrides=None,
        config_file=None,
        directory=None,
        project_name=None,
        settings=None,
    ):
        self.experiment = experiment
        self.settings = settings
        self.flags = dict(flags)
        self.overrides = overrides or {}
        self.config_file = config_file
        _reload_where_the_oracle_is(directory, project_name)
        super().__init__(oracle, directory=directory, project_name=project_name)

    def child_config(self, formula, output):
        """`(recipe, experiment, config)` of the child for `formula` in `output`."""
        from keras_swish.recipes.core import runner

        return runner.resolve(
            self.experiment,
            config_file=self.config_file,
            flags=dict(self.flags, activation=f"expr:{formula}", output=output),
            overrides=self.overrides,
        )

    def run_trial(self, trial):
        import keras

        from keras_swish.recipes.core import runner

        _check_chiefs_settings(trial.hyperparameters.values, self.settings)
        formula = trial.hyperparameters.values["formula"]
        output = os.path.join(self.get_trial_dir(trial.trial_id), "child")
        os.makedirs(output, exist_ok=True)
        start = time.perf_counter()
        steps, error = 0, None
        try:
            recipe, experiment, config = self.child_config(formula, output)
            keras.backend.clear_session()
            log_path = os.path.join(output, "train.log")
            with open(log_path, "a", encoding="utf-8") as log, warnings.catch_warnings():
                # Most candidates have no SwishBeta for BetaMonitor to follow; that is no news.
                warnings.filterwarnings("ignore", message="BetaMonitor: model")
                with contextlib.redirect_stdout(log):
                    record = train_when_free(runner.train, recipe, experiment, config)
            steps = config.train.epochs * record["steps_per_epoch"]
            reward, error = _reward(record, recipe.monitor)
            _prune(output)
        except UsageError as error:
            # Bad child settings (data not prepared, no pair fits, a bad flag) fail
            # every child alike: the search stops instead of scoring all of them 0.
            raise ChildSettingsError(str(error)) from None
        except Exception as failure:  # a failed child is a result of the search, never its end
            if _out_of_memory(failure) and not _finished_children(self.project_dir):
                # Before any child finished, the settings' doing (a batch too large, GPUs
                # shared): every child would fail alike, each scored 0 for good. Once a
                # child has trained, a candidate that keeps more tensors for its backward
                # pass may need more memory than the others: its failure, its 0.
                first_line = (str(failure).strip().splitlines() or [""])[0][:200]
                raise ChildSettingsError(
                    f"out of memory training the first child ({type(failure).__name__}: "
                    f"{first_line}); lower --batch-size (the same command with it changed "
                    "starts the search again in this folder), or run fewer --workers per GPU."
                ) from None
            reward = LOWEST_REWARD
            details = traceback.format_exc()
            write_atomic(os.path.join(output, "error.txt"), details)
            error = details.strip().splitlines()[-1]
        trial.hyperparameters.values["worker"] = self.tuner_id
        if error is not None:
            # The values travel back to the oracle with the trial (also over gRPC).
            trial.hyperparameters.values["error"] = error[:500]
        return {OBJECTIVE: reward, "seconds": time.perf_counter() - start, "steps": float(steps)}

    def save(self):
        # As the oracle's: KerasTuner writes its files in place; write them whole.
        if not self._is_worker():
            self.oracle.save()
        write_atomic(self._get_tuner_fname(), json.dumps(self.get_state()))


LOCK_POLL_SECONDS = 10


def train_when_free(train, recipe, experiment, config):
    """`train(recipe, experiment, config, verbose=2)`, waiting while its folder is in use.

    A chief restarted alone gives a running trial back to its worker when the
    child folder is locked; in the seconds between a worker getting a trial and
    locking its folder it cannot tell, and may hand the trial to a second
    worker. That one waits for the first to finish, then finds the child
    complete (or resumes it, if the first died) and reports the same result.
    """
    waiting = False
    while True:
        try:
            return train(recipe, experiment, config, verbose=2)
        except RunFolderInUse as busy:
            if not waiting:
                print(
                    f"Run folder {busy.output} is in use by another process (pid "
                    f"{busy.holder}): waiting for it to finish ...",
                    flush=True,
                )
                waiting = True
            time.sleep(LOCK_POLL_SECONDS)


def _check_chiefs_settings(values, mine):
    """Raises `WorkerSettingsError` if a trial's `values` carry other search settings.

    A distributed search's workers train the chief's children with their own
    command's settings: a worker started with another `--steps` or experiment
    would put rewards of another budget on the chief's leaderboard.
    """
    theirs = values.get("settings")
    if theirs is None or mine is None:  # no check: a chief from before settings travelled
        return
    theirs = json.loads(theirs)
    # Settings both know (a key one version lacks is not compared), named by their
    # own keys where they are dicts (`child_flags.steps_per_epoch`).
    shared = [k for k in theirs if k in mine and theirs[k] != mine[k]]
    # None (no --config) and {} (no --set) hold no setting.
    theirs, mine = (
        {k: v for k, v in flatten({k: side[k] for k in shared}).items() if v is not None}
        for side in (theirs, mine)
    )
    changed = sorted(k for k in set(theirs) | set(mine) if theirs.get(k, ...) != mine.get(k, ...))
    if changed:
        details = ", ".join(
            f"{k} ({_shown(mine, k)} here, {_shown(theirs, k)} at the chief)" for k in changed
        )
        raise WorkerSettingsError(
            f"this worker's search settings differ from the chief's: {details}. Start every "
            "worker with the chief's command (only --data-dir, --output and the --config "
            "file's path may name this machine's folders), then run this one again."
        )


def _shown(settings, key):
    return repr(settings[key]) if key in settings else "not set"


def _reload_where_the_oracle_is(directory, project_name):
    """Makes KerasTuner reload a search whose oracle is saved, whoever saved it.

    `BaseTuner` reloads only when this process's own tuner file exists
    (`<KERASTUNER_TUNER_ID>.json`, an empty state): `tuner0.json` for a search
    in one process, `chief.json` for the chief of `--workers`. A search begun
    one way and resumed the other found no file of its own, started a fresh
    oracle and saved it over `oracle.json` (and the RNN controller's weights).
    The oracle's file is what says a search is here: the process that holds
    the oracle gets its tuner file written first.
    """
    from keras_tuner.src.distribute import utils

    if utils.has_chief_oracle() and not utils.is_chief_oracle():
        return  # a worker: the chief holds the oracle
    project = os.path.join(str(directory or "."), project_name or "untitled_project")
    mine = os.path.join(project, f"{os.environ.get('KERASTUNER_TUNER_ID', 'tuner0')}.json")
    if os.path.exists(os.path.join(project, "oracle.json")) and not os.path.exists(mine):
        write_atomic(mine, json.dumps({}))


def _finished_children(project_dir):
    from keras_swish.recipes.search import _finished_children as finished  # a cycle at import

    return finished(project_dir)


def _out_of_memory(error):
    """Whether `error` is a device or host out-of-memory error, on any backend."""
    if isinstance(error, MemoryError):
        return True
    if type(error).__name__ in ("ResourceExhaustedError", "OutOfMemoryError"):  # TF, torch
        return True
    text = str(error)
    return any(  # JAX/XLA, torch, the CUDA driver
        sign in text
        for sign in ("RESOURCE_EXHAUSTED", "CUDA out of memory", "CUDA_ERROR_OUT_OF_MEMORY")
    )


def _prune(output):
    """Drops a finished child's resume checkpoints and final.keras (best.keras stays).

    A child is never resumed once complete, and a paper-scale search trains
    thousands: ResNet-20's run folder shrinks from about 7 MB to 2.5 MB.
    `state/` goes in one rename first: a kill while its files are deleted must
    not leave a `state.json` naming a checkpoint that is gone (a continuation
    with more epochs would fail loading it instead of saying the checkpoints
    were pruned); a run's recovery removes the renamed `.tmp-` folder.
    """
    state = os.path.join(output, "state")
    pruned = os.path.join(output, ".tmp-pruned-state")
    shutil.rmtree(pruned, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(state, pruned)
    shutil.rmtree(pruned, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(output, "final.keras"))


def _reward(record, monitor):
    """(reward, error or None) from a finished child's metrics record."""
    for epoch in record.get("epochs", []):
        # NaN in memory; null once read back from metrics.json (standard JSON).
        loss = epoch.get("loss", 0.0)
        if loss is None or not math.isfinite(loss):
            shown = "nan" if loss is None else loss
            return LOWEST_REWARD, f"diverged: training loss {shown} in epoch {epoch['epoch']}"
    value = (reported(record).get("validation") or {}).get(monitor)
    if value is None or not math.isfinite(value):
        return LOWEST_REWARD, f"no finite {monitor} on the validation data"
    return float(value), None
