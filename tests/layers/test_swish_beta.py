import keras
import numpy as np
import pytest

import keras_swish
from keras_swish import SwishBeta
from tests.backend_utils import to_numpy, value_and_grads
from tests.layer_contract import check_layer_contract

pytestmark = pytest.mark.all_backends


def np_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def np_swish(x, beta):
    return x * np_sigmoid(beta * x)


@pytest.mark.parametrize(
    "kwargs, input_shape, beta_shape",
    [
        ({}, (4, 5, 5, 3), (3,)),
        ({"shared_axes": [1, 2]}, (4, 5, 5, 3), (3,)),
        ({"shared_axes": [1, 2, 3]}, (4, 5, 5, 3), ()),
        ({"shared_axes": [1]}, (4, 5, 6, 3), (6, 3)),
        ({"shared_axes": -1}, (2, 7, 3), (7,)),
        ({"beta_initializer": 0.5, "beta_regularizer": "l2"}, (3, 8), (8,)),
    ],
)
def test_layer_contract(kwargs, input_shape, beta_shape):
    check_layer_contract(SwishBeta, kwargs, input_shape, [beta_shape])


def test_constant_beta_is_not_trainable():
    check_layer_contract(SwishBeta, {"trainable": False}, (3, 4), [(4,)], expected_trainable=0)


def test_weight_is_named_beta_and_registered():
    layer = SwishBeta()
    layer.build((None, 4))
    assert layer.beta.name == "beta"
    assert keras.saving.get_registered_name(SwishBeta) == "keras_swish>SwishBeta"
    assert keras.saving.get_registered_object("keras_swish>SwishBeta") is SwishBeta


def test_values_match_numpy_with_random_per_channel_beta():
    rng = np.random.default_rng(1)
    x = rng.normal(scale=3.0, size=(6, 4, 4, 5)).astype("float32")
    beta = rng.uniform(-1.0, 3.0, size=(5,)).astype("float32")
    layer = SwishBeta()
    layer.build(x.shape)
    layer.beta.assign(beta)
    np.testing.assert_allclose(to_numpy(layer(x)), np_swish(x, beta), rtol=1e-5, atol=1e-6)


def test_shared_axes_values_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 6, 2)).astype("float32")
    layer = SwishBeta(shared_axes=[1])
    layer.build(x.shape)
    beta = rng.uniform(0, 2, size=(6, 2)).astype("float32")
    layer.beta.assign(beta)
    np.testing.assert_allclose(to_numpy(layer(x)), np_swish(x, beta[None]), rtol=1e-5)


def test_special_betas():
    x = np.linspace(-8, 8, 33, dtype="float32")[None, :]
    zero = SwishBeta(beta_initializer=0.0, shared_axes=[1])
    np.testing.assert_allclose(to_numpy(zero(x)), x / 2, rtol=1e-6)
    one = SwishBeta(beta_initializer=1.0, shared_axes=[1])
    silu = keras.activations.silu(keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(to_numpy(one(x)), to_numpy(silu), rtol=1e-5, atol=1e-6)
    big = SwishBeta(beta_initializer=1e4, shared_axes=[1])
    np.testing.assert_allclose(to_numpy(big(x)), np.maximum(x, 0), atol=1e-6)
    # The bump: minimum near -0.278 at beta = 1.
    grid = np.linspace(-5, 0, 5001, dtype="float32")[None, :]
    assert to_numpy(one(grid)).min() == pytest.approx(-0.2785, abs=1e-3)


def test_gradients_match_paper_formulas():
    rng = np.random.default_rng(3)
    x = rng.normal(scale=2.0, size=(4, 3, 5)).astype("float32")
    beta = rng.uniform(0.1, 2.0, size=(5,)).astype("float32")

    def fn(x, beta):
        return keras_swish.ops.swish(x, beta)

    out, (dx, dbeta) = value_and_grads(fn, x, beta)
    f = np_swish(x, beta)
    s = np_sigmoid(beta * x)
    np.testing.assert_allclose(out, f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, beta * f + s * (1 - beta * f), rtol=1e-4, atol=1e-5)
    expected_dbeta = (x**2 * s * (1 - s)).sum(axis=(0, 1))
    np.testing.assert_allclose(dbeta, expected_dbeta, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_outputs_finite_for_large_inputs(dtype):
    big = {"float16": 6e4, "bfloat16": 3e38, "float32": 3e38}[dtype]
    x = np.array([[-big, -100.0, -1.0, 0.0, 1.0, 100.0, big]], dtype="float32")
    layer = SwishBeta(beta_initializer=50.0, dtype=dtype)
    y = to_numpy(keras.ops.cast(layer(keras.ops.cast(x, dtype)), "float32"))
    assert np.all(np.isfinite(y)), y
    assert y[0, 0] == 0 and y[0, -1] == pytest.approx(big, rel=1e-2)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_beta_stays_float32_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(4, activation="swish_beta")(inputs)
    model = keras.Model(inputs, outputs)
    betas = [w for w in model.weights if w.name == "beta"]
    assert len(betas) == 1
    assert keras.backend.standardize_dtype(betas[0].dtype) == "float32"
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 6)), np.ones((8, 4)), verbose=0)
    assert keras.backend.standardize_dtype(betas[0].dtype) == "float32"
    assert np.all(np.isfinite(to_numpy(betas[0])))


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="shared_axes=abc"):
        SwishBeta(shared_axes="abc")
    with pytest.raises(ValueError, match=r"shared_axes=\[0\]"):
        SwishBeta(shared_axes=[0]).build((None, 3))
    with pytest.raises(ValueError, match="rank >= 2"):
        SwishBeta().build((3,))
    with pytest.raises(ValueError, match="known size on axis 2"):
        SwishBeta(shared_axes=1).build((None, 4, None))
