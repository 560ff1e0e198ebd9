"""`activation="swish_beta"` in keras-hub layers."""

import keras
import keras_hub  # a dependency: a broken install fails here, not skips
import numpy as np
import pytest

from keras_swish import SwishBeta
from tests.backend_utils import swish_betas, to_numpy

pytestmark = pytest.mark.all_backends


def test_transformer_encoder_and_decoder_own_their_beta(tmp_path):
    tokens = keras.Input((5, 8))
    encoded = keras_hub.layers.TransformerEncoder(
        intermediate_dim=16, num_heads=2, activation="swish_beta", name="enc"
    )(tokens)
    decoded = keras_hub.layers.TransformerDecoder(
        intermediate_dim=12, num_heads=2, activation="swish_beta", name="dec"
    )(tokens, encoded)
    model = keras.Model(tokens, decoded)
    betas = swish_betas(model)
    # β exists before any data flows: one per FFN, sized by its intermediate_dim.
    assert sorted(tuple(b.shape) for b in betas) == [(12,), (16,)]
    assert all(any(b is w for w in model.trainable_weights) for b in betas)
    assert isinstance(model.get_layer("enc").activation, SwishBeta)

    rng = np.random.default_rng(0)
    for b in betas:
        b.assign(rng.uniform(0.5, 1.5, size=b.shape).astype("float32"))
    data = rng.normal(size=(2, 5, 8)).astype("float32")
    model.save(tmp_path / "hub.keras")
    restored = keras.models.load_model(tmp_path / "hub.keras", safe_mode=True)
    restored_betas = sorted((to_numpy(b).tolist() for b in swish_betas(restored)), key=len)
    assert restored_betas == sorted((to_numpy(b).tolist() for b in betas), key=len)
    np.testing.assert_allclose(
        to_numpy(restored(data)), to_numpy(model(data)), rtol=1e-5, atol=1e-5
    )


def test_a_layer_with_two_inputs_has_its_beta_before_any_data():
    import keras

    from tests.backend_utils import swish_betas

    tokens = keras.Input((6, 8))
    positions = keras.Input((2,), dtype="int32")
    head = keras_hub.layers.MaskedLMHead(vocabulary_size=7, activation="swish_beta")
    model = keras.Model([tokens, positions], head(tokens, mask_positions=positions))
    assert [tuple(b.shape) for b in swish_betas(model)] == [(7,)]
