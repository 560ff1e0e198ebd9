"""Shared pieces of the BetaMonitor and beta-report tests.

`build_model()` holds SwishBeta at several depths: a Conv2D activation, a
standalone layer, a nested model holding a Conv2D activation and a single
shared β, an LSTM's activation and recurrent activation, and a Dense
activation. The `trained_run` fixture (conftest.py) trains it for two
epochs with BetaMonitor and keras.callbacks.TensorBoard on one log dir.
"""

import os

import keras
import numpy as np

import keras_swish

EXPECTED_LAYERS = {  # name → number of β values
    "conv2d/swish_beta": 8,
    "swish_beta": 8,
    "conv2d_1/swish_beta": 8,
    "block/swish_beta": 1,  # its path "swish_beta/beta" is taken: owner in front
    "lstm/lstm_cell/swish_beta": 6,
    "lstm/lstm_cell/recurrent_swish_beta": 6,
    "dense/swish_beta": 3,
}


def build_model():
    """The test model; fixed layer names for a fresh Keras session."""
    keras.backend.clear_session()
    outer_input = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="swish_beta")(outer_input)
    x = keras_swish.SwishBeta(name="swish_beta")(x)  # same path as the one in block
    inner_input = keras.Input((4, 4, 8))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="swish_beta")(inner_input)
    y = keras_swish.SwishBeta(shared_axes=[1, 2, 3])(y)
    x = keras.Model(inner_input, y, name="block")(x)
    x = keras.layers.Reshape((4, 32))(x)
    x = keras.layers.LSTM(6, activation="swish_beta", recurrent_activation="swish_beta")(x)
    x = keras.layers.Dense(3, activation="swish_beta")(x)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(outer_input, outputs, name="outer")


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32") * 2.0
    y = rng.normal(size=(n, 1)).astype("float32")
    return x, y


def read_events(directory):
    """Every tensor summary under `directory`: {tag: [(step, ndarray), ...]}."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        directory, size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return {
        tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()[event_accumulator.TENSORS]
    }


def event_files(directory):
    return sorted(f for f in os.listdir(directory) if f.startswith("events.out.tfevents"))
