"""MultiWorkerMirroredStrategy for real: worker processes on 127.0.0.1 with TF_CONFIG.

The guard test pins the Keras functions that `patch_multi_worker_fit` replaces;
the others start real processes (slow, but run by .ci/run) and clean up.
"""

import hashlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_swish.recipes.core.run_state import RunLock
from keras_swish.recipes.launch import free_ports, tf_config
from tests.recipes.run_checks import alive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["mobilenet", "--epochs", "3", "--steps-per-epoch", "4", "--verbose", "2"]

# sha256 of the source of each Keras function the patch replaces or calls, as of
# Keras 3.15.1 (keras/src/backend/tensorflow/trainer.py). A change means Keras
# changed them: re-check keras-team/keras#20585 and `patch_multi_worker_fit`, then
# update these pins (or drop the patch if upstream fixed fit).
PINNED = {
    "TensorFlowTrainer._maybe_symbolic_build": "92a504f5eba9b29f",
    "reduce_per_replica": "2e7d54b1e6edc29a",
    "_collective_all_reduce_multi_worker": "0302369d850e6694",
}


def _sources():
    from keras.src.backend.tensorflow import trainer

    import keras_swish  # noqa: F401

    patched = getattr(trainer, "_keras_swish_multi_worker_patch", False)
    functions = {
        "TensorFlowTrainer._maybe_symbolic_build": trainer.TensorFlowTrainer._maybe_symbolic_build,
        "reduce_per_replica": trainer.reduce_per_replica,
        "_collective_all_reduce_multi_worker": trainer._collective_all_reduce_multi_worker,
    }
    if patched:  # the originals, kept by the wrappers' closures
        build, reduce = (
            functions["TensorFlowTrainer._maybe_symbolic_build"],
            functions["reduce_per_replica"],
        )
        functions["TensorFlowTrainer._maybe_symbolic_build"] = _closure(build, "keras_build")
        functions["reduce_per_replica"] = _closure(reduce, "keras_reduce")
    return {
        name: hashlib.sha256(inspect.getsource(f).encode()).hexdigest()[:16]
        for name, f in functions.items()
    }


def _closure(function, name):
    cells = dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))
    return cells[name].cell_contents


def test_the_patched_keras_functions_are_the_pinned_ones():
    import keras

    changed = {k: v for k, v in _sources().items() if PINNED[k] != v}
    assert not changed, (
        f"Keras {keras.__version__} changed {', '.join(changed)} in "
        "keras/src/backend/tensorflow/trainer.py: re-check keras-team/keras#20585 and "
        f"keras_swish.activations.patch_multi_worker_fit, then update PINNED ({changed})."
    )


def test_the_patch_is_idempotent_and_changes_nothing_outside_multi_worker():
    import keras
    import tensorflow as tf

    from keras_swish.activations import patch_multi_worker_fit

    trainer = patch_multi_worker_fit()
    build, reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica
    assert patch_multi_worker_fit() is trainer
    assert trainer.TensorFlowTrainer._maybe_symbolic_build is build
    assert trainer.reduce_per_replica is reduce
    # One process: the same result as Keras's own, for logs and batches alike.
    strategy = tf.distribute.get_strategy()
    logs = {"loss": tf.constant(2.0), "y": tf.constant([[1.0, 2.0]])}
    keras_reduce = _closure(reduce, "keras_reduce")
    for reduction in ("mean", "auto", "sum", "concat", "first"):
        mine, theirs = reduce(logs, strategy, reduction), keras_reduce(logs, strategy, reduction)
        for key in logs:
            np.testing.assert_array_equal(mine[key], theirs[key])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="swish_beta")])
    model.compile("sgd", "mse")
    history = model.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def _workers(run, extra=(), tmpdir=None, count=2, outputs=None, train=TRAIN, extras=None):
    """Starts `count` workers of `keras-swish train` directly; returns (processes, logs).

    All write to `run`, or each to its own of `outputs` (a folder not shared);
    `extras`: each worker's own arguments after `extra`.
    """
    ports = free_ports(count)
    processes, logs = [], []
    for index in range(count):
        output = outputs[index] if outputs else run
        env = dict(os.environ, TF_CONFIG=tf_config(ports, index), PYTHONUNBUFFERED="1")
        if tmpdir:
            env["TMPDIR"] = str(tmpdir)
        log = run.parent / f"{run.name}-worker-{index}.log"
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "keras_swish_cli",
                    "train",
                    *train,
                    *extra,
                    *(extras[index] if extras else ()),
                    "--output",
                    str(output),
                ],
                cwd=ROOT,
                env=env,
                stdout=open(log, "w"),
                stderr=subprocess.STDOUT,
            )
        )
    return processes, logs


def _wait(processes, timeout=900):
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [p.returncode for p in processes]


def _checksum(log):
    lines = [x for x in log.read_text().splitlines() if "Trainable weights checksum" in x]
    assert len(lines) == 1, log.read_text()[-3000:]
    return lines[0].rsplit(" ", 1)[1]


def _final_weights(run):
    import keras

    import keras_swish  # noqa: F401

    return [w.numpy() for w in keras.models.load_model(run / "final.keras").weights]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """An uninterrupted two-worker run of TRAIN; its workers' temp dirs are watched."""
    base = tmp_path_factory.mktemp("multi_worker")
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    run = base / "run"
    processes, logs = _workers(run, tmpdir=tmpdir)
    codes = _wait(processes)
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    return run, logs, tmpdir


@pytest.mark.slow
def test_two_workers_train_the_same_model_and_only_the_chief_writes(two_workers):
    run, logs, tmpdir = two_workers
    chief, other = (log.read_text() for log in logs)
    assert "Strategy: multi_worker (CollectiveAllReduceStrategy), 2 replica(s)" in chief
    assert _checksum(logs[0]) == _checksum(logs[1])  # weights and β identical on both
    assert "Worker done; the chief writes the run folder" in other
    # Each worker decodes its half of every global batch (not all of it).
    assert "Input: pipeline 1 of 2, decodes and augments 32 of the 64 examples" in chief
    assert "Input: pipeline 2 of 2, decodes and augments 32 of the 64 examples" in other
    assert sorted(os.listdir(run)) == [
        ".lock",  # the chief's: it alone writes
        "best.keras",
        "config.yaml",
        "final.keras",
        "logs",
        "metrics.json",
        "state",
    ]
    assert os.listdir(tmpdir) == []  # the other worker's scratch folder is gone
    beta_events = os.listdir(run / "logs" / "beta")
    assert len([f for f in beta_events if "tfevents" in f]) == 1  # BetaMonitor writes once
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["strategy"] == "multi_worker"
    assert (metrics["replicas"], metrics["global_batch_size"]) == (2, 64)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_same_global_batches(two_workers, tmp_path):
    # One process with two replicas (two logical CPUs) sees the same global
    # batches split the same way: BatchNorm statistics are per replica in both.
    run, _, _ = two_workers
    one = tmp_path / "mirrored"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_swish_cli",
            "train",
            *TRAIN,
            "--output",
            str(one),
            "--strategy",
            "mirrored",
            "--set",
            "train.cpu_devices=2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for a, b in zip(_final_weights(run), _final_weights(one), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def _worker_pid(parent, index):
    """The pid of the child of `parent` whose TF_CONFIG is task `index`."""
    children = open(f"/proc/{parent}/task/{parent}/children").read().split()
    for pid in children:
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"TF_CONFIG="):
                if json.loads(item[len("TF_CONFIG=") :])["task"]["index"] == index:
                    return int(pid)
    raise AssertionError(f"no worker {index} under {parent}")


@pytest.mark.slow
def test_kill_9_one_worker_then_relaunch_resumes_and_matches(two_workers, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "keras_swish_cli",
        "launch",
        "--workers",
        "2",
        *TRAIN,
        "--output",
        str(run),
    ]
    tmpdir = tmp_path / "tmp"  # the killed worker's scratch folder goes on relaunch
    tmpdir.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(tmpdir))
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 600
        state = run / "state" / "state.json"
        while not (state.exists() and json.loads(state.read_text())["epoch"] >= 1):
            assert first.poll() is None and time.monotonic() < deadline, "no epoch committed"
            time.sleep(0.3)
        os.kill(_worker_pid(first.pid, 1), signal.SIGKILL)  # mid-epoch 2
        out, err = first.communicate(timeout=300)  # not a hang
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0
    assert "worker 1 failed" in err or "A peer worker was lost" in err, err[-3000:]
    committed = json.loads(state.read_text())["epoch"]
    assert 1 <= committed < 3

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Resuming at epoch {committed + 1} of 3." in second.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"]
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert [s["started_at_epoch"] for s in metrics["sessions"]] == [1, committed + 1]
    # (TensorFlow's own temporary files of the killed processes stay: autograph's.)
    assert not [name for name in os.listdir(tmpdir) if name.startswith("keras-swish-worker-")]
    uninterrupted, _, _ = two_workers
    for a, b in zip(_final_weights(run), _final_weights(uninterrupted), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_a_hung_worker_stops_the_others_with_the_resume_message(tmp_path):
    # A worker that stops answering (SIGSTOP: alive, holding its sockets, as a
    # process stuck in a driver call) must not leave the others waiting forever
    # in a collective: TensorFlow's coordination service misses its heartbeats
    # (10 s) and aborts the collectives; the runner says how to resume.
    run = tmp_path / "run"
    processes, logs = _workers(run, train=["mobilenet", "--epochs", "40", "--steps-per-epoch", "4"])
    try:
        state = run / "state" / "state.json"
        deadline = time.monotonic() + 600
        while not (state.exists() and json.loads(state.read_text())["epoch"] >= 1):
            assert processes[0].poll() is None and time.monotonic() < deadline, "no epoch"
            time.sleep(0.3)
        os.kill(processes[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        code = processes[0].wait(timeout=180)
        waited = time.monotonic() - stopped
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()  # a stopped process dies of SIGKILL too
            process.wait()
    chief = logs[0].read_text()
    assert code == 1, chief[-3000:]
    assert "A peer worker was lost during epoch" in chief, chief[-3000:]
    assert "Restart every worker with the same command to resume." in chief
    committed = json.loads(state.read_text())["epoch"]
    assert 1 <= committed < 40 and waited < 180
    assert not json.loads((run / "metrics.json").read_text())["completed"]


@pytest.mark.slow
def test_workers_that_read_different_run_folders_are_refused(tmp_path):
    # Each worker with its own (local, not shared) folder: a first run starts
    # at epoch 0 on both; run longer, the chief resumes from its committed
    # epoch and the other worker, whose folder holds nothing, from epoch 0.
    outputs = [tmp_path / "chief", tmp_path / "other"]
    processes, logs = _workers(tmp_path / "first", ("--epochs", "1"), outputs=outputs)
    assert _wait(processes) == [0, 0], [log.read_text()[-3000:] for log in logs]
    processes, logs = _workers(tmp_path / "longer", ("--epochs", "2"), outputs=outputs)
    assert _wait(processes) == [2, 2], [log.read_text()[-3000:] for log in logs]
    for index, log in enumerate(logs):
        text = log.read_text()
        assert "The workers resume from different points: this one from epoch " in text
        assert f"from epoch {1 - index} " in text and "mean is epoch 0.5" in text
        assert "Traceback" not in text
    metrics = json.loads((outputs[0] / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]  # nothing trained
    assert not os.listdir(outputs[1])


@pytest.mark.slow
def test_workers_started_with_different_settings_are_refused(tmp_path):
    # Hand-started workers whose commands differ (or whose `precision: auto`
    # resolves differently) would all-reduce different computations.
    run = tmp_path / "run"
    extras = [(), ("--set", "train.label_smoothing=0.2")]
    processes, logs = _workers(run, ("--epochs", "1"), extras=extras)
    assert _wait(processes) == [2, 2], [log.read_text()[-3000:] for log in logs]
    fingerprints = []
    for log in logs:
        text = log.read_text()
        assert "The workers run different settings: this one's config, precision and data " in text
        assert "precision float32" in text and "Traceback" not in text
        fingerprints.append(text.split("(fingerprint ", 1)[1][:16])
    assert fingerprints[0] != fingerprints[1]
    assert not run.exists()  # the chief made it for its lock and removed it


def test_launch_bad_input_exits_2(capsys):
    from keras_swish.cli import main

    assert main(["launch", "--workers", "1", "mobilenet"]) == 2
    assert "--workers must be at least 2" in capsys.readouterr().err
    # Every way to name another strategy: each worker would be its own chief.
    for extra, named in (
        (["--strategy", "mirrored"], "--strategy"),
        (["--strategy=mirrored"], "--strategy=mirrored"),
        (["--strat", "mirrored"], "--strat"),  # argparse takes a prefix
        (["--tpu", "local"], "--tpu"),
        (["--set", "train.strategy=mirrored"], "train.strategy=mirrored"),
        (["--set=train.tpu=local"], "--set=train.tpu=local"),
    ):
        assert main(["launch", "--workers", "2", "mobilenet", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert "launch sets the strategy" in err and f"leave out {named}." in err, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_launcher_takes_its_workers_with_it(sig, tmp_path):
    """Killing `launch` (kill -9, or a CI job's SIGTERM) stops its workers: none
    keeps training and holding the run folder's lock for a rerun to trip on."""
    run = tmp_path / "run"
    # Far more epochs than the test waits for: the workers cannot end by themselves.
    train = ["mobilenet", "--epochs", "1000", "--steps-per-epoch", "4", "--output", str(run)]
    with open(tmp_path / "launcher.log", "w") as log:  # not a pipe the workers would hold
        launcher = subprocess.Popen(
            [sys.executable, "-m", "keras_swish_cli", "launch", "--workers", "2", *train],
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    workers = []
    try:
        deadline = time.monotonic() + 300
        state = run / "state" / "state.json"
        while not (state.exists() and json.loads(state.read_text())["epoch"] >= 1):
            assert launcher.poll() is None and time.monotonic() < deadline, "no epoch committed"
            time.sleep(0.2)
        workers = [_worker_pid(launcher.pid, index) for index in range(2)]
        launcher.send_signal(sig)
        launcher.wait(timeout=60)
        # SIGTERM: the launcher stops its workers itself and exits 128 + 15.
        expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + signal.SIGTERM
        assert launcher.returncode == expected, (tmp_path / "launcher.log").read_text()[-2000:]
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"orphans: {[p for p in workers if alive(p)]}"
            time.sleep(0.2)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    RunLock(str(run)).release()  # free for the same command again
    assert json.loads(state.read_text())["epoch"] < 1000


@pytest.mark.slow
def test_workers_train_the_same_translation_model(tmp_path):
    # Bucketed batches of varying size and a vocabulary the data step writes: each
    # worker tokenizes with it (the chief keeps its SentencePiece model in the run,
    # the other worker trains its own copy in a scratch folder it removes): the same
    # vocabulary, the same batches, the same weights. (`launch` starts workers as
    # these are started, recipe-blind: its tests run MobileNet.)
    run, tmpdir = tmp_path / "run", tmp_path / "tmp"
    tmpdir.mkdir()
    train = ["transformer_nmt", "--epochs", "1", "--steps-per-epoch", "3", "--verbose", "2"]
    processes, logs = _workers(run, tmpdir=tmpdir, train=train)
    assert _wait(processes) == [0, 0], [log.read_text()[-3000:] for log in logs]
    assert _checksum(logs[0]) == _checksum(logs[1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["strategy"] == "multi_worker"
    assert {"val_bleu", "val_bleu_intl"} <= set(metrics["best"]["validation"])
    assert (run / "sentencepiece.model").is_file()
    assert os.listdir(tmpdir) == []  # no scratch folder left
