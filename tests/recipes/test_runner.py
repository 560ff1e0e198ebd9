"""The runner keeps a run whole: kills at every stage, resume, reruns, loads elsewhere."""

import json
import os
import re
import signal
import stat
import subprocess
import sys

import pytest

from keras_swish.cli import main
from keras_swish.errors import UsageError
from keras_swish.recipes.core import faults, runner
from keras_swish.recipes.core.run_state import RunState
from tests.recipes.run_checks import (
    ROOT,
    assert_loads_anywhere,
    record_disk_events,
    strict_json,
    train_process,
)


class FakeModel:
    """Writes which epoch it is at instead of weights, so files can be told apart."""

    epoch = 0
    variables = []  # no random-number generators to keep

    class optimizer:
        iterations = 0

    def save_weights(self, path):
        with open(path, "w") as f:
            f.write(f"weights {self.epoch}")

    def save(self, path):
        with open(path, "w") as f:
            f.write(f"model {self.epoch}")


class Killed(Exception):
    pass


def _commit(state, model, epoch, value):
    model.epoch = epoch
    return state.commit_epoch(model, epoch, {"epoch": epoch, "val_top1": value}, "val_top1")


def _read(path):
    with open(path) as f:
        return f.read()


def test_best_model_is_the_best_of_the_whole_run_across_restarts(tmp_path):
    model = FakeModel()
    state = RunState(str(tmp_path))
    assert [_commit(state, model, e, v) for e, v in ((1, 0.5), (2, 0.7), (3, 0.6))] == [
        True,
        True,
        False,
    ]
    assert _read(tmp_path / "best.keras") == "model 2"
    assert sorted(os.listdir(tmp_path / "state")) == ["epoch-3.weights.h5", "state.json"]
    resumed = RunState(str(tmp_path))  # a new process: the best value is remembered
    assert resumed.epoch == 3 and resumed.best == {"epoch": 2, "monitor": "val_top1", "value": 0.7}
    assert _commit(resumed, model, 4, 0.65) is False  # not better than epoch 2's 0.7
    assert _read(tmp_path / "best.keras") == "model 2"
    assert [e["epoch"] for e in RunState(str(tmp_path)).history] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "point, epochs_after, best_after", [("epoch_saved", 3, 2), ("epoch_committed", 4, 4)]
)
def test_a_kill_inside_an_epoch_commit_loses_nothing_committed(
    tmp_path, monkeypatch, point, epochs_after, best_after
):
    model = FakeModel()
    state = RunState(str(tmp_path))
    for epoch, value in ((1, 0.5), (2, 0.7), (3, 0.6)):
        _commit(state, model, epoch, value)

    def die(name, epoch=None):
        if name == point and epoch == 4:
            raise Killed

    monkeypatch.setattr(faults, "point", die)
    with pytest.raises(Killed):
        _commit(state, model, 4, 0.9)  # a new best, killed half-way
    monkeypatch.undo()
    resumed = RunState(str(tmp_path))
    resumed.recover()
    assert resumed.epoch == epochs_after
    assert resumed.best["epoch"] == best_after
    assert _read(tmp_path / "best.keras") == f"model {best_after}"
    assert _read(resumed.checkpoint) == f"weights {epochs_after}"
    assert sorted(os.listdir(tmp_path / "state")) == [
        f"epoch-{epochs_after}.weights.h5",
        "state.json",
    ]
    assert [e["epoch"] for e in resumed.history] == list(range(1, epochs_after + 1))


def test_an_epoch_is_on_the_disk_before_its_commit(tmp_path, monkeypatch):
    """After a lost machine (not only a killed process) no commit names a lost file."""
    events = record_disk_events(monkeypatch)
    state = RunState(str(tmp_path))
    _commit(state, FakeModel(), 1, 0.5)
    run = os.path.realpath(tmp_path)
    commit = events.index(("replace", f"{run}/state/state.json"))
    synced = [path for kind, path in events[:commit] if kind == "fsync"]
    assert f"{run}/state/epoch-1.weights.h5" in synced and f"{run}/state/best-1.keras" in synced
    # The commit's folder, then best.keras's, are synced after their renames.
    later = events[commit + 1 :]
    assert ("fsync", f"{run}/state") in later
    moved = later.index(("replace", f"{run}/best.keras"))
    assert ("fsync", run) in later[moved:]


def test_a_run_folder_in_use_is_refused_and_a_killed_holder_frees_it(tmp_path, capsys):
    from keras_swish.recipes.core.run_state import RunLock

    run = tmp_path / "run"
    held = RunLock(str(run))  # another process's, as far as the lock can tell
    try:
        assert main(["train", "mobilenet", "--epochs", "1", "--output", str(run)]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err.strip()
    assert f"is in use by another process (pid {os.getpid()})" in err, err
    assert len(err.splitlines()) == 1 and os.listdir(run) == [".lock"]  # nothing written
    # A holder killed with -9 leaves the file, not the lock.
    script = (
        "import os, signal, sys\n"
        "from keras_swish.recipes.core.run_state import RunLock\n"
        "RunLock(sys.argv[1]); print('locked', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(run)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == -signal.SIGKILL and "locked" in result.stdout, result.stderr
    RunLock(str(run)).release()


def test_a_file_system_without_locks_warns_and_runs(tmp_path, monkeypatch):
    import errno
    import fcntl

    from keras_swish.recipes.core.run_state import RunLock

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match=r"Cannot lock run folder .* \(No locks available\)"):
        lock = RunLock(str(tmp_path / "run"))
    assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
    lock.release()

    def broken(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):  # a real error keeps its traceback
        RunLock(str(tmp_path / "run"))


def test_an_unreadable_commit_record_stops_the_run_and_deletes_nothing(tmp_path):
    state = RunState(str(tmp_path))
    _commit(state, FakeModel(), 1, 0.5)
    (tmp_path / "state" / "state.json").write_text('{"epoch": 1, "checkp')  # a disk fault
    before = sorted(os.listdir(tmp_path / "state"))
    with pytest.raises(RuntimeError, match="cannot be read as JSON"):
        RunState(str(tmp_path))
    assert sorted(os.listdir(tmp_path / "state")) == before
    assert (tmp_path / "best.keras").read_text() == "model 1"


def test_temporary_files_of_a_killed_write_are_removed_on_resume(tmp_path):
    (tmp_path / ".tmp-abc-metrics.json").write_text("half")
    (tmp_path / ".tmp-final.keras").write_text("half")
    (tmp_path / ".tmp-spm-x1y2").mkdir()  # a vocabulary's training (data/text.py)
    (tmp_path / ".tmp-spm-x1y2" / "corpus.txt").write_text("half")
    (tmp_path / "metrics.json").write_text("{}")
    RunState(str(tmp_path)).recover()
    assert os.listdir(tmp_path) == ["metrics.json"]


def _tree(folder):
    """Every file under `folder` with its bytes."""
    return {
        os.path.join(d, n): open(os.path.join(d, n), "rb").read()
        for d, _, names in os.walk(folder)
        for n in names
    }


def test_more_epochs_are_refused_where_they_would_change_the_trained_schedule(tmp_path, capsys):
    # ResNet-20's SGD steps fall at 50 % and 75 % of the run: 2 epochs of 2 steps
    # drop the rate at step 4; 4 epochs would keep the peak there. (RMSProp
    # schedules count passes and continue: the kill test's `--epochs 4`.)
    from keras_swish.recipes.compare import plan

    compared = str(tmp_path / "cmp")
    run = os.path.join(compared, "resnet20-embedded", "relu", "seed0")  # compare's layout
    args = ["train", "resnet20", "--activation", "relu", "--steps-per-epoch", "2"]
    args += ["--output", run, "--verbose", "0"]
    assert main([*args, "--epochs", "2"]) == 0
    capsys.readouterr()
    before = _tree(run)
    assert main([*args, "--epochs", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "whose learning-rate schedule depends on its length" in err, err
    assert "at step 4 of the 4 it trained would be 0.1 instead of 0.01" in err, err
    assert len(err.splitlines()) == 1 and _tree(run) == before  # nothing written
    # compare refuses it before any run starts, as train does.
    flags = {"epochs": 4, "steps_per_epoch": 2}
    with pytest.raises(UsageError, match="depends on its length"):
        plan(["resnet20"], ("relu",), 1, (None,), compared, flags, {})
    assert len(plan(["resnet20"], ("relu",), 1, (None,), compared, dict(flags, epochs=2), {}))
    assert _tree(run) == before
    # The run's own command still finds it complete.
    assert main([*args, "--epochs", "2"]) == 0
    assert "already complete" in capsys.readouterr().out


def _killed_at(point, args):
    """`keras-swish ARGS` in a fresh process that SIGKILLs itself at fault point `point`."""
    return subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, **{faults.KILL_ENV: point}),
        timeout=900,
    )


def test_the_schedule_check_holds_before_the_first_metrics_json(tmp_path):
    # Killed right after its first commit, a run has no metrics.json yet (it
    # notes the steps of a pass there): state.json must be enough to refuse
    # more epochs of an SGD step schedule (a 1-epoch run drops its rate at
    # 50 % and 75 % of its pass; a 4-epoch one keeps the peak there).
    run = tmp_path / "run"
    killed = _killed_at(
        "epoch_committed:1",
        ["train", "resnet20", "--activation", "relu", "--epochs", "1", "--verbose", "0"]
        + ["--output", str(run)],
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run / "metrics.json").exists() and _state(run)["epoch"] == 1
    flags = {"activation": "relu", "epochs": 4, "output": str(run)}
    _, experiment, config = runner.resolve("resnet20", flags=flags)
    with pytest.raises(UsageError, match="depends on its length"):
        runner.check_output(experiment, config)


def _run_folder(run, name, flags, epochs_trained=0, drop=()):
    """A run folder's config.yaml (less the `drop` keys) and, if trained, metrics.json."""
    _, experiment, config = runner.resolve(name, flags=dict(flags, output=str(run)))
    run.mkdir(parents=True)
    text = runner.config_text(experiment, config)
    lines = [line for line in text.splitlines() if not any(key in line for key in drop)]
    (run / "config.yaml").write_text("\n".join(lines) + "\n")
    if epochs_trained:
        history = [{"epoch": e + 1, "val_top1": 0.5} for e in range(epochs_trained)]
        (run / "metrics.json").write_text(json.dumps({"completed": True, "epochs": history}))


def test_a_run_made_before_a_config_key_existed_resumes_with_its_old_behaviour(tmp_path):
    # config.yaml files written before data.color_distortion and
    # optimizer.decay_after_warmup existed: the keys' absence means False.
    added = ("color_distortion", "decay_after_warmup")
    run = tmp_path / "mobilenet"
    _run_folder(run, "mobilenet", {"epochs": 2}, drop=added)
    _, experiment, config = runner.resolve("mobilenet", flags={"epochs": 2, "output": str(run)})
    assert runner.check_output(experiment, config) is not None  # the same run
    # Inception-ResNet-v2 on ImageNet now has both on: such a run is another run.
    run = tmp_path / "irv2"
    _run_folder(run, "inception_resnet_v2/imagenet", {}, drop=added)
    flags = {"output": str(run)}
    _, experiment, config = runner.resolve("inception_resnet_v2/imagenet", flags=flags)
    with pytest.raises(UsageError) as error:
        runner.check_output(experiment, config)
    assert "data.color_distortion (False → True)" in str(error.value)
    assert "optimizer.decay_after_warmup (False → True)" in str(error.value)
    # ... and an auxiliary head and decayed biases: a run from before resumes without.
    run = tmp_path / "irv2-before-aux"
    drop = ("auxiliary_weight", "decay_biases")
    _run_folder(run, "inception_resnet_v2/imagenet", {}, drop=drop)
    flags = {"output": str(run)}
    with pytest.raises(UsageError) as error:
        runner.check_output(*runner.resolve("inception_resnet_v2/imagenet", flags=flags)[1:])
    assert "model.auxiliary_weight (0.0 → 0.4)" in str(error.value)
    assert "model.decay_biases (False → True)" in str(error.value)
    overrides = {"model": {"auxiliary_weight": 0.0, "decay_biases": False}}
    resolved = runner.resolve("inception_resnet_v2/imagenet", flags=flags, overrides=overrides)
    assert runner.check_output(*resolved[1:]) is not None
    # A Transformer run from before model.attention_dropout used model.dropout
    # there: it resumes with that rate, and is another run with the new default.
    _assert_resumes_only_with(
        tmp_path / "transformer", "model.attention_dropout", 0.1, r"\(0\.1 → 0\.0\)"
    )
    # One from before train.average_last reported best.keras: it resumes without
    # averaging, and is another run with the Transformer's 5.
    _assert_resumes_only_with(tmp_path / "no-average", "train.average_last", 0, r"\(0 → 5\)")


def _assert_resumes_only_with(run, key, old, change):
    """A Transformer run whose config.yaml lacks `key` resumes with `key=old` only."""
    section, name = key.split(".")
    _run_folder(run, "transformer_nmt", {"epochs": 2}, drop=(name,))
    flags = {"epochs": 2, "output": str(run)}
    with_old = runner.resolve("transformer_nmt", flags=flags, overrides={section: {name: old}})
    assert runner.check_output(*with_old[1:]) is not None
    _, experiment, config = runner.resolve("transformer_nmt", flags=flags)
    with pytest.raises(UsageError, match=re.escape(key) + " " + change):
        runner.check_output(experiment, config)


def test_a_run_resumes_from_a_moved_data_dir_but_not_on_other_data(tmp_path):
    # --data-dir says where this machine keeps the prepared data (moved, or
    # another worker's mount point); --data says which data.
    run = tmp_path / "run"
    _run_folder(run, "mobilenet/imagenet", {"data_dir": "/old/tfds"})
    flags = {"data_dir": "/new/tfds", "output": str(run)}
    _, experiment, config = runner.resolve("mobilenet/imagenet", flags=flags)
    assert runner.check_output(experiment, config) is not None  # the same run
    flags = dict(flags, data="folder:/images")
    _, experiment, config = runner.resolve("mobilenet/imagenet", flags=flags)
    with pytest.raises(UsageError, match=r"differs in data\.source .*folder:/images"):
        runner.check_output(experiment, config)


def test_a_resumed_run_with_a_new_data_dir_names_it_and_checks_the_data(tmp_path):
    run = tmp_path / "run"
    command = ["train", "mobilenet", "--epochs", "2", "--steps-per-epoch", "2", "--verbose", "0"]
    command += ["--output", str(run)]
    killed = _killed_at("epoch_committed:1", [*command, "--data-dir", str(tmp_path / "a")])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert f"data_dir: {tmp_path / 'a'}" in (run / "config.yaml").read_text()
    assert main([*command, "--data-dir", str(tmp_path / "b")]) == 0
    # config.yaml names the new folder (what `evaluate RUN` reads).
    assert f"data_dir: {tmp_path / 'b'}" in (run / "config.yaml").read_text()
    assert json.loads((run / "metrics.json").read_text())["completed"]
    assert_loads_anywhere(run)  # a fresh process, on the data config.yaml now names

    # Data of another size under the new folder: refused before anything is written.
    class State:
        record = {"steps_per_pass": 62}

    class Data:
        steps_per_pass = 61

    _, _, config = runner.resolve("mobilenet", flags={"data_dir": "/new", "output": "x"})
    old = {"data.data_dir": "/old"}
    with pytest.raises(UsageError, match="a pass over it is 61 steps, the run's was 62"):
        runner._check_same_data(old, config, State, {}, Data)
    Data.steps_per_pass = 62
    runner._check_same_data(old, config, State, {}, Data)  # the same size: resumes


def test_a_run_resumed_on_changed_files_under_the_same_source_is_refused(tmp_path, capsys):
    # The files of a folder: source changed between a stop and the rerun (an
    # image added): the order of a pass and where a resumed pass starts would
    # silently mix two datasets. Refused, exit 2, the run left as it was.
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def add_images(split, count, start=0):
        for name in ("cat", "dog"):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(start, start + count):
                image = rng.integers(0, 255, size=(36, 36, 3), dtype=np.uint8)
                tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(image))

    add_images("train", 4)
    add_images("validation", 2)
    run = tmp_path / "run"
    command = ["train", "mobilenet/imagenet", "--data", f"folder:{tmp_path / 'images'}"]
    command += ["--batch-size", "4", "--image-size", "32", "--verbose", "0"]
    command += ["--output", str(run)]
    assert main([*command, "--epochs", "1"]) == 0
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.json")}
    state = (run / "state" / "state.json").read_bytes()
    capsys.readouterr()

    add_images("train", 1, start=4)  # 10 training images: still 2 steps of 4
    assert main([*command, "--epochs", "2"]) == 2
    message = capsys.readouterr().err
    assert "is not the data this run trained on" in message, message
    assert "found: folder:" in message and "10 training" in message and "8 training" in message
    assert {name: (run / name).read_bytes() for name in before} == before
    assert (run / "state" / "state.json").read_bytes() == state


def test_the_workers_fingerprint_leaves_out_locations_only(tmp_path):
    class Data:
        summary = "4000 training images"

    def fingerprint(flags, precision="float32", data=Data):
        _, experiment, config = runner.resolve("mobilenet", flags=flags)
        return runner._run_fingerprint(experiment, config, precision, data)

    base = fingerprint({"output": "/a", "data_dir": "/x"})
    assert base == fingerprint({"output": "/b", "data_dir": "/y"})
    assert base != fingerprint({"output": "/a", "data_dir": "/x", "seed": 1})
    assert base != fingerprint({"output": "/a", "data_dir": "/x"}, precision="mixed_float16")
    # Asked otherwise, resolved alike: `auto` beside the strategy or precision it picks.
    assert base == fingerprint({"strategy": "multi_worker", "precision": "float32"})

    class Other:
        summary = "3999 training images"

    assert base != fingerprint({"output": "/a", "data_dir": "/x"}, data=Other)
    vocabularies = [type("Text", (Data,), {"vocabulary_digest": d}) for d in ("ab", "cd")]
    assert len({fingerprint({}, data=v) for v in vocabularies} | {fingerprint({})}) == 3


def test_a_finished_run_without_its_checkpoints_is_not_continued(tmp_path):
    # A search prunes a finished child's state/: more epochs would train from
    # epoch 1 again over its history and best.keras.
    run = tmp_path / "child"
    _run_folder(run, "mobilenet", {"epochs": 2}, epochs_trained=2)
    flags = {"epochs": 4, "output": str(run)}
    _, experiment, config = runner.resolve("mobilenet", flags=flags)
    with pytest.raises(UsageError, match="without its resume checkpoints"):
        runner.check_output(experiment, config)


def test_going_back_to_a_finished_runs_epochs_rewrites_its_config(tmp_path, capsys):
    # Killed after config.yaml said 6 epochs and before metrics.json said
    # anything new: the run is complete at 4, and config.yaml says 4 again.
    run = tmp_path / "run"
    _run_folder(run, "mobilenet", {"epochs": 6}, epochs_trained=4)
    assert main(["train", "mobilenet", "--epochs", "4", "--output", str(run)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert "epochs: 4" in (run / "config.yaml").read_text()


def test_final_keras_is_on_the_disk_before_the_run_is_complete(tmp_path, monkeypatch):
    """After a lost machine a run marked `completed` never points to a lost final.keras."""
    events = record_disk_events(monkeypatch)
    run = tmp_path / "run"
    args = ["train", "mobilenet", "--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0"]
    assert main([*args, "--output", str(run)]) == 0
    monkeypatch.undo()
    assert json.loads((run / "metrics.json").read_text())["completed"]
    run = os.path.realpath(run)
    final = events.index(("replace", f"{run}/final.keras"))
    completed = max(i for i, e in enumerate(events) if e == ("replace", f"{run}/metrics.json"))
    assert ("fsync", f"{run}/.tmp-final.keras") in events[:final]
    assert ("fsync", run) in events[final + 1 : completed]


def test_a_resume_that_cannot_load_the_optimizer_state_stops(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "mobilenet", "--steps-per-epoch", "2", "--output", str(run), "--verbose", "0"]
    assert main([*args, "--epochs", "1"]) == 0
    state = json.loads((run / "state" / "state.json").read_text())
    assert state["optimizer_iterations"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["precision"] == "float32"
    # Trained with loss scaling (precision auto on a GPU), resumed here without it.
    (run / "metrics.json").write_text(json.dumps(dict(metrics, precision="mixed_float16")))
    capsys.readouterr()
    before = _tree(run)
    assert main([*args, "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run trained in mixed_float16; here precision auto is float32" in err, err
    assert len(err.splitlines()) == 1 and _tree(run) == before
    # Whatever else leaves Keras's optimizer state unloaded stops the run.
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "state" / "state.json").write_text(json.dumps(dict(state, optimizer_iterations=7)))
    with pytest.raises(RuntimeError, match="left the optimizer at step 2, not at the committed 7"):
        main([*args, "--epochs", "2"])


def test_keras_skips_an_optimizer_state_it_cannot_match(tmp_path):
    """Why the runner checks the step after a restore: Keras only warns (keras 3.15)."""
    import keras
    import numpy as np

    def model(policy):
        keras.config.set_dtype_policy(policy)
        try:
            m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            m.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        finally:
            keras.config.set_dtype_policy("float32")
        return m

    trained = model("float32")
    trained.fit(np.ones((8, 3)), np.ones((8, 2)), batch_size=4, verbose=0)
    path = str(tmp_path / "epoch-1.weights.h5")
    trained.save_weights(path)
    resumed = model("mixed_float16")  # a LossScaleOptimizer: other variables
    resumed.optimizer.build(resumed.trainable_variables)
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        resumed.load_weights(path)
    state = RunState(str(tmp_path), write=False)
    state.record.update(epoch=1, checkpoint="epoch-1.weights.h5", optimizer_iterations=2)
    with pytest.raises(RuntimeError, match="left the optimizer at step 0, not at the committed 2"):
        runner._check_restored(resumed, state)


def test_a_worker_that_does_not_write_still_counts_the_committed_epochs(tmp_path):
    """A non-chief worker's messages ("lost during epoch 3; 2 finished epoch(s) are
    committed") name the epochs the chief committed, and it writes nothing."""
    state = RunState(str(tmp_path / "run"), write=False)
    assert state.commit_epoch(None, 1, {"epoch": 1, "val_top1": 0.5}, "val_top1")
    assert not state.commit_epoch(None, 2, {"epoch": 2, "val_top1": 0.4}, "val_top1")
    assert state.epoch == 2 and [e["epoch"] for e in state.history] == [1, 2]
    assert state.best == {"epoch": 1, "monitor": "val_top1", "value": 0.5}
    assert not (tmp_path / "run").exists()


ARGS = ["train", "mobilenet", "--epochs", "3", "--steps-per-epoch", "4", "--verbose", "2"]


def _train(run, *extra, kill_at=None):
    return train_process(ARGS, run, *extra, kill_at=kill_at)


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def _state(run):
    return json.loads((run / "state" / "state.json").read_text())


def _epochs_run(result):
    return [
        int(line.split()[1].split("/")[0])
        for line in result.stdout.splitlines()
        if line.startswith("Epoch ")
    ]


def _tensorboard_steps(folder, tag):
    """The steps of every `tag` point in a TensorBoard log folder's event files."""
    import tensorflow as tf

    steps = []
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_kill_9_at_every_stage_then_the_same_command_finishes_the_run(tmp_path):
    run = tmp_path / "run"
    trained = []

    # Killed after epoch 2's files are written, before its commit: epoch 2 is redone.
    result = _train(run, kill_at="epoch_saved:2")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    trained += _epochs_run(result)
    assert _state(run)["epoch"] == 1 and _metrics(run)["completed"] is False
    assert [e["epoch"] for e in _metrics(run)["epochs"]] == [1]
    assert (run / "best.keras").is_file()
    # TensorBoard has the committed epoch's points, and none of the epoch that
    # is trained again (they would be drawn twice).
    for folder in ("train", "validation"):
        assert _tensorboard_steps(run / "logs" / folder, "epoch_top1") == [0], folder
    # Nor its point of the validation by optimizer steps (Keras writes it when
    # validation ends, before the commit).
    evaluations = run / "logs" / "validation"
    assert _tensorboard_steps(evaluations, "evaluation_top1_vs_iterations") == [4]

    # Killed just after epoch 3's commit: nothing of epoch 3 may be lost.
    result = _train(run, kill_at="epoch_committed:3")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert "Resuming at epoch 2 of 3." in result.stdout
    trained += _epochs_run(result)
    assert _state(run)["epoch"] == 3

    # Killed in the final evaluation, then while saving final.keras, then before
    # the run is marked complete: no epoch is trained again.
    for point in ("final_evaluation", "saving_final", "before_complete"):
        result = _train(run, kill_at=point)
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        assert _epochs_run(result) == [], point
        metrics = _metrics(run)
        assert metrics["completed"] is False, point
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3], point  # rolled forward
        assert (run / "final.keras").is_file() == (point == "before_complete"), point

    result = _train(run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _epochs_run(result) == []
    assert trained == [1, 2, 2, 3]  # only the epoch in progress at a kill ran twice

    metrics = _metrics(run)
    assert metrics["completed"] is True
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert [s["started_at_epoch"] for s in metrics["sessions"]] == [1, 2]
    values = [e["val_top1"] for e in metrics["epochs"]]
    best_epoch = values.index(max(values)) + 1
    assert metrics["best"]["epoch"] == best_epoch and metrics["best"]["model"] == "best.keras"
    # best.keras, loaded back and evaluated, is that epoch's model.
    assert metrics["best"]["validation"]["val_top1"] == pytest.approx(max(values), abs=1e-6)
    assert set(metrics["best"]["test"]) >= {"test_top1", "test_top5", "test_loss"}
    assert metrics["last"]["epoch"] == 3 and metrics["last"]["model"] == "final.keras"
    assert not [n for n in os.listdir(run) if n.startswith(".tmp")]
    assert sorted(os.listdir(run / "state")) == ["epoch-3.weights.h5", "state.json"]
    for name in ("config.yaml", "metrics.json", "best.keras", "final.keras"):
        assert stat.S_IMODE(os.stat(run / name).st_mode) == 0o644, name  # umask 022, not 0600
    for folder in ("train", "validation", "beta"):
        assert os.listdir(run / "logs" / folder), folder
    # One point per epoch, none drawn twice: epoch 3's were lost with the kill
    # right after its commit (milliseconds before they are written).
    for folder in ("train", "validation"):
        assert _tensorboard_steps(run / "logs" / folder, "epoch_top1") == [0, 1], folder
    assert _tensorboard_steps(evaluations, "evaluation_top1_vs_iterations") == [4, 8]
    assert f"TensorBoard logs: {run / 'logs'}" in result.stdout

    assert_loads_anywhere(run)

    # The same run, its folder spelled another way: nothing to do.
    (tmp_path / "elsewhere").mkdir()
    for spelled in (f"{tmp_path}/elsewhere/../run", f"{tmp_path}/./run/"):
        again = _train(spelled)
        assert again.returncode == 0 and "already complete" in again.stdout, again.stdout
    # More epochs continue it: epoch 4 only, also after a kill just after
    # config.yaml was rewritten for 4 epochs (metrics.json still says complete).
    killed = _train(run, "--epochs", "4", kill_at="configured")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "epochs: 4" in (run / "config.yaml").read_text() and _metrics(run)["completed"]
    longer = _train(run, "--epochs", "4")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert _epochs_run(longer) == [4]
    metrics = _metrics(run)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4] and metrics["completed"]
    assert "epochs: 4" in (run / "config.yaml").read_text()
    # A longer run stopped before it finished (killed in epoch 5 of 6) can be
    # taken back to the epochs it had: complete again, with its test metrics.
    killed = _train(run, "--epochs", "6", kill_at="epoch_saved:5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "epochs: 6" in (run / "config.yaml").read_text() and not _metrics(run)["completed"]
    back = _train(run, "--epochs", "4")
    assert back.returncode == 0, back.stderr[-3000:]
    assert _epochs_run(back) == []
    metrics = _metrics(run)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4] and metrics["completed"]
    assert metrics["best"]["test"]["test_top1"] > 0 and metrics["last"]["epoch"] == 4
    assert "epochs: 4" in (run / "config.yaml").read_text()
    # Epoch 5's files were written before the kill: the models are epoch 4's again.
    assert_loads_anywhere(run)
    # Fewer epochs than it trained, or any other change, is another run.
    shorter = _train(run, "--epochs", "2")
    assert shorter.returncode == 2 and "would shorten it" in shorter.stderr
    other = _train(run, "--epochs", "4", "--seed", "3")
    assert other.returncode == 2 and "train.seed (0 → 3)" in other.stderr
    # One validation event file per training session: the evaluation points go
    # through Keras's own writer (TensorBoard follows only a folder's newest file
    # of a live run: a second writer's points would not be shown).
    sessions = _metrics(run)["sessions"]
    assert len(os.listdir(run / "logs" / "validation")) == len(sessions) == 4


def test_a_diverged_run_writes_standard_json(tmp_path, capsys):
    # NaN losses: every JSON file of the run folder is still JSON (NaN → null;
    # Python's bare NaN is refused by JavaScript and strict parsers).
    run = tmp_path / "run"
    args = ["train", "mobilenet", "--epochs", "2", "--steps-per-epoch", "2", "--verbose", "0"]
    assert main([*args, "--set", "optimizer.learning_rate=1e30", "--output", str(run)]) == 0
    files = sorted(run.rglob("*.json"))
    assert {"metrics.json", "state.json"} <= {f.name for f in files}, files
    for path in files:
        strict_json(path.read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    last = metrics["epochs"][-1]
    assert last["loss"] is None and last["val_loss"] is None and metrics["completed"]


def test_a_run_folder_without_a_model_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="holds no model yet"):
        runner.model_path(str(tmp_path))


def test_a_deep_keras_error_keeps_its_traceback(tmp_path):
    # A run folder whose best.keras is not a Keras file: Keras's own error
    # must reach the user as a traceback, not as a one-line usage message.
    _, experiment, config = runner.resolve("mobilenet")
    (tmp_path / "config.yaml").write_text(runner.config_text(experiment, config))
    (tmp_path / "best.keras").write_bytes(b"not a zip file")
    with pytest.raises(Exception) as error:
        main(["evaluate", str(tmp_path)])
    assert not isinstance(error.value, UsageError)
    # Raised where Keras reads the file, not somewhere else in `evaluate`.
    raised_in = error.traceback[-1].path.as_posix()
    assert "/keras/src/saving/" in raised_in or "zipfile" in raised_in, raised_in


def test_console_script_hides_tensorflow_start_up_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_swish_cli", "recipes"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mobilenet/imagenet" in result.stdout
    for noise in ("I0000", "E0000", "cuInit", "absl::InitializeLog", "oneDNN"):
        assert noise not in result.stderr, result.stderr
    # A run started by compare or launch inherits the quiet setting, not a "user's" level.
    child = subprocess.run(
        [sys.executable, "-m", "keras_swish_cli", "recipes"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(env, TF_CPP_MIN_LOG_LEVEL="3", KERAS_SWISH_QUIET_TF="1"),
        timeout=300,
    )
    assert child.returncode == 0 and "I0000" not in child.stderr, child.stderr
    verbose = subprocess.run(
        [sys.executable, "-m", "keras_swish_cli", "--verbose", "recipes"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert verbose.returncode == 0 and "mobilenet/imagenet" in verbose.stdout


def test_importing_keras_swish_registers_every_class_the_recipes_save():
    # A class registered only when a recipe module is imported would make that
    # recipe's .keras files fail to load in a process that imports keras_swish.
    script = (
        "import keras, keras_swish\n"
        "names = lambda: {k for k in keras.saving.get_custom_objects() if 'keras_swish' in k}\n"
        "before = names()\n"
        "import keras_swish.recipes.configs\n"
        "print(sorted(names() - before)); print(len(before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    missing, count = result.stdout.strip().splitlines()[-2:]
    assert missing == "[]" and int(count) >= 7


def test_a_worker_removes_the_scratch_folders_whose_lock_nobody_holds(tmp_path, monkeypatch):
    import tempfile

    from keras_swish.recipes.core.run_state import RunLock

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("keras-swish-worker-1-dead", "keras-swish-worker-2-live", "keras-swish-worker-3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vocab.model").write_text("x")
    (tmp_path / "keras-swish-worker-1-dead" / ".lock").write_text("1")  # its process is gone
    live = RunLock(str(tmp_path / "keras-swish-worker-2-live"))  # another open file: held
    (tmp_path / "unrelated").mkdir()
    try:
        scratch, lock = runner._worker_scratch()
        try:
            name = os.path.basename(scratch)
            assert name.startswith(f"keras-swish-worker-{os.getpid()}-")
            assert sorted(os.listdir(tmp_path)) == sorted(
                ["keras-swish-worker-2-live", "keras-swish-worker-3", "unrelated", name]
            )  # the held one, and one without a lock file (not judged), stay
            # A second worker starting now leaves the first's folder alone.
            other, other_lock = runner._worker_scratch()
            assert os.path.isdir(scratch) and os.path.isdir(other)
            other_lock.release()
        finally:
            lock.release()
        # Released (its worker ended without removing it): the next worker removes it.
        again, again_lock = runner._worker_scratch()
        again_lock.release()
        assert not os.path.exists(scratch) and not os.path.exists(other)
        assert os.path.isdir(tmp_path / "keras-swish-worker-2-live")
    finally:
        live.release()
