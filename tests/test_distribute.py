"""swish_beta under tf.distribute.MirroredStrategy on two logical CPUs."""

import os

import keras
import numpy as np
import pytest

from tests.backend_utils import swish_betas, to_numpy

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow"
)


def test_mirrored_strategy_trains_one_synchronized_beta_per_use(tmp_path):
    import tensorflow as tf

    # Reduction through one device: collective all-reduce instance keys clash
    # between MirroredStrategy objects made one after another in one process.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        inputs = keras.Input((6, 6, 2))
        x = keras.layers.Conv2D(4, 3, activation="swish_beta")(inputs)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(3, activation="swish_beta")(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    betas = swish_betas(model)
    assert [tuple(b.shape) for b in betas] == [(4,), (3,)]
    for beta in betas:  # one mirrored variable per use, a copy on each replica
        assert len(beta.value.values) == 2
    rng = np.random.default_rng(0)
    data = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    target = rng.normal(size=(16, 3)).astype("float32")
    model.fit(data, target, batch_size=8, epochs=2, verbose=0)
    for beta in betas:
        replicas = [v.numpy() for v in beta.value.values]
        np.testing.assert_array_equal(replicas[0], replicas[1])
        assert not np.allclose(replicas[0], 1.0), "β did not train"

    model.save(tmp_path / "mirrored.keras")
    restored = keras.models.load_model(tmp_path / "mirrored.keras", safe_mode=True)
    for old, new in zip(betas, swish_betas(restored), strict=True):
        np.testing.assert_array_equal(to_numpy(new), to_numpy(old))
    np.testing.assert_allclose(
        to_numpy(restored(data)), to_numpy(model(data)), rtol=1e-5, atol=1e-6
    )

    # The runner's copy for a final evaluation by the chief alone (no best
    # epoch): plain variables, the same outputs, no file left behind.
    from keras_swish.recipes.core.runner import _undistributed_copy

    (tmp_path / "run").mkdir()
    copy = _undistributed_copy(model, str(tmp_path / "run"))
    assert not any(hasattr(w.value, "values") for w in copy.weights)
    np.testing.assert_allclose(to_numpy(copy(data)), to_numpy(model(data)), rtol=1e-5, atol=1e-6)
    assert copy.evaluate(data, target, verbose=0) == pytest.approx(
        model.evaluate(data, target, verbose=0), rel=1e-5
    )
    assert os.listdir(tmp_path / "run") == []
