"""AuxiliaryLossClassifier: the auxiliary head's loss in training only, against NumPy."""

import keras
import numpy as np
import pytest

from keras_swish.recipes.models.auxiliary import AuxiliaryLossClassifier
from tests.recipes.run_checks import fresh_process_result

N, D, H, C = 6, 4, 5, 3
SMOOTHING, WEIGHT, L2 = 0.1, 0.4, 0.01


def _network():
    inputs = keras.Input((D,))
    hidden = keras.layers.Dense(H, kernel_regularizer=keras.regularizers.L2(L2), name="hidden")(
        inputs
    )
    main = keras.layers.Dense(C, activation="softmax", name="main")(hidden)
    aux = keras.layers.Dense(C, activation="softmax", name="aux")(hidden)
    return keras.Model(inputs, [main, aux], name="net")


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, D)).astype("float32")
    labels = rng.integers(0, C, N)
    return x, np.eye(C, dtype="float32")[labels], labels


def _model(loss=None, optimizer=None):
    model = AuxiliaryLossClassifier(_network(), WEIGHT, name="classifier")
    rng = np.random.default_rng(7)
    for weight in model.weights:
        weight.assign(rng.normal(scale=0.7, size=weight.shape).astype("float32"))
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(learning_rate=1.0),
        loss=loss or keras.losses.CategoricalCrossentropy(label_smoothing=SMOOTHING),
        metrics=[keras.metrics.CategoricalAccuracy(name="top1")],
    )
    return model


def _weights(model):
    net = model.network
    return {
        name: [keras.ops.convert_to_numpy(w) for w in net.get_layer(name).weights]
        for name in ("hidden", "main", "aux")
    }


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference(w, x, y, smoothing=SMOOTHING):
    """NumPy: loss parts, probabilities and the gradients of the training loss."""
    (w1, b1), (w2, b2), (w3, b3) = w["hidden"], w["main"], w["aux"]
    h = x @ w1 + b1
    p, q = _softmax(h @ w2 + b2), _softmax(h @ w3 + b3)
    ys = y * (1 - smoothing) + smoothing / C
    main = -np.mean(np.sum(ys * np.log(p), axis=1))
    aux = -np.mean(np.sum(ys * np.log(q), axis=1))
    penalty = L2 * np.sum(w1**2)
    dp, dq = (p - ys) / N, WEIGHT * (q - ys) / N  # at the logits
    dh = dp @ w2.T + dq @ w3.T
    grads = {
        "hidden": (x.T @ dh + 2 * L2 * w1, dh.sum(0)),
        "main": (h.T @ dp, dp.sum(0)),
        "aux": (h.T @ dq, dq.sum(0)),
    }
    return {"main": main, "aux": aux, "penalty": penalty, "p": p, "q": q, "grads": grads}


def _accuracy(probabilities, labels):
    return float(np.mean(probabilities.argmax(1) == labels))


def test_training_adds_the_weighted_auxiliary_loss_and_its_gradients():
    x, y, labels = _data()
    model = _model()
    before = _weights(model)
    ref = _reference(before, x, y)
    assert _accuracy(ref["p"], labels) != _accuracy(ref["q"], labels)

    logs = model.train_on_batch(x, y, return_dict=True)
    expected = ref["main"] + WEIGHT * ref["aux"] + ref["penalty"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert logs["top1"] == pytest.approx(_accuracy(ref["p"], labels))  # the main head's
    # SGD at rate 1: each weight moved by minus its gradient, the shared layer
    # by both heads' (the auxiliary one's × 0.4) and the penalty's.
    after = _weights(model)
    for name, grads in ref["grads"].items():
        for old, new, grad in zip(before[name], after[name], grads, strict=True):
            np.testing.assert_allclose(old - new, grad, rtol=1e-4, atol=1e-6)


def test_inference_and_evaluation_see_the_main_head_alone():
    x, y, labels = _data()
    model = _model()
    ref = _reference(_weights(model), x, y)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), ref["p"], rtol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), ref["p"], rtol=1e-5)
    predictions, auxiliary = model(x, training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(auxiliary), ref["q"], rtol=1e-5)
    assert model.output_shape == (None, C)
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(ref["main"] + ref["penalty"], rel=1e-5)
    assert logs["top1"] == pytest.approx(_accuracy(ref["p"], labels))


def test_compile_takes_one_loss_object_only():
    model = AuxiliaryLossClassifier(_network(), WEIGHT)
    for bad in (
        {"loss": "categorical_crossentropy"},
        {"loss": keras.losses.categorical_crossentropy},
        {"loss": [keras.losses.CategoricalCrossentropy()] * 2},
        {"loss": keras.losses.CategoricalCrossentropy(), "loss_weights": [1.0]},
    ):
        with pytest.raises(ValueError, match="takes one `keras.losses.Loss` object"):
            model.compile("sgd", **bad)
        assert not model.compiled  # nothing half-done


def test_under_mirrored_strategy_the_loss_is_the_global_batchs():
    import tensorflow as tf

    # tests/conftest.py splits the one CPU into two logical devices under TensorFlow.
    assert len(tf.config.list_logical_devices("CPU")) >= 2
    x, y, _ = _data()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _model()
    before = _weights(model)
    ref = _reference(before, x, y)
    logs = model.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0).history
    expected = ref["main"] + WEIGHT * ref["aux"] + ref["penalty"]
    assert logs["loss"][0] == pytest.approx(expected, rel=1e-5)
    after = _weights(model)
    for old, new, grad in zip(before["aux"], after["aux"], ref["grads"]["aux"], strict=True):
        np.testing.assert_allclose(old - new, grad, rtol=1e-4, atol=1e-6)


_FRESH = """
import sys, json
import numpy as np
import keras, keras_swish  # registers the classes a recipe writes
model = keras.models.load_model(sys.argv[1], safe_mode=True)
x = np.load(sys.argv[2])
y = np.load(sys.argv[3])
out = {
    "type": type(model).__name__,
    "predictions": keras.ops.convert_to_numpy(model(x)).tolist(),
    "loss": model.train_on_batch(x, y, return_dict=True)["loss"],
}
print("RESULT " + json.dumps(out))
"""


def test_saved_file_loads_and_trains_on_in_a_fresh_process(tmp_path):
    x, y, _ = _data()
    model = _model(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9))
    model.train_on_batch(x, y)  # an optimizer state to keep
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = fresh_process_result(_FRESH, path, tmp_path / "x.npy", tmp_path / "y.npy")
    ref = _reference(_weights(model), x, y)
    assert out["type"] == "AuxiliaryLossClassifier"
    np.testing.assert_allclose(out["predictions"], ref["p"], rtol=1e-5)
    # The compiled loss came back with the file: training there adds the auxiliary loss.
    expected = ref["main"] + WEIGHT * ref["aux"] + ref["penalty"]
    assert out["loss"] == pytest.approx(expected, rel=1e-5)


def test_bad_arguments_are_refused():
    inputs = keras.Input((D,))
    one = keras.Model(inputs, keras.layers.Dense(C)(inputs), name="one")
    with pytest.raises(ValueError, match="with two outputs .* one has 1"):
        AuxiliaryLossClassifier(one)
    with pytest.raises(ValueError, match="`auxiliary_weight` must be positive; got 0"):
        AuxiliaryLossClassifier(_network(), 0)
