"""Checkpoint averaging (`train.average_last`): Vaswani et al.'s average of the last checkpoints."""

import json
import os
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from keras_swish.recipes.core import faults, runner
from keras_swish.recipes.core.run_state import RunState, load_model_weights, save_model_weights
from tests.recipes.run_checks import (
    ROOT,
    assert_is_the_mean_of_kept_weights,
    assert_loads_anywhere,
    kept_weights,
    train_process,
)


class Killed(Exception):
    pass


def _model(units=2):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(units),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5, seed=1),
        ]
    )
    model.compile("adam", "mse")
    return model


def _commit(state, model, epoch, average_last):
    """Commits epoch `epoch` with every float weight equal to the epoch number."""
    for variable in model.weights:
        variable.assign(np.full(variable.shape, epoch, variable.dtype))
    entry = {"epoch": epoch, "val_top1": 0.1 * epoch}
    state.commit_epoch(model, epoch, entry, "val_top1", average_last)


def _commit_killed_at(point, state, model, epoch, average_last, monkeypatch):
    """`_commit`, killed (an exception) at fault point `point` of `epoch`."""

    def die(name, at=None):
        if name == point and at == epoch:
            raise Killed

    monkeypatch.setattr(faults, "point", die)
    with pytest.raises(Killed):
        _commit(state, model, epoch, average_last)
    monkeypatch.undo()


def _kept(run):
    return sorted(n for n in os.listdir(run / "state") if n.startswith("average-"))


def test_the_last_epochs_weights_are_kept_and_averaged(tmp_path):
    model = _model()
    state = RunState(str(tmp_path))
    for epoch in range(1, 6):
        _commit(state, model, epoch, average_last=3)
    assert _kept(tmp_path) == ["average-3.h5", "average-4.h5", "average-5.h5"]
    assert RunState(str(tmp_path)).averaged_epochs() == [3, 4, 5]  # a new process sees them
    fresh = _model()
    assert state.average_into(fresh, 3) == [3, 4, 5]
    for variable in fresh.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), 4.0)
    assert state.average_into(fresh, 5) == [5]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh.weights[0]), 5.0)
    # Only the model's variables: no optimizer state (Adam's is twice the weights).
    with h5py.File(tmp_path / "state" / "average-5.h5") as f:
        assert len(f) == len(model.weights)
        assert [f[str(i)].attrs["path"] for i in range(len(f))] == [v.path for v in model.weights]


def test_the_mean_is_the_numpy_mean_of_unequal_weights(tmp_path):
    model = _model()
    state = RunState(str(tmp_path))
    rng = np.random.default_rng(0)
    saved = []
    for epoch in (1, 2, 3):
        values = [rng.normal(size=v.shape).astype("float32") for v in model.weights]
        for variable, value in zip(model.weights, values, strict=True):
            variable.assign(value)
        saved.append(values)
        state.commit_epoch(model, epoch, {"epoch": epoch, "val_top1": 0.5}, "val_top1", 2)
    fresh = _model()
    assert state.average_into(fresh, 2) == [2, 3]
    for index, variable in enumerate(fresh.weights):
        expected = (saved[1][index].astype(np.float64) + saved[2][index]) / 2
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-6)


def test_an_epoch_killed_before_its_commit_leaves_no_weights_to_average(tmp_path, monkeypatch):
    model = _model()
    state = RunState(str(tmp_path))
    for epoch in (1, 2, 3):
        _commit(state, model, epoch, average_last=2)
    _commit_killed_at("epoch_saved", state, model, 4, 2, monkeypatch)
    assert _kept(tmp_path) == ["average-2.h5", "average-3.h5", "average-4.h5"]
    resumed = RunState(str(tmp_path))
    resumed.recover()
    assert resumed.epoch == 3 and _kept(tmp_path) == ["average-2.h5", "average-3.h5"]
    fresh = _model()
    assert resumed.average_into(fresh, 2) == [2, 3]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh.weights[0]), 2.5)


def test_the_window_rolls_with_every_committed_epoch(tmp_path, monkeypatch):
    # A run of 20 epochs stopped after 17 and taken back to 17 (the runner
    # allows it) must average 13-17, as a 17-epoch run does: the window
    # follows the committed epochs, not the planned ones.
    model = _model()
    state = RunState(str(tmp_path))
    for epoch in range(1, 18):
        _commit(state, model, epoch, average_last=5)
    assert _kept(tmp_path) == [f"average-{e}.h5" for e in (13, 14, 15, 16, 17)]
    assert state.average_into(_model(), 13) == [13, 14, 15, 16, 17]

    # Killed after epoch 18's commit, before the file that left the window is
    # deleted: the final stage deletes it.
    _commit_killed_at("epoch_committed", state, model, 18, 5, monkeypatch)
    resumed = RunState(str(tmp_path))
    resumed.recover()
    assert resumed.epoch == 18 and len(_kept(tmp_path)) == 6
    resumed.prune_averages(5)
    assert _kept(tmp_path) == [f"average-{e}.h5" for e in (14, 15, 16, 17, 18)]
    # Without averaging none is kept.
    _commit(resumed, model, 19, average_last=0)
    assert _kept(tmp_path) == []


def test_weights_of_another_model_are_refused(tmp_path):
    path = str(tmp_path / "w.h5")
    save_model_weights(_model(units=2), path)
    np.testing.assert_array_equal(
        load_model_weights(_model(units=2), path)[1], np.zeros(2, "float32")
    )
    with pytest.raises(RuntimeError, match=r"w\.h5 holds the weights of another model: .*kernel"):
        load_model_weights(_model(units=3), path)
    # The same shapes in another order (a bias where a kernel was) are refused too.
    square = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    save_model_weights(square, path)
    swapped = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with h5py.File(path, "r+") as f:
        f["0"].attrs["path"], f["1"].attrs["path"] = "d/bias", "d/kernel"
    with pytest.raises(RuntimeError, match=r"d/bias has shape \(2, 2\)"):
        load_model_weights(swapped, path)


def test_a_negative_average_last_is_a_config_error():
    with pytest.raises(runner.ConfigError, match=r"train\.average_last=-1"):
        runner.resolve("mobilenet", overrides={"train": {"average_last": -1}})


def test_transformer_base_averages_its_last_5_checkpoints():
    _, _, config = runner.resolve("transformer_nmt/wmt14", require_data=False)
    assert config.train.average_last == 5  # Vaswani et al., section 6.1
    _, _, config = runner.resolve("mobilenet/imagenet", require_data=False)
    assert config.train.average_last == 0  # the image recipes report best.keras


ARGS = ["train", "mobilenet", "--steps-per-epoch", "4", "--verbose", "2"]
ARGS += ["--set", "train.average_last=2"]


def _train(run, *extra, kill_at=None):
    return train_process(ARGS, run, *extra, kill_at=kill_at)


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_a_run_killed_at_every_averaging_stage_reports_the_average_of_its_last_epochs(tmp_path):
    run = tmp_path / "run"
    # Planned for 4 epochs, stopped in epoch 4 and taken back to the 3 it
    # trained: it averages epochs 2-3, as a 3-epoch run does.
    result = _train(run, "--epochs", "4", kill_at="epoch_saved:4")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    result = _train(run, "--epochs", "3", kill_at="averaging")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert "Epoch " not in result.stdout  # no epoch trained again
    assert (run / "final.keras").is_file() and not (run / "averaged.keras").exists()
    assert _kept(run) == ["average-2.h5", "average-3.h5"]  # epoch 4's was never committed
    result = _train(run, "--epochs", "3", kill_at="saving_averaged")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not (run / "averaged.keras").exists() and not _metrics(run)["completed"]
    result = _train(run, "--epochs", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch " not in result.stdout
    assert not [n for n in os.listdir(run) if n.startswith(".tmp")]

    metrics = _metrics(run)
    averaged = metrics["averaged"]
    assert metrics["completed"] and averaged["model"] == "averaged.keras"
    assert averaged["epochs"] == [2, 3] and "note" not in averaged
    assert set(averaged["test"]) >= {"test_top1", "test_top5", "test_loss"}
    assert "averaged.keras (the mean of epochs 2-3): val_" in result.stdout
    assert sorted(os.listdir(run / "state")) == [
        "average-2.h5",
        "average-3.h5",
        "epoch-3.weights.h5",
        "state.json",
    ]
    assert_is_the_mean_of_kept_weights(run, [2, 3])
    # The last kept weights are final.keras's.
    final = keras.models.load_model(run / "final.keras")
    last = kept_weights(run / "state" / "average-3.h5")
    for variable, value in zip(final.weights, last, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    # Loaded in a fresh process, averaged.keras gives the numbers metrics.json reports.
    assert_loads_anywhere(run)
    # `evaluate` follows metrics.json: the model the run reports is the average.
    assert runner.model_path(str(run)) == str(run / "averaged.keras")
    evaluated = subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", "evaluate", str(run)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert evaluated.stdout.startswith("averaged.keras on ")
    reported = json.loads(evaluated.stdout.split(":\n", 1)[1])
    for key, value in averaged["test"].items():
        assert reported["test"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key

    # Continued to 4 epochs, killed after epoch 4's commit (before epoch 2's
    # file is deleted), then in the final stage: until the new average is
    # written, the run reports best.keras; then the average of epochs 3-4.
    killed = _train(run, "--epochs", "4", kill_at="epoch_committed:4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _kept(run) == ["average-2.h5", "average-3.h5", "average-4.h5"]
    killed = _train(run, "--epochs", "4", kill_at="averaging")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "averaged" not in _metrics(run)
    assert runner.model_path(str(run)) == str(run / "best.keras")
    # Killed with the new average written but not reported yet: metrics.json
    # still names best.keras, and the rerun writes the same average again.
    killed = _train(run, "--epochs", "4", kill_at="before_complete")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert_is_the_mean_of_kept_weights(run, [3, 4])
    assert "averaged" not in _metrics(run) and not _metrics(run)["completed"]
    assert runner.model_path(str(run)) == str(run / "best.keras")
    longer = _train(run, "--epochs", "4")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert _metrics(run)["averaged"]["epochs"] == [3, 4]
    assert _kept(run) == ["average-3.h5", "average-4.h5"]
    assert_is_the_mean_of_kept_weights(run, [3, 4])
    assert_loads_anywhere(run)
