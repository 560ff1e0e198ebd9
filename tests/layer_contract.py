"""A small layer-contract check, in the spirit of Keras's private test helper.

`check_layer_contract` runs the checks every Keras layer is held to: config
round trip, serialize → JSON → deserialize, weight counts after build,
symbolic and eager calls, one `fit` step, and mixed precision keeping the
weights float32.
"""

import json
import warnings

import keras
import numpy as np

from tests.backend_utils import to_numpy


def check_layer_contract(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_weight_shapes,
    expected_trainable=None,
):
    """Checks the Keras layer contract for `layer_cls(**init_kwargs)`.

    Args:
        layer_cls: The layer class.
        init_kwargs: Constructor arguments.
        input_shape: Full input shape, batch included.
        expected_weight_shapes: Shapes of the layer's weights after build.
        expected_trainable: How many weights are trainable (default: all).
    """
    if expected_trainable is None:
        expected_trainable = len(expected_weight_shapes)
    rng = np.random.default_rng(0)
    x = rng.normal(size=input_shape).astype("float32")

    # Config round trip, and through JSON.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert isinstance(restored, layer_cls)
    assert restored.get_config() == config

    # Weight counts after build.
    layer = layer_cls(**init_kwargs)
    layer.build(input_shape)
    assert [tuple(w.shape) for w in layer.weights] == [tuple(s) for s in expected_weight_shapes]
    assert len(layer.trainable_weights) == expected_trainable
    assert len(layer.non_trainable_weights) == len(expected_weight_shapes) - expected_trainable

    # Symbolic call.
    layer = layer_cls(**init_kwargs)
    symbolic = layer(keras.KerasTensor((None,) + tuple(input_shape[1:])))
    assert tuple(symbolic.shape) == (None,) + tuple(input_shape[1:])
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(input_shape)

    # Eager call: same shape, dtype float32.
    eager = layer(x)
    assert tuple(eager.shape) == tuple(input_shape)
    assert keras.backend.standardize_dtype(eager.dtype) == "float32"

    # One fit step changes the trainable weights and only those.
    model = keras.Sequential([keras.Input(input_shape[1:]), layer_cls(**init_kwargs)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [to_numpy(w).copy() for w in model.weights]
    with warnings.catch_warnings():
        if expected_trainable == 0:
            warnings.filterwarnings("ignore", "The model does not have any trainable")
        history = model.fit(x, np.ones_like(x), batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    trainable = {id(w) for w in model.trainable_weights}
    assert len(trainable) == expected_trainable
    for w, b in zip(model.weights, before, strict=True):
        changed = not np.allclose(b, to_numpy(w))
        assert changed == (id(w) in trainable), f"{w.path}: changed={changed}"

    # Mixed precision: float16 compute, float32 weights.
    layer = layer_cls(**init_kwargs, dtype="mixed_float16")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    for w in layer.weights:
        assert keras.backend.standardize_dtype(w.dtype) == "float32"
