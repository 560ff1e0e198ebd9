"""Fixtures of the BetaMonitor and beta-report tests."""

import os
import types

import keras
import pytest

from keras_swish.callbacks import BetaMonitor
from keras_swish.callbacks.betas import find_swish_layers
from tests.callbacks.helpers import build_model, data


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A log dir with two epochs of BetaMonitor and TensorBoard summaries."""
    keras.utils.set_random_seed(0)
    log_dir = str(tmp_path_factory.mktemp("run"))
    model = build_model()
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x, y = data()
    callbacks = [
        keras.callbacks.TensorBoard(log_dir, update_freq=3, write_graph=False),
        BetaMonitor(log_dir, probe=x[:4]),
    ]
    model.fit(x, y, batch_size=8, epochs=2, callbacks=callbacks, verbose=0)
    model_path = os.path.join(log_dir, "model.keras")
    model.save(model_path)
    betas = {name: layer.beta.numpy().astype("float32") for name, layer in find_swish_layers(model)}
    return types.SimpleNamespace(
        log_dir=log_dir, model=model, model_path=model_path, betas=betas, probe=x[:4]
    )
