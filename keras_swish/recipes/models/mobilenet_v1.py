"""MobileNet v1 with the activation at every nonlinearity.

The network of Howard et al. (2017): a 3×3 stem and 13 depthwise-separable
blocks, each depthwise and pointwise convolution followed by BatchNorm and
the activation, then global pooling, dropout and the classifier. Its
training settings live in `keras_swish.recipes.configs.mobilenet`.

Weight decay follows the references' convention: `weight_decay` wd means a
penalty wd·Σw²/2 (TF-Slim's `l2_regularizer` and Model Garden's
`l2_weight_decay`, both `tf.nn.l2_loss`), which is Keras's `L2(wd / 2)`; the
stem, pointwise and classifier kernels get it, the depthwise kernels do not
(Model Garden's `DepthwiseSeparableConvBlock(regularize_depthwise=False)`,
official/vision/modeling/layers/nn_blocks.py).
"""

import dataclasses

import keras

from keras_swish.recipes.core.config import check
from keras_swish.recipes.models.activations import (
    activation_layer,
    activation_slug,
    is_piecewise_linear,
)
from keras_swish.recipes.models.common import (
    classifier_head,
    reference_l2,
    validate_regularization,
)

# (pointwise filters, depthwise stride) of the 13 depthwise-separable blocks.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


@dataclasses.dataclass
class MobileNetConfig:
    activation: str = "swish_beta"
    alpha: float = 1.0  # width multiplier
    depth_multiplier: int = 1
    dropout: float = 0.2
    weight_decay: float = 1e-5  # penalty wd·Σw²/2, as in the references
    regularize_depthwise: bool = False  # the references leave depthwise kernels alone
    batchnorm_momentum: float = 0.997
    batchnorm_epsilon: float = 1e-3
    batchnorm_scale: bool = True  # forced on for activations that are not piecewise linear


def validate(config):
    """Checks the `model` section (a `MobileNetConfig`) and the input size."""
    model = config.model
    check(model.alpha > 0, "model.alpha", model.alpha, "positive")
    check(model.depth_multiplier >= 1, "model.depth_multiplier", model.depth_multiplier, ">= 1")
    validate_regularization(model)
    check(config.data.image_size >= 28, "data.image_size", config.data.image_size, "at least 28")


def build_mobilenet(model_config, input_shape, num_classes):
    """MobileNet v1 with the configured activation after every BatchNorm.

    Args:
        model_config: A `MobileNetConfig`.
        input_shape: `(height, width, 3)`.
        num_classes: Classifier width.

    Returns:
        A functional `keras.Model` named `mobilenet_<activation>`.
    """
    c = model_config
    regularizer = reference_l2(c.weight_decay)
    depthwise_regularizer = regularizer if c.regularize_depthwise else None
    scale = c.batchnorm_scale or not is_piecewise_linear(c.activation)

    def bn_act(x, name):
        x = keras.layers.BatchNormalization(
            momentum=c.batchnorm_momentum,
            epsilon=c.batchnorm_epsilon,
            scale=scale,
            name=f"{name}_bn",
        )(x)
        return activation_layer(c.activation, rank=4, layer_name=f"{name}_act")(x)

    def width(filters):
        return max(8, int(filters * c.alpha))

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(
        width(32),
        3,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name="conv1",
    )(inputs)
    x = bn_act(x, "conv1")
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        x = keras.layers.DepthwiseConv2D(
            3,
            strides=stride,
            padding="same",
            use_bias=False,
            depth_multiplier=c.depth_multiplier,
            depthwise_initializer="he_normal",
            depthwise_regularizer=depthwise_regularizer,
            name=f"conv_dw_{i}",
        )(x)
        x = bn_act(x, f"conv_dw_{i}")
        x = keras.layers.Conv2D(
            width(filters),
            1,
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=regularizer,
            name=f"conv_pw_{i}",
        )(x)
        x = bn_act(x, f"conv_pw_{i}")
    outputs = classifier_head(x, num_classes, c.dropout, regularizer, "mobilenet")
    return keras.Model(inputs, outputs, name=f"mobilenet_{activation_slug(c.activation)}")
