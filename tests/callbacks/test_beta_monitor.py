"""BetaMonitor: the summaries it writes, read back with TensorBoard's reader."""

import io
import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_swish
from keras_swish.callbacks import BetaMonitor
from keras_swish.callbacks import beta_monitor as beta_monitor_lib
from keras_swish.callbacks import chief as chief_lib
from keras_swish.callbacks.betas import find_swish_layers, to_numpy
from tests.callbacks.helpers import (
    EXPECTED_LAYERS,
    build_model,
    data,
    event_files,
    read_events,
)

STATS = ("mean", "std", "min", "max")


def expected_tags(names, probe=True):
    tags = {"beta/all", "beta/curves"} | {f"beta/{s}" for s in STATS}
    for name in names:
        tags |= {f"beta_layer/{name}"} | {f"beta_layer/{name}/{s}" for s in STATS}
        if probe:
            tags |= {f"bump_layer/{name}", f"bump_layer/{name}/share"}
    if probe:
        tags |= {"bump/share", "bump/inputs"}
    return tags


def final(events, tag):
    return events[tag][-1][1]


def test_tags_steps_and_layer_names(trained_run):
    assert set(trained_run.betas) == set(EXPECTED_LAYERS)
    events = read_events(os.path.join(trained_run.log_dir, "beta"))
    assert set(events) == expected_tags(EXPECTED_LAYERS)
    for tag, values in events.items():
        assert [step for step, _ in values] == [0, 1], tag  # One per epoch.


def test_overall_histogram_counts_and_ranges_match_trained_beta(trained_run):
    events = read_events(os.path.join(trained_run.log_dir, "beta"))
    every = np.concatenate([b.reshape(-1) for b in trained_run.betas.values()])
    assert every.size == sum(EXPECTED_LAYERS.values())
    assert np.ptp(every) > 1e-3  # β really moved during training.
    histogram = final(events, "beta/all")  # [bucket, (left, right, count)]
    assert histogram[:, 2].sum() == every.size
    np.testing.assert_allclose(histogram[0, 0], every.min(), rtol=1e-6)
    np.testing.assert_allclose(histogram[-1, 1], every.max(), rtol=1e-6)
    np.testing.assert_allclose(final(events, "beta/mean"), every.mean(), rtol=1e-5)
    np.testing.assert_allclose(final(events, "beta/std"), every.std(), rtol=1e-4)
    np.testing.assert_allclose(final(events, "beta/min"), every.min(), rtol=1e-6)
    np.testing.assert_allclose(final(events, "beta/max"), every.max(), rtol=1e-6)


def test_per_layer_histograms_and_scalars(trained_run):
    events = read_events(os.path.join(trained_run.log_dir, "beta"))
    for name, beta in trained_run.betas.items():
        assert final(events, f"beta_layer/{name}")[:, 2].sum() == EXPECTED_LAYERS[name]
        for stat in STATS:
            np.testing.assert_allclose(
                final(events, f"beta_layer/{name}/{stat}"),
                getattr(np, stat)(beta),
                rtol=1e-5,
                atol=1e-7,
                err_msg=f"{name}/{stat}",
            )


def test_curves_image(trained_run):
    events = read_events(os.path.join(trained_run.log_dir, "beta"))
    width, height, png = final(events, "beta/curves")
    assert (int(width), int(height)) == (800, 500)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (500, 800, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # Not blank.


def test_bump_share_of_probe_inputs(trained_run):
    events = read_events(os.path.join(trained_run.log_dir, "beta"))
    model = trained_run.model
    # The standalone SwishBeta "swish_beta" receives the first Conv2D's output.
    feed = keras.Model(model.input, model.get_layer("conv2d").output)
    inputs = keras.ops.convert_to_numpy(feed(trained_run.probe)).reshape(-1)
    expected = np.mean((inputs >= -5.0) & (inputs <= 0.0))
    assert 0.0 < expected < 1.0
    np.testing.assert_allclose(final(events, "bump_layer/swish_beta/share"), expected)
    assert final(events, "bump_layer/swish_beta")[:, 2].sum() == inputs.size
    for name in EXPECTED_LAYERS:
        share = float(final(events, f"bump_layer/{name}/share"))
        assert 0.0 <= share <= 1.0, name
    total = sum(final(events, f"bump_layer/{n}")[:, 2].sum() for n in EXPECTED_LAYERS)
    assert final(events, "bump/inputs")[:, 2].sum() == total


def test_sits_beside_keras_tensorboard(trained_run):
    # Keras's TensorBoard (update_freq=3, 4 batches an epoch) pushes a
    # record_if(step % 3 == 0) around training; β summaries must not obey it
    # (Keras's own epoch_loss does: with these numbers it is never written).
    assert sorted(os.listdir(trained_run.log_dir)) == ["beta", "model.keras", "train"]
    train = read_events(os.path.join(trained_run.log_dir, "train"))
    assert [step for step, _ in train["batch_loss"]] == [3, 6]
    assert not any(tag.startswith(("beta", "bump")) for tag in train)
    assert len(event_files(os.path.join(trained_run.log_dir, "beta"))) == 1


def small_model(activation="swish_beta"):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation=activation),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def small_data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


@pytest.mark.all_backends
def test_resumed_training_continues_the_step_count(tmp_path):
    x, y = small_data()
    model = small_model()
    monitor = BetaMonitor(tmp_path, probe=x[:4])
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[monitor], verbose=0)
    # A new process would make a new callback: the step comes from training.
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=3,
        initial_epoch=2,
        callbacks=[BetaMonitor(tmp_path)],
        verbose=0,
    )
    events = read_events(str(tmp_path / "beta"))
    assert [step for step, _ in events["beta/all"]] == [0, 1, 2]
    assert [step for step, _ in events["bump/share"]] == [0, 1]
    # The probe's recording hooks are gone again.
    assert not any("call" in vars(layer) for _, layer in find_swish_layers(model))
    assert keras_swish.callbacks.betas.read_snapshot(tmp_path / "beta" / "betas.json")[0] == 2


@pytest.mark.all_backends
def test_update_freq_steps_follow_optimizer_iterations(tmp_path):
    x, y = small_data()  # 4 batches an epoch
    model = small_model()
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[BetaMonitor(tmp_path, 3)], verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[BetaMonitor(tmp_path, 3)], verbose=0)
    events = read_events(str(tmp_path / "beta"))
    # Every 3 steps, and the final β at the end of each fit.
    assert [step for step, _ in events["beta/all"]] == [3, 4, 6, 8]
    assert int(to_numpy(model.optimizer.iterations)) == 8


@pytest.mark.all_backends
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's training-state sync")
def test_update_freq_does_not_sync_the_jax_state_every_step(tmp_path):
    """Reading `Callback.model` on JAX copies the training state into the model;
    BetaMonitor(update_freq=N) does it when it writes, not at every step."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 4)).astype("float32"), rng.normal(size=(120, 1))
    model = small_model()
    syncs = []
    keras_sync = model.jax_state_sync
    model.jax_state_sync = lambda: syncs.append(1) or keras_sync()
    model.fit(x, y, batch_size=4, callbacks=[BetaMonitor(tmp_path, 10)], verbose=0)  # 30 steps
    events = read_events(str(tmp_path / "beta"))
    assert [step for step, _ in events["beta/all"]] == [10, 20, 30]
    assert len(syncs) <= 12, len(syncs)  # 40 when it read the optimizer's step every batch


@pytest.mark.all_backends
@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16"])
def test_bfloat16_models_are_monitored(policy, tmp_path):
    """β in bfloat16 (PyTorch's `.numpy()` refuses it) and bfloat16 probe inputs."""
    keras.config.set_dtype_policy(policy)
    x, y = small_data()
    model = small_model()
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[BetaMonitor(tmp_path, probe=x[:4])])
    events = read_events(str(tmp_path / "beta"))
    assert [step for step, _ in events["beta/all"]] == [0]
    assert [step for step, _ in events["bump/share"]] == [0]  # the probe's inputs were read
    ((_, layer),) = find_swish_layers(model)
    _, (saved,) = keras_swish.callbacks.betas.read_snapshot(tmp_path / "beta" / "betas.json")
    assert saved.values.shape == (5,)
    np.testing.assert_array_equal(saved.values, to_numpy(layer.beta).astype(np.float32))


@pytest.mark.all_backends
def test_warns_once_without_swish_beta(tmp_path):
    x, y = small_data()
    model = small_model(activation="relu")
    monitor = BetaMonitor(tmp_path, update_freq=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, callbacks=[monitor], verbose=0)
        model.fit(x, y, epochs=1, callbacks=[monitor], verbose=0)
    messages = [str(w.message) for w in caught if "SwishBeta" in str(w.message)]
    assert len(messages) == 1
    assert "no SwishBeta layer" in messages[0]
    assert not (tmp_path / "beta").exists()


def test_mirrored_strategy_writes_one_set(tmp_path):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    x, y = small_data()
    with strategy.scope():
        model = small_model()
    monitor = BetaMonitor(tmp_path, probe=x[:4])
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[monitor], verbose=0)
    assert event_files(tmp_path / "beta") and len(event_files(tmp_path / "beta")) == 1
    events = read_events(str(tmp_path / "beta"))
    assert set(events) == expected_tags(["sequential/dense/swish_beta"])
    for tag, values in events.items():
        assert [step for step, _ in values] == [0, 1], tag  # Not one per replica.
    assert final(events, "beta/all")[:, 2].sum() == 5
    beta = model.layers[0].activation.beta.numpy()
    np.testing.assert_allclose(final(events, "beta/max"), beta.max(), rtol=1e-6)


def test_non_chief_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(chief_lib, "is_chief", lambda strategy=None: False)
    x, y = small_data()
    small_model().fit(x, y, epochs=1, callbacks=[BetaMonitor(tmp_path, 1)], verbose=0)
    assert not (tmp_path / "beta").exists()


class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class _MultiWorkerStrategy:
    def __init__(self, resolver):
        self.cluster_resolver = resolver
        self.extended = type("Extended", (), {"_in_multi_worker_mode": lambda self: True})()


@pytest.mark.parametrize(
    "task_type, task_id, cluster, chief",
    [
        ("worker", 0, {"worker": ["a:1", "b:1"]}, True),
        ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
        ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
        ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),
        ("evaluator", 0, {"worker": ["a:1"]}, False),
    ],
)
def test_chief_under_multi_worker(task_type, task_id, cluster, chief, monkeypatch):
    strategy = _MultiWorkerStrategy(_Resolver(task_type, task_id, cluster))
    assert chief_lib.is_chief(strategy) is chief
    # The same from TF_CONFIG when the strategy's resolver has no task.
    config = {"cluster": cluster, "task": {"type": task_type, "index": task_id}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert chief_lib.is_chief(_MultiWorkerStrategy(None)) is chief


def test_one_process_strategies_are_chief(monkeypatch):
    config = {
        "cluster": {"worker": ["a:1", "b:1"]},
        "task": {"type": "worker", "index": 1},
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))  # Ignored: one process.
    assert chief_lib.is_chief(tf.distribute.get_strategy())
    assert chief_lib.is_chief(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert chief_lib.is_chief(None)


@pytest.mark.parametrize("update_freq", [0, -2, "weekly", True, 1.5, None])
def test_bad_update_freq(update_freq, tmp_path):
    with pytest.raises(ValueError, match=r"update_freq.*Received: update_freq="):
        BetaMonitor(tmp_path, update_freq=update_freq)


@pytest.mark.parametrize("log_dir", ["", None, 3])
def test_bad_log_dir(log_dir):
    with pytest.raises(ValueError, match="Received: log_dir="):
        BetaMonitor(log_dir)


def test_needs_tensorboard(monkeypatch, tmp_path):
    monkeypatch.setattr(beta_monitor_lib, "_tensorboard_installed", lambda: False)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        BetaMonitor(tmp_path)


@pytest.mark.all_backends
def test_bad_probe_fails_before_training(tmp_path):
    x, y = small_data()
    model = small_model()
    monitor = BetaMonitor(tmp_path, probe=np.ones((2, 7), "float32"))
    with pytest.raises(ValueError, match="could not run the model on `probe`"):
        model.fit(x, y, epochs=1, callbacks=[monitor], verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == 0
    assert not (tmp_path / "beta").exists()


def test_statistics_helper():
    stats = beta_monitor_lib._statistics(np.array([0.5, 1.5]))
    assert stats == {"mean": 1.0, "std": 0.5, "min": 0.5, "max": 1.5}


def test_model_built_from_conftest_has_expected_layers():
    names = {n for n, _ in keras_swish.callbacks.betas.find_swish_layers(build_model())}
    assert names == set(EXPECTED_LAYERS)
    x, _ = data(2)
    assert x.shape == (2, 8, 8, 3)
