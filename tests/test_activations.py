"""`activation="swish_beta"` in every Keras layer that takes `activation=`."""

import keras
import numpy as np
import pytest

import keras_swish
from keras_swish import SwishBeta
from tests.backend_utils import swish_betas as betas
from tests.backend_utils import to_numpy

pytestmark = pytest.mark.all_backends

L = keras.layers

# (factory taking an activation, input shape without batch, β shapes it owns)
LAYERS = {
    "Dense": (lambda a: L.Dense(5, activation=a), (7,), [(5,)]),
    "EinsumDense": (
        lambda a: L.EinsumDense("ab,bc->ac", output_shape=6, activation=a),
        (4,),
        [(6,)],
    ),
    "Conv1D": (lambda a: L.Conv1D(3, 2, activation=a), (6, 2), [(3,)]),
    "Conv2D": (lambda a: L.Conv2D(4, 3, activation=a), (6, 6, 2), [(4,)]),
    "Conv3D": (lambda a: L.Conv3D(2, 2, activation=a), (4, 4, 4, 1), [(2,)]),
    "Conv1DTranspose": (lambda a: L.Conv1DTranspose(3, 2, activation=a), (5, 2), [(3,)]),
    "Conv2DTranspose": (lambda a: L.Conv2DTranspose(3, 2, activation=a), (4, 4, 2), [(3,)]),
    "Conv3DTranspose": (
        lambda a: L.Conv3DTranspose(2, 2, activation=a),
        (3, 3, 3, 1),
        [(2,)],
    ),
    "SeparableConv1D": (lambda a: L.SeparableConv1D(3, 2, activation=a), (6, 2), [(3,)]),
    "SeparableConv2D": (
        lambda a: L.SeparableConv2D(3, 2, activation=a),
        (5, 5, 2),
        [(3,)],
    ),
    "DepthwiseConv1D": (lambda a: L.DepthwiseConv1D(2, activation=a), (6, 3), [(3,)]),
    "DepthwiseConv2D": (lambda a: L.DepthwiseConv2D(2, activation=a), (5, 5, 3), [(3,)]),
    "Activation": (lambda a: L.Activation(a), (4, 3), [(3,)]),
    "SimpleRNN": (lambda a: L.SimpleRNN(4, activation=a), (5, 3), [(4,)]),
    "GRU": (
        lambda a: L.GRU(4, activation=a, recurrent_activation=a),
        (5, 3),
        [(4,), (4,)],
    ),
    "LSTM": (
        lambda a: L.LSTM(4, activation=a, recurrent_activation=a),
        (5, 3),
        [(4,), (4,)],
    ),
    "SimpleRNNCell": (lambda a: L.RNN(L.SimpleRNNCell(3, activation=a)), (4, 2), [(3,)]),
    "GRUCell": (lambda a: L.RNN(L.GRUCell(3, activation=a)), (4, 2), [(3,)]),
    "LSTMCell": (lambda a: L.RNN(L.LSTMCell(3, activation=a)), (4, 2), [(3,)]),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_string_builds_beta_before_any_data(name):
    factory, shape, beta_shapes = LAYERS[name]
    inputs = keras.Input(shape)
    model = keras.Model(inputs, factory("swish_beta")(inputs))
    found = betas(model)
    assert [tuple(b.shape) for b in found] == beta_shapes
    assert all(any(b is w for w in model.trainable_weights) for b in found)
    baseline_inputs = keras.Input(shape)
    baseline = keras.Model(baseline_inputs, factory("linear")(baseline_inputs))
    assert model.count_params() == baseline.count_params() + sum(
        int(np.prod(s)) for s in beta_shapes
    )


@pytest.mark.parametrize("name", ["Dense", "Conv2D", "LSTM", "Activation"])
def test_string_trains_beta_with_fit(name):
    factory, shape, _ = LAYERS[name]
    inputs = keras.Input(shape)
    x = factory("swish_beta")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    before = [to_numpy(b).copy() for b in betas(model)]
    rng = np.random.default_rng(0)
    data = rng.normal(size=(16,) + shape).astype("float32")
    model.fit(data, rng.normal(size=(16, 1)), epochs=2, batch_size=8, verbose=0)
    after = [to_numpy(b) for b in betas(model)]
    assert all(not np.allclose(b, a) for b, a in zip(before, after, strict=True))


def test_each_use_owns_its_beta():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, activation="swish_beta")(inputs)
    x = keras.layers.Dense(4, activation="swish_beta")(x)
    model = keras.Model(inputs, x)
    found = betas(model)
    assert len(found) == 2 and found[0] is not found[1]
    assert len({b.path for b in found}) == 2


def test_sequential_with_input_and_build_count_beta():
    seq = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="swish_beta")])
    assert seq.count_params() == 6 * 3 + 3 + 3
    built = keras.Sequential([keras.layers.Dense(3, activation="swish_beta")])
    built.build((None, 6))
    assert built.count_params() == 6 * 3 + 3 + 3
    assert len(betas(built)) == 1


def test_summary_counts_beta(capsys):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, activation="swish_beta")(inputs)
    x = keras.layers.Dense(10, activation="swish_beta")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, x)
    model.summary()
    expected = (3 * 3 * 3 * 16 + 16 + 16) + (30 * 30 * 16 * 10 + 10 + 10)
    assert model.count_params() == expected
    assert f"{expected:,}" in capsys.readouterr().out


def test_instance_and_class_work_too():
    inputs = keras.Input((5,))
    x = keras.layers.Dense(3, activation=SwishBeta(beta_initializer=0.25))(inputs)
    y = keras.layers.Dense(2, activation=SwishBeta)(x)
    model = keras.Model(inputs, y)
    found = betas(model)
    assert [tuple(b.shape) for b in found] == [(3,), (2,)]
    np.testing.assert_allclose(to_numpy(found[0]), 0.25)
    assert isinstance(model.layers[2].activation, SwishBeta)


def test_other_names_resolve_as_in_keras():
    assert keras.activations.get("relu") is keras.activations.relu
    assert keras.activations.get("swish") is keras.activations.silu
    assert keras.activations.get(None) is keras.activations.linear
    assert keras.activations.get(keras.activations.gelu) is keras.activations.gelu
    assert keras.layers.Dense(2, activation="swish").activation is keras.activations.silu
    assert isinstance(keras.activations.get("swish_beta"), SwishBeta)
    assert keras.activations.get("swish_beta") is not keras.activations.get("swish_beta")


def test_unknown_names_raise_and_near_misses_name_swish_beta():
    with pytest.raises(ValueError, match="Could not interpret activation"):
        keras.layers.Dense(2, activation="no_such_activation")
    with pytest.raises(ValueError, match="Did you mean 'swish_beta'"):
        keras.layers.Dense(2, activation="swish_bta")
    with pytest.raises(ValueError, match="Did you mean 'swish_beta'"):
        keras.activations.get("swishbeta")


def test_register_activation_refuses_keras_names_and_non_layers():
    with pytest.raises(ValueError, match="keeps its Keras meaning"):
        keras_swish.register_activation("swish", SwishBeta)
    with pytest.raises(ValueError, match="layer_class"):
        keras_swish.register_activation("my_act", keras.activations.relu)


def test_register_activation_adds_a_name():
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    keras_swish.register_activation("test_doubler", Doubler)
    try:
        layer = keras.layers.Dense(1, activation="test_doubler", kernel_initializer="ones")
        np.testing.assert_allclose(to_numpy(layer(np.ones((1, 2)))), [[4.0]])
    finally:
        keras_swish.activations._REGISTRY.pop("test_doubler")


@pytest.mark.parametrize(
    "factory, shape, beta_shape",
    [
        (
            lambda a: L.Conv2D(4, 3, data_format="channels_first", activation=a),
            (3, 8, 6),
            (4,),
        ),
        (
            lambda a: L.Conv1D(5, 2, data_format="channels_first", activation=a),
            (2, 7),
            (5,),
        ),
        (
            lambda a: L.DepthwiseConv2D(2, data_format="channels_first", activation=a),
            (3, None, None),
            (3,),
        ),
    ],
)
def test_channels_first_layers_get_one_beta_per_channel(factory, shape, beta_shape, tmp_path):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, factory("swish_beta")(inputs))
    assert [tuple(b.shape) for b in betas(model)] == [beta_shape]
    # Each channel's β acts on its own channel (axis 1).
    beta = np.linspace(0.5, 2.0, beta_shape[0]).astype("float32")
    betas(model)[0].assign(beta)
    linear = factory("linear")
    linear.build((None,) + shape)
    linear.set_weights(model.layers[-1].get_weights()[:-1])  # all but β
    data = np.random.default_rng(0).normal(size=(2,) + tuple(d or 5 for d in shape))

    def run(function, x):
        if keras.backend.backend() == "tensorflow":
            # TensorFlow's own CPU convolutions take NHWC only; XLA's take both.
            import tensorflow as tf

            return tf.function(function, jit_compile=True)(x)
        return function(x)

    out = to_numpy(run(model, data.astype("float32")))
    z = to_numpy(run(linear, data.astype("float32")))
    b = beta.reshape((1, -1) + (1,) * (z.ndim - 2))
    np.testing.assert_allclose(out, z / (1 + np.exp(-b * z)), rtol=1e-5, atol=1e-6)


def test_conv_lstm_builds_its_betas_with_the_model():
    inputs = keras.Input((2, 6, 6, 3))
    layer = L.ConvLSTM2D(4, 3, activation="swish_beta", recurrent_activation="swish_beta")
    model = keras.Model(inputs, layer(inputs))
    assert [tuple(b.shape) for b in betas(model)] == [(4,), (4,)]
    assert all(any(b is w for w in model.trainable_weights) for b in betas(model))
    out = to_numpy(model(np.ones((1, 2, 6, 6, 3), "float32")))
    assert out.shape == (1, 4, 4, 4) and np.isfinite(out).all()


def test_a_users_layer_builds_its_activation_where_it_calls_it():
    # The activation is called on a hidden tensor 4x the output's width.
    class FeedForward(keras.layers.Layer):
        def __init__(self, units, activation, **kwargs):
            super().__init__(**kwargs)
            self.activation = keras.activations.get(activation)
            self.hidden = L.Dense(4 * units)
            self.out = L.Dense(units)

        def build(self, input_shape):
            self.hidden.build(input_shape)
            self.out.build(input_shape[:-1] + (4 * self.out.units,))

        def call(self, x):
            return self.out(self.activation(self.hidden(x)))

        def compute_output_shape(self, input_shape):
            return input_shape[:-1] + (self.out.units,)

    inputs = keras.Input((3,))
    model = keras.Model(inputs, FeedForward(2, "swish_beta")(inputs))
    assert [tuple(b.shape) for b in betas(model)] == [(8,)]
    assert all(any(b is w for w in model.trainable_weights) for b in betas(model))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=2, verbose=0)
    assert not np.allclose(to_numpy(betas(model)[0]), 1.0)  # β trains


def test_a_channels_first_model_saved_before_beta_went_on_axis_1_loads_as_saved():
    # Saved with `shared_axes: null` and β on the last axis (width 5, 3 channels):
    # it loads with that β, not one of the new per-channel shape.
    inputs = keras.Input((3, 4, 5))
    layer = L.Conv2D(3, 1, data_format="channels_first", activation="swish_beta")
    model = keras.Model(inputs, layer(inputs))
    text = model.to_json()
    assert '"shared_axes": [2, 3]' in text  # saved explicitly from now on
    old = keras.models.model_from_json(text.replace('"shared_axes": [2, 3]', '"shared_axes": null'))
    assert [tuple(b.shape) for b in betas(old)] == [(5,)]
    again = keras.models.model_from_json(text)
    assert [tuple(b.shape) for b in betas(again)] == [(3,)]
