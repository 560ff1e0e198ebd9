"""Every way Keras saves a model gives back the same β and outputs."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_swish import SwishBeta
from tests.backend_utils import swish_betas, to_numpy

pytestmark = pytest.mark.all_backends


def make_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, activation="swish_beta", name="conv")(inputs)
    x = SwishBeta(shared_axes=[1, 2, 3], name="scalar_swish")(x)
    x = keras.layers.Flatten()(x)
    inner = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(5, activation="swish_beta", name="d")],
        name="inner",
    )
    x = inner(x)
    x = keras.layers.Reshape((5, 1))(x)
    x = keras.layers.GRU(3, activation="swish_beta", name="gru")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for w in swish_betas(model):  # away from 1.0, so a reload must restore β
        w.assign(rng.uniform(0.2, 2.0, size=w.shape).astype("float32"))
    return model


def beta_values(model):
    """β values by owner name ("conv/swish_beta", "d/swish_beta", ...).

    Keras drops the nested model's prefix from variable paths on reload
    ("inner/d/kernel" → "d/kernel"), so the last two path parts are the key.
    """
    return {"/".join(w.path.split("/")[-3:-1]): to_numpy(w) for w in swish_betas(model)}


def assert_same(model, restored, data):
    expected, actual = beta_values(model), beta_values(restored)
    assert len(expected) == 4
    assert expected.keys() == actual.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(actual[path], value, err_msg=path)
    np.testing.assert_allclose(
        to_numpy(restored(data)), to_numpy(model(data)), rtol=1e-6, atol=1e-6
    )


@pytest.fixture
def data():
    return np.random.default_rng(1).normal(size=(3, 6, 6, 2)).astype("float32")


@pytest.mark.parametrize("safe_mode", [True, False])
def test_keras_file_round_trip(tmp_path, data, safe_mode):
    model = make_model()
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras", safe_mode=safe_mode)
    assert_same(model, restored, data)


def test_loaded_model_keeps_training(tmp_path, data):
    model = make_model()
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    restored.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    before = beta_values(restored)
    restored.fit(data, np.ones((3, 3)), epochs=1, verbose=0)  # one batch: one step
    after = beta_values(restored)
    # Adam's first step moves every parameter with a gradient by lr · g / |g| = ±lr
    # (later steps can cancel it, so a bound on several steps is flaky).
    for path in before:
        assert np.abs(after[path] - before[path]).max() > 0.5 * 0.01, path


def test_keras_file_loads_in_fresh_process(tmp_path, data):
    model = make_model()
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", data)
    script = textwrap.dedent(
        f"""
        import keras, numpy as np, keras_swish
        from tests.backend_utils import to_numpy
        m = keras.models.load_model({str(tmp_path / "m.keras")!r}, safe_mode=True)
        np.save({str(tmp_path / "y.npy")!r}, to_numpy(m(np.load({str(tmp_path / "x.npy")!r}))))
        from tests.test_serialization import beta_values
        print(__import__("json").dumps({{k: v.tolist() for k, v in beta_values(m).items()}}))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    betas = json.loads(result.stdout.strip().splitlines()[-1])
    expected = beta_values(model)
    assert betas.keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(np.asarray(betas[path], "float32"), value)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), to_numpy(model(data)), rtol=1e-6)


def test_get_config_from_config(data):
    model = make_model()
    restored = keras.Model.from_config(model.get_config())
    restored.set_weights(model.get_weights())
    assert_same(model, restored, data)


def test_json_round_trip(data):
    model = make_model()
    restored = keras.models.model_from_json(model.to_json())
    assert [w.shape for w in restored.weights] == [w.shape for w in model.weights]
    restored.set_weights(model.get_weights())
    assert_same(model, restored, data)


def test_clone_model(data):
    model = make_model()
    clone = keras.models.clone_model(model)
    assert len(clone.weights) == len(model.weights)
    clone.set_weights(model.get_weights())
    assert_same(model, clone, data)


def test_save_and_load_weights(tmp_path, data):
    model = make_model()
    model.save_weights(tmp_path / "w.weights.h5")
    other = make_model()
    for w in other.weights:
        w.assign(np.zeros(w.shape, "float32"))
    other.load_weights(tmp_path / "w.weights.h5")
    assert_same(model, other, data)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="SavedModel export needs TensorFlow"
)
def test_export_saved_model_serves_same_outputs(tmp_path, data):
    import tensorflow as tf

    model = make_model()
    model.export(str(tmp_path / "exported"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "exported"))
    # The exported graph and the eager call may order float32 sums differently
    # (oneDNN): outputs near 0 then differ by a few ulps of the larger terms.
    np.testing.assert_allclose(
        served.serve(tf.constant(data)).numpy(), to_numpy(model(data)), rtol=1e-5, atol=1e-7
    )
