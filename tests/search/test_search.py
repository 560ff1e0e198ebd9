"""`keras-swish search`: the oracles on a synthetic reward, then real searches.

The oracle tests drive KerasTuner oracles as a tuner does (create_trial,
update_trial, end_trial) with a reward computed from the formula, so they
check the strategies, hygiene, collapsing and resuming without training a
child. The slow tests run the command: a real exhaustive search on the
embedded digits, killed and resumed, and a search shared by two local workers.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from keras_swish.errors import UsageError
from keras_swish.expressions import SearchSpace
from keras_swish.recipes.search import oracles, report

TINY = {"unary": ["x", "sigmoid"], "binary": ["mul", "sub"]}
# The 8 token sequences of TINY: 2 constants (x - x, σ(x) − σ(x)) are rejected,
# σ(x)·x is x·σ(x) again; 5 distinct candidates remain.
TINY_TRAINED = {
    "x * x",
    "x * sigmoid(x)",
    "sigmoid(x) * sigmoid(x)",
    "x - sigmoid(x)",
    "sigmoid(x) - x",
}


def _oracle(cls, tmp_path, space=None, **kwargs):
    oracle = cls(space or SearchSpace(units=1, **TINY), **kwargs)
    oracle._set_project_dir(str(tmp_path), "search")
    return oracle


def _finish(oracle, trial, reward):
    oracle.update_trial(trial.trial_id, {"reward": reward, "seconds": 1.0, "steps": 10.0})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def _reward(formula):
    """A synthetic reward: Swish-like best, then anything with a sigmoid."""
    return {"x * sigmoid(x)": 0.9}.get(formula, 0.5 if "sigmoid" in formula else 0.2)


def _drive(oracle, tuners=("tuner0", "tuner1"), limit=100):
    """Hands trials to `tuners` two at a time (both running at once), ends them."""
    handed = []
    for _ in range(limit):
        running = [oracle.create_trial(t) for t in tuners]
        running = [t for t in running if t.status == "RUNNING"]
        if not running:
            return handed
        for trial in running:
            formula = trial.hyperparameters.values["formula"]
            handed.append(formula)
            _finish(oracle, trial, _reward(formula))
    raise AssertionError("the oracle never stopped")


def test_exhaustive_hands_out_each_candidate_once_rejects_and_stops(tmp_path):
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path)
    handed = _drive(oracle)
    assert sorted(handed) == sorted(TINY_TRAINED)  # no duplicate across the two tuners
    assert sorted(r["formula"] for r in oracle.rejected) == [
        "sigmoid(x) - sigmoid(x)",
        "x - x",
    ]
    assert {r["reason"] for r in oracle.rejected} == {"constant"}
    rows = report.entries(oracle)
    assert [r["formula"] for r in rows][:1] == ["x * sigmoid(x)"]
    assert [r["rank"] for r in rows] == list(range(1, 6))
    assert rows[0]["reward"] == pytest.approx(0.9)


def test_equivalent_candidates_collapse_and_reuse_the_score(tmp_path):
    space = SearchSpace(units=1, unary=["x", "neg"], binary=["max", "min", "add"])
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path, space=space)
    handed = _drive(oracle)
    # max(x, x) = min(x, x) = x: one child; -x - x... collapses with -(x + x) forms.
    keys = {}
    from keras_swish.expressions import hygiene, parse

    for formula in handed:
        key = hygiene.equivalence_key(parse(formula), oracles.EQUIVALENCE_BETAS)
        assert key not in keys, f"{formula} is equivalent to {keys.get(key)} but was trained"
        keys[key] = formula
    collapsed = {f for fs in oracle.duplicates.values() for f in fs}
    assert "min(x, x)" in collapsed or "max(x, x)" in collapsed
    rep_of_x = next(
        t for t, fs in oracle.duplicates.items() if "min(x, x)" in fs or "max(x, x)" in fs
    )
    row = next(r for r in report.entries(oracle) if r["trial"] == rep_of_x)
    assert set(row["collapsed"]) & {"min(x, x)", "max(x, x)"}


def test_trainable_beta_candidates_are_not_their_beta_1_twins(tmp_path):
    # βx·σ(x) and β²x² equal x·σ(x) and x² only at β = 1: with β trainable they are
    # other children (as x·σ(βx), the paper's best find, is), and all are trained.
    space = SearchSpace(units=1, unary=["x", "beta_x", "sigmoid"], binary=["mul", "beta_mix"])
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path, space=space)
    handed = _drive(oracle, limit=1000)
    twins = {"x * sigmoid(x)", "sigmoid(x) * (beta * x)", "x * x", "beta * x * (beta * x)"}
    assert twins <= set(handed), sorted(handed)
    # The same function at every β is still trained once: x·βx comes from two token
    # sequences (mul(x, βx) and mul(βx, x)).
    assert handed.count("x * (beta * x)") == 1 and len(handed) == len(set(handed))


def test_killed_oracle_resumes_without_rerunning_finished_trials(tmp_path):
    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    done = first.create_trial("tuner0")
    running = first.create_trial("tuner1")
    _finish(first, done, 0.3)
    # "Killed" here: a new oracle on the same folder, as a re-run command builds.
    second = _oracle(oracles.ExhaustiveOracle, tmp_path)
    second.reload()
    retried = second.create_trial("tuner0")
    assert retried.trial_id == running.trial_id  # the interrupted trial runs again
    _finish(second, retried, 0.4)
    rest = _drive(second)
    handed = [done.hyperparameters.values["formula"], running.hyperparameters.values["formula"]]
    assert sorted(handed + rest) == sorted(TINY_TRAINED)


def _child(oracle, trial):
    return os.path.join(oracle._get_trial_dir(trial.trial_id), "child")


def test_a_chief_restarted_alone_leaves_running_trials_to_their_workers(tmp_path):
    from keras_swish.recipes.core.run_state import RunLock, is_locked

    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    lost = first.create_trial("tuner0")
    alive = first.create_trial("tuner1")
    # tuner1's worker lives on, training its child (it holds the folder's lock);
    # tuner0's died with the chief.
    lock = RunLock(_child(first, alive))
    try:
        second = _oracle(oracles.ExhaustiveOracle, tmp_path)
        second.reload()
        assert second.create_trial("tuner2").trial_id == lost.trial_id  # run again
        fresh = second.create_trial("tuner3")
        assert fresh.trial_id not in (lost.trial_id, alive.trial_id)  # not tuner1's
        assert second.create_trial("tuner1").trial_id == alive.trial_id  # its own
        assert "tuner1" in second.tuner_ids  # the chief serves until tuner1 is done
        _finish(second, alive, 0.5)  # tuner1 reports to the restarted chief
    finally:
        lock.release()
    assert not is_locked(_child(second, alive))  # a lock of a process gone is none
    assert second.reward_order == [alive.trial_id]
    assert alive.trial_id not in [t.trial_id for t in second.ongoing_trials.values()]
    rest = _drive(second, tuners=("tuner2", "tuner3"))
    handed = [alive.hyperparameters.values["formula"], *rest]
    assert sorted(handed) == sorted(TINY_TRAINED)  # each child once


def test_a_trial_ended_twice_is_counted_once_and_not_run_again(tmp_path):
    # Where the chief cannot see a live worker's lock (a file system without
    # locks), it queues that worker's trial again; the trial's end takes it off.
    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    first.create_trial("tuner0")
    alive = first.create_trial("tuner1")
    second = _oracle(oracles.ExhaustiveOracle, tmp_path)
    second.reload()
    _finish(second, alive, 0.5)  # tuner1, still training, reports
    assert alive.trial_id not in second._retry_queue
    assert second.trials[alive.trial_id].metrics.get_last_value("seconds") == 1.0
    assert second.durations[alive.trial_id] == 1.0
    # tuner2 gets the other queued trial, not the ended one.
    assert second.create_trial("tuner2").trial_id != alive.trial_id
    # A second run of it ends (failed, say): the first end stands, counted once.
    alive.status = "FAILED"
    second.end_trial(alive)
    assert second.reward_order.count(alive.trial_id) == 1
    assert second.trials[alive.trial_id].status == "COMPLETED"
    assert oracles.reward_of(second.trials[alive.trial_id]) == 0.5
    rest = _drive(second, tuners=("tuner2", "tuner3"))  # tuner2's trial first
    assert sorted([alive.hyperparameters.values["formula"], *rest]) == sorted(TINY_TRAINED)


def test_a_trial_its_worker_could_not_report_runs_again_and_counts_once(tmp_path):
    # KerasTuner marks a trial INVALID when `run_trial` or the report to the
    # oracle raises (ChildTuner scores a child's own failure itself).
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path)
    trial = oracle.create_trial("tuner0")
    # Its child failed (reward 0, an error), and the report failed on saving
    # after the oracle had taken the reward.
    oracle.trials[trial.trial_id].metrics.register("reward", direction="max")
    oracle.trials[trial.trial_id].metrics.update("reward", 0.0)
    trial.hyperparameters.values.update(error="OSError: a child's error", worker="tuner0")
    trial.status = "INVALID"
    oracle.end_trial(trial)
    assert trial.trial_id not in oracle.reward_order and trial.trial_id in oracle._retry_queue
    # Its next run reports afresh (KerasTuner skips the report of a trial with a reward).
    ended = oracle.trials[trial.trial_id]
    assert not ended.metrics.exists("reward") and "error" not in ended.hyperparameters.values
    again = oracle.create_trial("tuner1")
    assert again.trial_id == trial.trial_id
    _finish(oracle, again, 0.75)
    assert oracle.reward_order == [trial.trial_id]
    assert oracles.reward_of(oracle.trials[trial.trial_id]) == 0.75
    # Reported INVALID on every run (three): a failure then, scored once.
    other = oracle.create_trial("tuner0")
    for run in range(3):
        assert oracle.trials[other.trial_id].status == "RUNNING"
        other.status = "INVALID"
        oracle.end_trial(other)
        if run < 2:
            assert oracle.create_trial("tuner0").trial_id == other.trial_id
    assert oracle.trials[other.trial_id].status == "FAILED"
    assert oracle.reward_order == [trial.trial_id, other.trial_id]
    assert oracles.reward_of(oracle.trials[other.trial_id]) == oracles.LOWEST_REWARD


def test_a_trial_to_run_again_is_still_queued_after_a_kill(tmp_path):
    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    trial = first.create_trial("tuner0")
    first.trials[trial.trial_id].metrics.register("reward", direction="max")
    first.trials[trial.trial_id].metrics.update("reward", 0.0)
    trial.status = "INVALID"
    first.end_trial(trial)
    second = _oracle(oracles.ExhaustiveOracle, tmp_path)  # from the files alone
    second.reload()
    assert second._retry_queue == [trial.trial_id] and second.reward_order == []
    assert not second.trials[trial.trial_id].metrics.exists("reward")
    again = second.create_trial("tuner1")
    assert again.trial_id == trial.trial_id
    _finish(second, again, 0.75)
    assert second.reward_order == [trial.trial_id]
    assert oracles.reward_of(second.trials[trial.trial_id]) == 0.75


def test_a_trial_queued_by_a_restarted_chief_and_reported_invalid_runs_once_more(tmp_path):
    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    trial = first.create_trial("tuner0")  # its child folder not locked yet
    second = _oracle(oracles.ExhaustiveOracle, tmp_path)
    second.reload()
    assert second._retry_queue == [trial.trial_id]
    trial.status = "INVALID"  # tuner0 could not report it
    second.end_trial(trial)
    assert second._retry_queue == [trial.trial_id]  # once: one worker runs it again
    assert second.create_trial("tuner1").trial_id == trial.trial_id
    assert second.create_trial("tuner2").trial_id != trial.trial_id


@pytest.mark.parametrize("where", ["create_trial", "update_trial", "end_trial"])
def test_an_error_inside_the_oracle_frees_its_lock_for_the_chiefs_other_threads(
    tmp_path, monkeypatch, where
):
    # A distributed chief serves each worker's call on a gRPC thread and asks
    # `exit_chief` from its main thread at the end; an error in a served call
    # (a full disk while saving, say) must not leave the oracle locked.
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path)
    trial = oracle.create_trial("tuner0")
    if where == "create_trial":
        monkeypatch.setattr(oracle, "propose", fail)
        with pytest.raises(OSError, match="No space left"):
            oracle.create_trial("tuner1")
    elif where == "update_trial":
        monkeypatch.setattr(oracle, "_save_trial", fail)
        with pytest.raises(OSError, match="No space left"):
            oracle.update_trial(trial.trial_id, {"reward": 0.5})
    else:
        monkeypatch.setattr(oracle, "save", fail)
        with pytest.raises(OSError, match="No space left"):
            _finish(oracle, trial, 0.5)
    answers = []
    other = threading.Thread(target=lambda: answers.append(exit_chief(oracle)), daemon=True)
    other.start()
    other.join(timeout=30)
    assert not other.is_alive(), "the oracle's lock was left held by the failed call"
    assert answers == [False]  # tuner0 (or tuner1) still counts as a worker
    monkeypatch.undo()
    assert oracle.create_trial("tuner1").status == "RUNNING"  # and it serves on


def test_a_worker_handed_a_trial_another_one_runs_waits_for_it(tmp_path, monkeypatch, capsys):
    # The seconds between a worker getting a trial and locking its child folder:
    # a restarted chief cannot see it is running and may hand it out again.
    import threading

    from keras_swish.recipes.core.run_state import RunLock
    from keras_swish.recipes.search import tuner

    monkeypatch.setattr(tuner, "LOCK_POLL_SECONDS", 0.05)
    child = str(tmp_path / "child")
    first = RunLock(child)  # the first worker trains it
    timer = threading.Timer(0.5, first.release)
    timer.start()
    attempts = []

    def train(recipe, experiment, config, verbose):  # as runner.train takes the folder
        attempts.append(time.monotonic())
        lock = RunLock(child)
        lock.release()
        return {"completed": True}

    started = time.monotonic()
    try:
        assert tuner.train_when_free(train, None, None, None) == {"completed": True}
    finally:
        timer.cancel()
        first.release()
    assert attempts[-1] - started >= 0.5 and len(attempts) > 2  # tried until it was free
    assert f"{child} is in use by another process (pid {os.getpid()}): waiting" in (
        capsys.readouterr().out
    )


def test_a_folder_of_another_search_is_refused(tmp_path):
    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    _finish(first, first.create_trial("tuner0"), 0.3)
    other = _oracle(
        oracles.ExhaustiveOracle, tmp_path, space=SearchSpace(units=1, unary=["x"], binary=["add"])
    )
    with pytest.raises(oracles.SearchMismatch, match="exhaustive search over 1 unit"):
        other.reload()


@pytest.mark.parametrize("resumed_as", ["tuner0", "chief"])
def test_a_search_resumed_with_or_without_workers_reloads_its_oracle(
    resumed_as, tmp_path, monkeypatch
):
    # Begun in one process (its tuner file: tuner0.json) or as the chief of
    # --workers (chief.json), resumed the other way: the saved oracle is reloaded,
    # not replaced by a fresh one saved over it.
    from keras_swish.recipes.search.tuner import ChildTuner

    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    done = first.create_trial("tuner0")
    _finish(first, done, 0.3)
    saved = (tmp_path / "search" / "oracle.json").read_text()
    monkeypatch.setenv("KERASTUNER_TUNER_ID", resumed_as)
    if resumed_as == "chief":
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    oracle = oracles.ExhaustiveOracle(SearchSpace(units=1, **TINY))
    ChildTuner(oracle, "resnet20", {}, directory=str(tmp_path), project_name="search")
    assert oracle.trials[done.trial_id].status == "COMPLETED"
    assert (tmp_path / "search" / "oracle.json").read_text() == saved
    rest = _drive(oracle)
    assert sorted([done.hyperparameters.values["formula"], *rest]) == sorted(TINY_TRAINED)


def test_random_oracle_is_seeded_and_stops_at_max_trials(tmp_path):
    space = SearchSpace(units=2)
    a = _oracle(oracles.RandomOracle, tmp_path / "a", space=space, max_trials=6, seed=3)
    b = _oracle(oracles.RandomOracle, tmp_path / "b", space=space, max_trials=6, seed=3)
    handed_a, handed_b = _drive(a), _drive(b)
    assert handed_a == handed_b and len(handed_a) == 6 and len(set(handed_a)) == 6
    assert all(space.contains(f) for f in handed_a)


def test_controller_oracle_learns_from_every_reward_and_saves_its_weights(tmp_path):
    space = SearchSpace(units=1)
    oracle = _oracle(oracles.ControllerOracle, tmp_path, space=space, max_trials=12, seed=0)
    samples, sample = [], oracle.controller.sample
    oracle.controller.sample = lambda n=1: samples.extend(sample(n)) or samples[-n:]
    handed = _drive(oracle)
    assert len(handed) == 12
    # Every controller sample got one reward: trials, rejected and collapsed proposals.
    assert len(oracle.history) == len(samples) > 12
    assert oracle.history.count(oracles.LOWEST_REWARD) >= len(oracle.rejected) > 0
    weights = [f for f in os.listdir(tmp_path / "search") if f.startswith("controller-")]
    assert weights == [f"controller-{oracle.controller.num_updates}.npz"]
    assert oracle.controller.num_updates >= 1  # PPO updates ran during the search
    # A re-run builds a new oracle: it gets the same controller back.
    again = _oracle(oracles.ControllerOracle, tmp_path, space=space, max_trials=12, seed=0)
    again.reload()
    assert again.history == oracle.history
    first_trial = oracle.trials[min(oracle.trials)]
    tokens = oracles.tokens_of(first_trial.hyperparameters.values["tokens"])
    assert again.controller.logprob(tokens) == pytest.approx(oracle.controller.logprob(tokens))


def test_progress_line_and_leaderboard_files(tmp_path):
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path)
    _drive(oracle)
    header = {
        "strategy": "exhaustive",
        "space": "tiny",
        "experiment": "resnet20/embedded",
        "child_steps": 10,
        "batch_size": 32,
        "monitor": "val_top1",
    }
    out = tmp_path / "out"
    out.mkdir()
    report.write_leaderboard(oracle, str(out), header)
    line = report.progress_line(oracle, time.monotonic())
    assert line.startswith("search: 5 trained (0 failed), 0 running, 2 rejected")
    assert "best 0.9000 x * sigmoid(x)" in line
    record = json.loads((out / "leaderboard.json").read_text())
    assert [r["formula"] for r in record["leaderboard"]][0] == "x * sigmoid(x)"
    csv_lines = (out / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,formula,reward")
    assert "rejected: constant" in csv_lines[-1]
    markdown = (out / "leaderboard.md").read_text()
    assert "| 1 | `x * sigmoid(x)` | 0.9000 |" in markdown
    report.write_plots(oracle, str(out))
    assert (out / "curves.png").stat().st_size > 10_000
    assert (out / "rewards.png").stat().st_size > 10_000


# --- The command -------------------------------------------------------------------


def _cli(*args, cwd, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "keras_swish_cli", *args],
        cwd=cwd,
        # Without a TF_CPP_MIN_LOG_LEVEL of its own the command hides TensorFlow's start-up lines.
        env={
            k: v for k, v in dict(os.environ, **(env or {})).items() if k != "TF_CPP_MIN_LOG_LEVEL"
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "bayes"], "--strategy must be one of exhaustive, random, rnn"),
        (["--units", "4"], "--units must be 1, 2 or 3"),
        (["--unary", "x,sine"], "sine"),
        (["--strategy", "rnn"], "needs --max-trials"),
        (["--units", "2"], "too large"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--epochs", "3"], "--epochs is for --retrain runs"),
        (["--seed", "-1"], "--seed must be at least 0"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--retrain", "0", "resnet20", "--output", "x"], "--retrain must be at least 1"),
        (["--work", "2"], "unrecognized arguments: --work"),
        (["--retrain", "3", "resnet20", "--output", "nowhere"], "holds no search leaderboard"),
        (["--retrain", "3", "resnet20"], "needs the EXPERIMENT to train and the search's --output"),
        (["--output", "gs://bucket/s"], "'--output' must be a local or mounted folder"),
        # A second MultiWorkerMirroredStrategy in one process fails: every child
        # after the first would have scored as failed.
        (["--set", "train.strategy=multi_worker"], "A search child trains inside its search"),
        # Only --retrain's compare runs take them; a search ignored them.
        (["--seeds", "5"], "--seeds is for --retrain runs; a search takes --seed"),
        (["--parallel", "4"], "--parallel is for --retrain runs; a search takes --workers N"),
        # --retrain's runs are compare's: a search's settings were dropped unread.
        (["--retrain", "3", "resnet20", "--output", "x", "--steps", "100"], "--steps is for a"),
        (["--retrain", "3", "resnet20", "--output", "x", "--strategy", "rnn"], "--strategy is"),
        (["--retrain", "3", "resnet20", "--output", "x", "--seed", "1"], "--seed is for a search"),
        (["--retrain", "3", "resnet20", "--output", "x", "--workers", "2"], "--workers is for"),
    ],
)
def test_bad_search_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, monkeypatch, capsys, args, message
):
    from keras_swish.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["search", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    # One line (argparse's own errors add the usage line above it).
    assert len(err.splitlines()) == (2 if "unrecognized" in message else 1), err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"KERASTUNER_ORACLE_IP": "10.0.0.1"}, "KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID"),
        ({"KERASTUNER_ORACLE_IP": "10.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}, "TUNER_ID is not"),
        (
            {
                "KERASTUNER_ORACLE_IP": "10.0.0.1",
                "KERASTUNER_ORACLE_PORT": "http",
                "KERASTUNER_TUNER_ID": "tuner0",
            },
            "KERASTUNER_ORACLE_PORT must be a port number, 1-65535. Received: 'http'",
        ),
    ],
)
def test_bad_distributed_search_variables_are_one_line_exit_2(
    tmp_path, monkeypatch, capsys, env, message
):
    from keras_swish.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["search", "--unary", "x", "--binary", "mul", "--output", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_a_kerastuner_project_that_is_not_a_search_is_refused(tmp_path, monkeypatch, capsys):
    from keras_swish.cli import main

    monkeypatch.chdir(tmp_path)
    os.makedirs("s")
    # Another KerasTuner project: its oracle state has no search in it.
    (tmp_path / "s" / "oracle.json").write_text(json.dumps({"ongoing_trials": {}}))
    assert main(["search", "--unary", "x", "--binary", "mul", "--output", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a KerasTuner project that is not a keras-swish search" in err, err
    assert len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path / "s") == ["oracle.json"]  # nothing written there
    assert json.loads((tmp_path / "s" / "oracle.json").read_text()) == {"ongoing_trials": {}}
    # The oracle's own guard, where a reload gets that far.
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path, space=SearchSpace(units=1, **TINY))
    oracle._set_project_dir(str(tmp_path), "s")
    with pytest.raises(oracles.SearchMismatch, match="not a keras-swish search"):
        oracle.reload()


def test_an_rnn_search_missing_its_controller_weights_is_refused(tmp_path):
    first = _oracle(oracles.ControllerOracle, tmp_path, max_trials=4)
    first.create_trial("tuner0")  # saves oracle.json and controller-0.npz
    os.remove(tmp_path / "search" / "controller-0.npz")
    second = _oracle(oracles.ControllerOracle, tmp_path, max_trials=4)
    with pytest.raises(oracles.SearchMismatch, match="controller-0.npz is missing"):
        second.reload()


def test_child_settings_that_fail_every_child_stop_the_search(tmp_path, monkeypatch, capsys):
    """CIFAR-10 not prepared in --data-dir: exit 2 at the first child, not a search of 0s."""
    from keras_swish.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["search", "--unary", "x,sigmoid", "--binary", "mul,sub", "--max-trials", "1"]
    args += ["--output", "s"]
    data = ["--data", "tfds:cifar10", "--data-dir", str(tmp_path / "tfds")]
    assert main([*args, *data]) == 2
    err = capsys.readouterr().err.strip()
    assert "Every child would fail:" in err and "is not prepared" in err, err
    assert len(err.splitlines()) == 1, err
    trials = [n for n in os.listdir(tmp_path / "s") if n.startswith("trial_")]
    assert len(trials) == 1  # the first child only
    # No child finished: the same folder takes the corrected settings (here: the
    # embedded data) as a new search — its oracle and trials (with a child
    # killed while training with the old settings) are dropped, and the first
    # trial is handed out and trained again with the new ones.
    child = tmp_path / "s" / trials[0] / "child"
    child.mkdir(exist_ok=True)
    (child / "config.yaml").write_text("experiment: resnet20/cifar10\n")
    assert main(args) == 0, capsys.readouterr().err
    assert "experiment: resnet20/embedded" in (child / "config.yaml").read_text()
    assert json.loads((child / "metrics.json").read_text())["completed"]
    trial = json.loads((tmp_path / "s" / trials[0] / "trial.json").read_text())
    assert trial["status"] == "COMPLETED"
    assert sorted(n for n in os.listdir(tmp_path / "s") if n.startswith("trial_")) == trials
    # A child finished: other settings are another search, refused.
    capsys.readouterr()
    assert main([*args, *data]) == 2
    err = capsys.readouterr().err
    assert "holds another search (different " in err and "child_flags" in err, err


def test_an_edited_config_file_is_another_search(tmp_path):
    # The file's contents are the search's settings, not its path: a search
    # resumed after its --config was edited would train new children under
    # other settings beside the old ones, on one leaderboard.
    from keras_swish.recipes import search

    config_file = tmp_path / "child.yaml"
    config_file.write_text("model:\n  weight_decay: 0.0001\n")

    def settings():
        return search.plan("resnet20", unary=["x"], binary=["mul"], config_file=str(config_file))[1]

    output = tmp_path / "s"
    (output / "trial_0").mkdir(parents=True)
    (output / "trial_0" / "trial.json").write_text(json.dumps({"status": "COMPLETED"}))
    mine, changed = search._check_settings(str(output), settings())
    assert changed == []
    (output / "search.json").write_text(json.dumps(mine))
    assert search._check_settings(str(output), settings())[1] == []  # the same: resumes
    config_file.write_text("model:\n  weight_decay: 0.0002\n")
    with pytest.raises(UsageError, match=r"holds another search \(different config_file_values\)"):
        search._check_settings(str(output), settings())
    # A search.json of an earlier version (no contents recorded) still resumes.
    del mine["config_file_values"]
    (output / "search.json").write_text(json.dumps(mine))
    assert search._check_settings(str(output), settings())[1] == []
    # Another machine of the same search: its data and config file elsewhere.
    config_file.write_text("model:\n  weight_decay: 0.0001\n")
    mine, _ = search._check_settings(str(output), settings())
    (output / "search.json").write_text(json.dumps(mine))
    elsewhere = tmp_path / "worker2" / "child.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(config_file.read_text())
    worker = search.plan(
        "resnet20",
        unary=["x"],
        binary=["mul"],
        config_file=str(elsewhere),
        train_flags={"data_dir": "/mnt/tfds"},
    )[1]
    assert search._check_settings(str(output), worker)[1] == []


def test_pruning_a_child_never_leaves_a_state_naming_a_deleted_checkpoint(tmp_path, monkeypatch):
    # state/ is renamed away before its files are deleted: a kill mid-delete
    # (here: rmtree failing at once) leaves no state.json without its checkpoint.
    from keras_swish.recipes.search import tuner

    child = tmp_path / "child"
    (child / "state").mkdir(parents=True)
    (child / "state" / "state.json").write_text('{"epoch": 1, "checkpoint": "epoch-1.weights.h5"}')
    (child / "state" / "epoch-1.weights.h5").write_bytes(b"w")
    (child / "final.keras").write_bytes(b"m")
    (child / "best.keras").write_bytes(b"m")

    def killed(path, ignore_errors=False):
        if os.path.basename(path) == ".tmp-pruned-state" and os.path.exists(path):
            raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(tuner.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        tuner._prune(str(child))
    assert not (child / "state").exists()
    monkeypatch.undo()
    tuner._prune(str(child))  # pruned again (or a recovery): the leftover goes
    assert sorted(os.listdir(child)) == ["best.keras"]


@pytest.mark.parametrize(
    "failure, finished, stops",
    [
        ("tf_oom", 0, True),  # TensorFlow's ResourceExhaustedError
        (RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4GiB"), 0, True),  # XLA
        (MemoryError(), 0, True),
        ("tf_oom", 1, False),  # after a child trained: this candidate's need, its 0
        (FloatingPointError("overflow in the candidate"), 0, False),  # the candidate's: a 0
    ],
)
def test_the_first_child_out_of_memory_stops_the_search_instead_of_scoring_0(
    failure, finished, stops, tmp_path, monkeypatch
):
    # Before any child trained, every child would run out of memory alike (a batch
    # too large, GPUs shared): scored 0, each would count as a finished child.
    import types

    import tensorflow as tf

    from keras_swish.recipes.core import runner
    from keras_swish.recipes.search import tuner

    if failure == "tf_oom":
        failure = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    def train(*args, **kwargs):
        raise failure

    monkeypatch.setattr(runner, "train", train)
    fake = types.SimpleNamespace(
        child_config=lambda formula, output: (None, None, None),
        get_trial_dir=lambda trial_id: str(tmp_path / trial_id),
        tuner_id="tuner0",
        project_dir=str(tmp_path),
        settings=None,
    )
    if finished:
        (tmp_path / "trial_9").mkdir()
        (tmp_path / "trial_9" / "trial.json").write_text(json.dumps({"status": "COMPLETED"}))
    trial = types.SimpleNamespace(
        trial_id="trial_0", hyperparameters=types.SimpleNamespace(values={"formula": "x"})
    )
    if stops:
        with pytest.raises(tuner.ChildSettingsError, match="out of memory training the first"):
            tuner.ChildTuner.run_trial(fake, trial)
    else:
        result = tuner.ChildTuner.run_trial(fake, trial)
        assert result[oracles.OBJECTIVE] == oracles.LOWEST_REWARD
        assert type(failure).__name__ in trial.hyperparameters.values["error"]


def test_search_children_train_in_float32_unless_asked_otherwise():
    from keras_swish.recipes import search

    _, settings = search.plan("resnet20", unary=["x"], binary=["mul"])
    assert settings.child_flags["precision"] == "float32"
    _, settings = search.plan(
        "resnet20", unary=["x"], binary=["mul"], train_flags={"precision": "mixed_bfloat16"}
    )
    assert settings.child_flags["precision"] == "mixed_bfloat16"


def test_hostile_formula_is_refused_from_the_command_line(tmp_path, monkeypatch, capsys):
    from keras_swish.cli import main

    monkeypatch.chdir(tmp_path)
    hostile = "expr:__import__('os').system('touch pwned')"
    assert main(["train", "resnet20", "--activation", hostile]) == 2
    err = capsys.readouterr().err.strip()
    # One error: the position, a caret under it and the allowed names; no traceback.
    assert 'Unexpected character "\'" at position 11' in err, err
    assert "Allowed: x, beta, eps" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def _leaderboard(folder):
    with open(os.path.join(folder, "leaderboard.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
def test_real_search_killed_then_resumed_ranks_swish_first(tmp_path):
    """An exhaustive search on the embedded digits, kill -9 after two children."""
    folder = str(tmp_path / "search")
    args = ["search", "--unary", "x,sigmoid", "--binary", "mul,sub", "--output", folder]
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_swish_cli", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        path = os.path.join(folder, "leaderboard.json")
        if os.path.exists(path) and _leaderboard(folder)["counts"]["trained"] >= 2:
            break
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {r["trial"]: r for r in _leaderboard(folder)["leaderboard"]}
    assert len(before) >= 2

    result = _cli(*args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    record = _leaderboard(folder)
    rows = record["leaderboard"]
    assert {r["formula"] for r in rows} == TINY_TRAINED  # each trained once
    assert len(rows) == len(TINY_TRAINED)
    for trial_id, row in before.items():  # finished children were not trained again
        with open(os.path.join(folder, f"trial_{trial_id}", "child", "metrics.json")) as f:
            metrics = json.load(f)
        assert len(metrics["sessions"]) == 1
        again = next(r for r in rows if r["trial"] == trial_id)
        assert again["reward"] == row["reward"]
    rewards = {r["formula"]: r["reward"] for r in rows}
    # Swish-like first; x·x diverges (the lowest reward); the constants were rejected.
    assert rows[0]["formula"] == "x * sigmoid(x)"
    assert rewards["x * sigmoid(x)"] > 0.25 > rewards["x * x"]
    assert {r["reason"] for r in record["rejected"]} == {"constant"}
    assert "search:" in result.stdout and "| 1 | `x * sigmoid(x)` |" in result.stdout
    for name in ("leaderboard.md", "leaderboard.csv", "curves.png", "rewards.png"):
        assert os.path.getsize(os.path.join(folder, name)) > 100

    # The winner's child is a run folder whose best.keras loads in a fresh process.
    from tests.recipes.run_checks import assert_loads_anywhere

    best_child = tmp_path / "search" / f"trial_{rows[0]['trial']}" / "child"
    assert not (best_child / "state").exists()  # pruned when complete
    assert_loads_anywhere(best_child)


@pytest.mark.slow
def test_two_local_workers_share_one_oracle(tmp_path):
    folder = str(tmp_path / "search")
    result = _cli(
        "search",
        "--unary",
        "x,sigmoid,tanh",
        "--binary",
        "mul",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--workers",
        "2",
        "--output",
        folder,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _leaderboard(folder)["leaderboard"]
    formulas = [r["formula"] for r in rows]
    assert len(formulas) == len(set(formulas)) == 6  # 3 × 3 products, 3 of them twice
    assert {r["worker"] for r in rows} == {"tuner0", "tuner1"}
    assert np.all([r["steps"] == 4 for r in rows])


@pytest.mark.slow
def test_a_worker_started_with_other_settings_than_the_chiefs_stops_before_training(tmp_path):
    from keras_swish.recipes.launch import free_ports

    (port,) = free_ports(1)
    folder = str(tmp_path / "search")
    args = ["search", "--unary", "x,sigmoid", "--binary", "mul", "--batch-size", "16"]
    args += ["--output", folder]
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    chief = subprocess.Popen(
        [sys.executable, "-m", "keras_swish_cli", *args, "--steps", "4"],
        env=dict(env, KERASTUNER_TUNER_ID="chief"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        worker = _cli(
            *args, "--steps", "8", cwd=tmp_path, env=dict(env, KERASTUNER_TUNER_ID="tuner0")
        )
    finally:
        chief.kill()
        chief.wait()
    assert worker.returncode == 2, worker.stdout[-2000:] + worker.stderr[-3000:]
    message = worker.stderr.strip().splitlines()
    assert len(message) == 1, worker.stderr
    assert "this worker's search settings differ from the chief's: " in message[0]
    assert "child_steps (8 here, 4 at the chief)" in message[0]
    children = [n for n in os.listdir(folder) if n.startswith("trial_")]
    for name in children:  # the trial handed to it: no child trained
        assert not os.path.exists(os.path.join(folder, name, "child", "metrics.json"))


@pytest.mark.slow
def test_retrain_hands_the_top_k_to_compare(tmp_path):
    """`search --retrain K EXPERIMENT` trains relu and the K best trained formulas."""
    folder = tmp_path / "search"
    folder.mkdir()
    rows = [
        {"formula": "max(x, sigmoid(x))", "reward": 0.5, "error": None},
        {"formula": "x * x", "reward": 0.0, "error": "diverged: training loss nan in epoch 1"},
        {"formula": "x * sigmoid(x)", "reward": 0.4, "error": None},
        {"formula": "cos(x) - x", "reward": 0.3, "error": None},
    ]
    (folder / "leaderboard.json").write_text(json.dumps({"leaderboard": rows}))
    result = _cli(
        "search",
        "--retrain",
        "2",
        "resnet20",
        "--output",
        str(folder),
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((folder / "retrain-resnet20" / "results.json").read_text())
    (table,) = record["experiments"].values()
    assert list(table["activations"]) == ["relu", "expr:max(x, sigmoid(x))", "expr:x * sigmoid(x)"]
    assert "| expr:max(x, sigmoid(x)) |" in result.stdout or "max(x, sigmoid(x))" in result.stdout
    # In the search's precision (float32), not `auto` (float16 on a GPU).
    configs = list((folder / "retrain-resnet20").glob("*/*/seed0/config.yaml"))
    assert len(configs) == 3 and all("precision: float32" in c.read_text() for c in configs)


def test_exhaustive_walks_the_whole_space_past_long_runs_of_rejections(tmp_path):
    """sqrt(x) is NaN below 0: thousands of candidates in a row are rejected."""
    from keras_swish.expressions import hygiene

    space = SearchSpace(units=2, unary=["sqrt", "x"])  # 6,400 sequences
    expected = set()
    for _, expr in space.enumerate():
        try:
            hygiene.check(expr, trainable_beta=True)
        except hygiene.CandidateRejected:
            continue
        expected.add(hygiene.equivalence_key(expr, oracles.EQUIVALENCE_BETAS))
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path, space=space)
    handed = _drive(oracle, limit=10_000)
    assert oracle.cursor == space.size
    assert len(handed) == len(expected) > 10


def test_a_trial_file_newer_than_the_oracle_state_is_run_again(tmp_path):
    """A kill between KerasTuner's trial.json and oracle.json writes loses no trial."""
    first = _oracle(oracles.ExhaustiveOracle, tmp_path)
    _finish(first, first.create_trial("tuner0"), 0.3)
    state_path = tmp_path / "search" / "oracle.json"
    saved = state_path.read_bytes()
    lost = first.create_trial("tuner0")  # writes its trial.json, then oracle.json
    state_path.write_bytes(saved)  # as if killed before oracle.json was rewritten
    second = _oracle(oracles.ExhaustiveOracle, tmp_path)
    second.reload()
    retried = second.create_trial("tuner1")
    assert retried.trial_id == lost.trial_id
    assert retried.hyperparameters.values["formula"] == lost.hyperparameters.values["formula"]
    # The strategy proposes that formula again (its cursor was not saved): it is the
    # retried trial, not a second child of the same candidate.
    _finish(second, retried, 0.4)
    handed = [t.hyperparameters.values["formula"] for t in second.trials.values()]
    assert sorted(handed + _drive(second)) == sorted(TINY_TRAINED)


@pytest.mark.parametrize("cls", [oracles.ExhaustiveOracle, oracles.ControllerOracle])
def test_a_trial_ended_but_not_counted_before_a_kill_is_counted_once(tmp_path, monkeypatch, cls):
    """KerasTuner saves the ended trial, then this oracle counts its reward: kill between."""
    first = _oracle(cls, tmp_path, max_trials=4)
    trial = first.create_trial("tuner0")

    def killed(trial):
        raise KeyboardInterrupt

    monkeypatch.setattr(first, "_count", killed)
    with pytest.raises(KeyboardInterrupt):
        _finish(first, trial, 0.7)
    second = _oracle(cls, tmp_path, max_trials=4)
    second.reload()
    retried = second.create_trial("tuner1")  # KerasTuner retries it (its child is complete)
    assert retried.trial_id == trial.trial_id
    _finish(second, retried, 0.7)
    assert second.reward_order == [trial.trial_id]
    assert [r["reward"] for r in report.entries(second)] == [pytest.approx(0.7)]
    if cls is oracles.ControllerOracle:  # the controller got the reward, once
        assert second.history == [pytest.approx(0.7)] and not second.pending


def _header(settings):
    """`settings` as search.json records them."""
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(settings)))


def _fake_tuner(tmp_path, settings=None):
    import types

    recipe = types.SimpleNamespace(monitor="val_top1")
    config = types.SimpleNamespace(train=types.SimpleNamespace(epochs=1))
    return types.SimpleNamespace(
        child_config=lambda formula, output: (recipe, None, config),
        get_trial_dir=lambda trial_id: str(tmp_path / trial_id),
        tuner_id="tuner0",
        project_dir=str(tmp_path),
        settings=settings,
    )


def _fake_trial(values):
    import types

    return types.SimpleNamespace(
        trial_id="trial_0", hyperparameters=types.SimpleNamespace(values=dict(values))
    )


def test_a_worker_refuses_a_trial_of_other_search_settings(tmp_path, monkeypatch):
    """A distributed worker started with another command than the chief's."""
    from keras_swish.recipes import search
    from keras_swish.recipes.core import runner
    from keras_swish.recipes.search import tuner

    def train(*args, **kwargs):
        raise AssertionError("trained a child of other settings")

    monkeypatch.setattr(runner, "train", train)
    _, chiefs = search.plan("resnet20", unary=["x"], binary=["mul"], steps=1000)
    _, workers = search.plan(
        "resnet20", unary=["x"], binary=["mul"], steps=40, train_flags={"data_dir": "/mnt/x"}
    )
    header = _header(chiefs)
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path, space=SearchSpace(units=1, **TINY))
    oracle.settings = json.dumps(search.comparable_settings(header), sort_keys=True)
    trial = oracle.create_trial("tuner0")
    assert json.loads(trial.hyperparameters.values["settings"])["child_steps"] == 1000
    mine = search.comparable_settings(_header(workers))
    with pytest.raises(tuner.WorkerSettingsError) as info:
        tuner.ChildTuner.run_trial(_fake_tuner(tmp_path, mine), trial)
    message = str(info.value)
    assert "child_steps (40 here, 1000 at the chief)" in message
    assert "data_dir" not in message  # each machine's own mount of the data
    # The same settings but another --data-dir and --max-trials: trained.
    _, same = search.plan(
        "resnet20",
        unary=["x"],
        binary=["mul"],
        steps=1000,
        max_trials=3,
        train_flags={"data_dir": "/mnt/x"},
    )
    mine = search.comparable_settings(_header(same))
    tuner._check_chiefs_settings(trial.hyperparameters.values, mine)
    # A `--set` only the worker has: a difference, named by its key.
    _, other = search.plan(
        "resnet20", unary=["x"], binary=["mul"], steps=1000, overrides={"train": {"seed": 3}}
    )
    mine = search.comparable_settings(_header(other))
    with pytest.raises(tuner.WorkerSettingsError) as info:
        tuner._check_chiefs_settings(trial.hyperparameters.values, mine)
    assert "differ from the chief's: overrides.train.seed (3 here, not set at the chief)." in str(
        info.value
    )


def test_controller_weights_left_by_a_killed_run_are_not_adopted(tmp_path):
    """A kill after `controller-N.npz`, before oracle.json: a later N writes its own."""
    from keras_swish.recipes.search.controller import Controller

    first = _oracle(oracles.ControllerOracle, tmp_path, max_trials=4)
    stale = Controller(first.space.steps(), seed=5)  # other rewards, other weights
    os.makedirs(tmp_path / "search", exist_ok=True)
    stale.save_weights(str(tmp_path / "search" / "controller-0.npz"))
    first.create_trial("tuner0")  # saves the oracle (controller after 0 updates)
    second = _oracle(oracles.ControllerOracle, tmp_path, max_trials=4)
    second.reload()
    tokens = [0] * len(first.space.steps())
    assert second.controller.logprob(tokens) == pytest.approx(first.controller.logprob(tokens))
    assert second.controller.logprob(tokens) != pytest.approx(stale.logprob(tokens))


def test_a_search_where_every_candidate_is_rejected_still_reports(tmp_path):
    space = SearchSpace(units=1, unary=["beta"], binary=["add", "sub"])
    oracle = _oracle(oracles.ExhaustiveOracle, tmp_path, space=space)
    assert _drive(oracle) == []
    out = tmp_path / "out"
    out.mkdir()
    report.write_plots(oracle, str(out))
    assert (out / "rewards.png").stat().st_size > 1000


def test_samples_of_a_running_candidate_make_the_oracle_wait_not_stop(tmp_path):
    """A policy stuck on a candidate still in training: IDLE, then it goes on."""

    class Stuck(oracles.RandomOracle):
        def propose(self):
            tokens = [0, 0, 0, 20, 1]  # x * sigmoid(x), every time
            return tokens, self.space.decode(tokens), None

    oracle = _oracle(Stuck, tmp_path, space=SearchSpace(units=1), max_trials=5)
    first = oracle.create_trial("tuner0")
    assert first.hyperparameters.values["formula"] == "x * sigmoid(x)"
    assert oracle.create_trial("tuner1").status == "IDLE"  # not STOPPED: a reward is coming
    _finish(oracle, first, 0.7)
    assert oracle.create_trial("tuner1").status == "STOPPED"  # now nothing new can come


def test_controller_samples_waiting_for_a_running_trial_are_capped(tmp_path):
    oracle = _oracle(oracles.ControllerOracle, tmp_path, space=SearchSpace(units=1), max_trials=3)
    trial = oracle.create_trial("tuner0")
    tokens = oracles.tokens_of(trial.hyperparameters.values["tokens"])
    for _ in range(50):
        oracle.on_duplicate(tokens, trial.trial_id, -1.0)
    assert len(oracle.waiting[trial.trial_id]) == oracles._MAX_WAITING_SAMPLES
    given = len(oracle.history)
    _finish(oracle, trial, 0.6)
    assert oracle.history[given:] == [0.6] * (1 + oracles._MAX_WAITING_SAMPLES)


@pytest.mark.parametrize("loss", [float("nan"), None])
def test_a_diverged_child_gets_the_lowest_reward_in_memory_or_read_back(loss):
    # A child's record is in memory (NaN) or read back from its metrics.json
    # (null: standard JSON), when a resumed search finds it complete.
    from keras_swish.recipes.search.tuner import _reward

    record = {
        "epochs": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": loss}],
        "best": {"validation": {"val_top1": 0.4}},
    }
    reward, error = _reward(record, "val_top1")
    assert reward == oracles.LOWEST_REWARD and error == "diverged: training loss nan in epoch 2"
    for healthy in ({"epoch": 1, "loss": 1.0}, {"epoch": 1}):  # no loss logged: not diverged
        assert _reward({"epochs": [healthy], "best": record["best"]}, "val_top1") == (0.4, None)


def test_a_rerun_with_other_settings_drops_the_old_searchs_state(tmp_path, monkeypatch):
    # No child finished (`_check_settings`): the oracle, this process's tuner file,
    # the controller's weights, trials and reports go; search.json is rewritten
    # after; a worker's tuner file (an empty state) and the user's files stay.
    from keras_swish.recipes.search import _drop_search

    monkeypatch.delenv("KERASTUNER_TUNER_ID", raising=False)
    for name in ("oracle.json", "tuner0.json", "chief.json", "controller-3.npz", "curves.png"):
        (tmp_path / name).write_text("x")
    for name in ("leaderboard.json", "leaderboard.md", "leaderboard.csv", "rewards.png"):
        (tmp_path / name).write_text("x")
    (tmp_path / "trial_0" / "child").mkdir(parents=True)
    for name in ("search.json", "tuner1.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    _drop_search(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "search.json", "tuner1.json"]
