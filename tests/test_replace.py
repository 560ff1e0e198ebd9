"""`replace_activations`: the paper's one-line activation swap."""

import warnings

import keras
import numpy as np
import pytest

import keras_swish
from keras_swish import SwishBeta
from tests.backend_utils import swish_betas as betas
from tests.backend_utils import to_numpy

pytestmark = pytest.mark.all_backends


def count(model, cls):
    return sum(isinstance(layer, cls) for layer in model._flatten_layers(include_self=False))


def assert_other_weights_carried(old, new):
    old_values = {w.path: to_numpy(w) for w in old.weights}
    carried = 0
    for w in new.weights:
        if not any(w is b for b in betas(new)):
            np.testing.assert_array_equal(to_numpy(w), old_values[w.path], err_msg=w.path)
            carried += 1
    assert carried == len(old.weights)


def test_mobilenet_relu6_layers_become_swish_beta():
    base = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), classes=10)
    relus = count(base, keras.layers.ReLU)
    assert relus == 27
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its BatchNorm layers have γ: nothing to say
        swished = keras_swish.replace_activations(base, {"relu": "swish_beta"})
    assert count(swished, keras.layers.ReLU) == 0
    assert count(swished, SwishBeta) == relus
    assert len(betas(swished)) == relus
    assert swished.count_params() == base.count_params() + sum(
        int(np.prod(b.shape)) for b in betas(swished)
    )
    assert_other_weights_carried(base, swished)
    # The original model is untouched.
    assert count(base, keras.layers.ReLU) == relus and not betas(base)


def test_mobilenet_v2_relu6_key():
    base = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35
    )
    swished = keras_swish.replace_activations(base, {"relu6": "swish_beta"})
    assert count(swished, keras.layers.ReLU) == 0
    assert count(swished, SwishBeta) == 35
    assert_other_weights_carried(base, swished)
    out = to_numpy(swished(np.random.default_rng(0).normal(size=(2, 32, 32, 3))))
    assert out.shape == (2, 4) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a 55M-parameter build: checked once, on the default backend",
)
def test_inception_resnet_v2_activation_layers_and_args():
    base = keras.applications.InceptionResNetV2(weights=None, input_shape=(75, 75, 3), classes=10)
    relu_layers = [
        layer
        for layer in base.layers
        if isinstance(layer, keras.layers.Activation)
        and keras.activations.serialize(layer.activation) == "relu"
    ]
    # keras.applications builds it with BatchNorm γ off: the paper says Swish needs it.
    with pytest.warns(UserWarning, match=r"BatchNormalization layer\(s\) with scale=False"):
        swished = keras_swish.replace_activations(base, {"relu": "swish_beta"})
    assert count(swished, SwishBeta) == len(relu_layers) > 200
    assert not any(
        isinstance(layer, keras.layers.Activation)
        and keras.activations.serialize(layer.activation) == "relu"
        for layer in swished.layers
    )
    assert_other_weights_carried(base, swished)


def test_activation_arguments_layers_and_nested_models():
    inner = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="inner_dense")],
        name="inner",
    )
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 2, activation="relu", name="conv")(inputs)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.Activation("gelu", name="act_gelu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="tanh", name="tanh_dense")(x)
    x = inner(x)
    x = keras.layers.ReLU(negative_slope=0.1, name="leaky")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)

    new = keras_swish.replace_activations(model, {"relu": "swish_beta", "gelu": "swish"})
    layers = {layer.name: layer for layer in new._flatten_layers(include_self=False)}
    assert isinstance(layers["conv"].activation, SwishBeta)
    assert isinstance(layers["relu6"], SwishBeta)
    assert layers["act_gelu"].activation is keras.activations.silu
    assert layers["tanh_dense"].activation is keras.activations.tanh
    assert isinstance(layers["inner_dense"].activation, SwishBeta)
    assert isinstance(layers["leaky"], keras.layers.ReLU)  # a leaky ReLU is not "relu"
    assert layers["head"].activation is keras.activations.softmax
    assert [tuple(b.shape) for b in betas(new)] == [(3,), (3,), (8,)]
    assert_other_weights_carried(model, new)


def test_swish_beta_keys_and_kept_betas():
    inputs = keras.Input((5,))
    x = keras.layers.Dense(4, activation="swish_beta", name="a")(inputs)
    x = SwishBeta(name="standalone")(x)
    x = keras.layers.Dense(3, activation="relu", name="b")(x)
    model = keras.Model(inputs, x)
    for b in betas(model):
        b.assign(np.full(b.shape, 0.3, "float32"))
    # β not named in the mapping is carried over with the other weights.
    kept = keras_swish.replace_activations(model, {"relu": "gelu"})
    assert [tuple(b.shape) for b in betas(kept)] == [(4,), (4,)]
    np.testing.assert_allclose([to_numpy(b) for b in betas(kept)], 0.3)
    # And "swish_beta" is itself a key.
    back = keras_swish.replace_activations(model, {"swish_beta": "relu"})
    assert not betas(back)
    data = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    reference = keras.Model(
        inputs,
        keras.layers.Dense(3, activation="relu")(
            keras.layers.Activation("relu")(keras.layers.Dense(4, activation="relu")(inputs))
        ),
    )
    reference.set_weights(back.get_weights())
    np.testing.assert_allclose(to_numpy(back(data)), to_numpy(reference(data)), rtol=1e-6)


def test_layer_class_targets_and_saving(tmp_path):
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3, activation="relu")(inputs)
    model = keras.Model(inputs, outputs)
    new = keras_swish.replace_activations(model, {"relu": SwishBeta})
    assert isinstance(new.layers[-1].activation, SwishBeta)
    new.save(tmp_path / "swapped.keras")
    restored = keras.models.load_model(tmp_path / "swapped.keras", safe_mode=True)
    assert len(betas(restored)) == 1


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({}, "non-empty dict"),
        ("relu", "non-empty dict"),
        ({1: "relu"}, "key=1"),
        ({"relu": 3}, r"mapping\['relu'\]"),
        ({"relu": "swish_bta"}, "Did you mean 'swish_beta'"),
    ],
)
def test_bad_mappings_are_explained(mapping, match):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="relu")(inputs))
    with pytest.raises(ValueError, match=match):
        keras_swish.replace_activations(model, mapping)


def test_subclassed_models_are_refused():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Functional or Sequential"):
        keras_swish.replace_activations(Sub(), {"relu": "swish_beta"})


def test_a_top_level_sequential_model():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    new = keras_swish.replace_activations(model, {"relu": "swish_beta"})
    assert isinstance(new, keras.Sequential)
    assert isinstance(new.layers[0].activation, SwishBeta)
    assert [tuple(b.shape) for b in betas(new)] == [(8,)]
    assert_other_weights_carried(model, new)


def test_two_nested_backbones_with_the_same_layer_names_keep_their_own_weights():
    def backbone(name, seed):
        inputs = keras.Input((4,))
        x = keras.layers.Dense(
            5,
            activation="relu",
            name="conv1",
            kernel_initializer=keras.initializers.RandomNormal(seed=seed),
        )(inputs)
        return keras.Model(inputs, x, name=name)

    inputs = keras.Input((4,))
    first, second = backbone("first", 1), backbone("second", 2)
    model = keras.Model(inputs, keras.layers.Concatenate()([first(inputs), second(inputs)]))
    assert not np.allclose(to_numpy(first.weights[0]), to_numpy(second.weights[0]))
    new = keras_swish.replace_activations(model, {"relu": "swish_beta"})
    data = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    # β = 1 at the start: each backbone is Swish-1 over its own kernel.
    for name in ("first", "second"):
        old, cloned = model.get_layer(name), new.get_layer(name)
        z = data @ to_numpy(old.weights[0]) + to_numpy(old.weights[1])
        np.testing.assert_allclose(
            to_numpy(cloned(data)), z / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6
        )


def test_wrapped_layers_and_recurrent_activations():
    inputs = keras.Input((3, 4))
    x = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="relu"), name="td")(inputs)
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(5, activation="tanh", return_sequences=True), name="bi"
    )(x)
    x = keras.layers.GRU(4, recurrent_activation="sigmoid", name="gru")(x)
    model = keras.Model(inputs, x)
    new = keras_swish.replace_activations(
        model, {"relu": "swish_beta", "tanh": "swish_beta", "sigmoid": "hard_sigmoid"}
    )
    assert isinstance(new.get_layer("td").layer.activation, SwishBeta)
    bi = new.get_layer("bi")
    assert isinstance(bi.forward_layer.cell.activation, SwishBeta)
    assert isinstance(bi.backward_layer.cell.activation, SwishBeta)
    assert bi.forward_layer.cell.recurrent_activation is keras.activations.hard_sigmoid
    gru = new.get_layer("gru")
    assert gru.cell.recurrent_activation is keras.activations.hard_sigmoid
    assert isinstance(gru.cell.activation, SwishBeta)  # GRU's default activation is tanh
    assert sorted(tuple(b.shape) for b in betas(new)) == [(4,), (5,), (5,), (6,)]
    # The clone's wrapped layers are named outside the wrapper (other paths):
    # compared layer by layer, in order.
    for name in ("td", "bi", "gru"):
        kept = [w for w in new.get_layer(name).weights if not any(w is b for b in betas(new))]
        old = model.get_layer(name).weights
        assert len(kept) == len(old) > 0
        for a, b in zip(old, kept, strict=True):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_a_key_that_matches_nothing_is_reported():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="relu")(inputs))
    with pytest.warns(UserWarning, match=r"no activation of model .* is named 'gelu'"):
        new = keras_swish.replace_activations(model, {"relu": "swish_beta", "gelu": "relu"})
    assert isinstance(new.layers[-1].activation, SwishBeta)


def test_an_activation_left_alone_keeps_its_trained_beta_beside_a_replaced_one():
    inputs = keras.Input((3, 4))
    x = keras.layers.LSTM(5, activation="swish_beta", name="lstm")(inputs)
    model = keras.Model(inputs, x)
    (beta,) = betas(model)
    beta.assign(np.full(beta.shape, 0.3, "float32"))
    # Only the recurrent activation (sigmoid) is replaced: the trained β stays.
    new = keras_swish.replace_activations(model, {"sigmoid": "hard_sigmoid"})
    cell = new.get_layer("lstm").cell
    assert cell.recurrent_activation is keras.activations.hard_sigmoid
    np.testing.assert_allclose(to_numpy(cell.activation.beta), 0.3)
    # Replacing swish_beta itself gives a new β.
    fresh = keras_swish.replace_activations(model, {"swish_beta": "swish_beta"})
    np.testing.assert_allclose(to_numpy(fresh.get_layer("lstm").cell.activation.beta), 1.0)
