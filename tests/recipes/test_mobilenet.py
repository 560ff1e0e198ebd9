"""The MobileNet recipe's network: activation everywhere, BatchNorm scale, size."""

import dataclasses

import keras
import numpy as np
import pytest

from keras_swish import SwishBeta
from keras_swish.recipes.core.schedules import WarmupExponentialDecay
from keras_swish.recipes.models.activations import ACTIVATIONS, activation_layer
from keras_swish.recipes.models.mobilenet_v1 import MobileNetConfig, build_mobilenet

KIND = {
    "relu": keras.layers.ReLU,
    "relu6": keras.layers.ReLU,
    "leaky_relu": keras.layers.LeakyReLU,
    "prelu": keras.layers.PReLU,
    "swish_beta": SwishBeta,
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_at_every_nonlinearity(name):
    model = build_mobilenet(MobileNetConfig(activation=name, alpha=0.25), (32, 32, 3), 10)
    acts = [layer for layer in model.layers if layer.name.endswith("_act")]
    assert len(acts) == 27  # after conv1 and after each of 13 depthwise + 13 pointwise
    assert all(isinstance(a, KIND.get(name, keras.layers.Activation)) for a in acts)
    others = [
        layer
        for layer in model.layers
        if isinstance(
            layer,
            (
                keras.layers.ReLU,
                keras.layers.PReLU,
                SwishBeta,
                keras.layers.LeakyReLU,
                keras.layers.Activation,
            ),
        )
        and layer not in acts
    ]
    assert others == []
    piecewise = ACTIVATIONS[name][1]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 27 and all(bn.scale for bn in bns)
    if not piecewise:  # scale can't be switched off for a curved activation
        c = MobileNetConfig(activation=name, alpha=0.25, batchnorm_scale=False)
        model = build_mobilenet(c, (32, 32, 3), 10)
        assert all(
            layer.scale
            for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        )


def test_activation_details_match_the_paper():
    leaky = activation_layer("leaky_relu")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(leaky(np.array([[-2.0, 3.0]]))), [[-0.02, 3.0]], rtol=1e-6
    )
    prelu = activation_layer("prelu", rank=4)
    prelu.build((None, 5, 5, 7))
    assert tuple(prelu.alpha.shape) == (1, 1, 7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(prelu.alpha), 0.25)
    relu6 = activation_layer("relu6")
    assert relu6.max_value == 6.0
    swish = activation_layer("swish")
    assert swish.activation is keras.activations.silu


def test_full_size_parameter_count_matches_keras_applications():
    reference = keras.applications.MobileNet(weights=None).count_params()
    relu = build_mobilenet(MobileNetConfig(activation="relu"), (224, 224, 3), 1000)
    assert relu.count_params() == reference == 4_253_864
    swish = build_mobilenet(MobileNetConfig(activation="swish_beta"), (224, 224, 3), 1000)
    betas = [layer.beta for layer in swish.layers if isinstance(layer, SwishBeta)]
    assert swish.count_params() == reference + sum(int(np.prod(b.shape)) for b in betas)
    widths = [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]  # pointwise outputs
    depthwise_inputs = [32] + widths[:-1]
    assert sum(int(np.prod(b.shape)) for b in betas) == 32 + sum(depthwise_inputs) + sum(widths)


def test_weight_decay_is_the_references_half_sum_of_squares_without_depthwise():
    # Model Garden: l2(l2_weight_decay / 2) on every kernel but the depthwise ones.
    config = dataclasses.replace(MobileNetConfig(), alpha=0.25, weight_decay=1e-4)
    model = build_mobilenet(config, (32, 32, 3), 10)
    regularized = [
        layer.kernel
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        and not isinstance(layer, keras.layers.DepthwiseConv2D)
    ]
    assert len(model.losses) == len(regularized) == 15  # stem, 13 pointwise, classifier
    expected = sum(
        1e-4 * float(np.sum(np.square(keras.ops.convert_to_numpy(k)))) / 2 for k in regularized
    )
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert total == pytest.approx(expected, rel=1e-5)
    everywhere = build_mobilenet(
        dataclasses.replace(config, regularize_depthwise=True), (32, 32, 3), 10
    )
    assert len(everywhere.losses) == 28


def test_warmup_exponential_decay():
    # Model Garden's LinearWarmup: the ramp ends at the decayed rate of step 10.
    schedule = WarmupExponentialDecay(peak=0.1, warmup_steps=10, decay_steps=5, decay_rate=0.5)
    values = [float(schedule(step)) for step in (0, 5, 10, 14, 15, 20)]
    np.testing.assert_allclose(values, [0.0, 0.0125, 0.025, 0.025, 0.0125, 0.00625], rtol=1e-6)
    restored = WarmupExponentialDecay.from_config(schedule.get_config())
    assert float(restored(12)) == pytest.approx(0.025)
