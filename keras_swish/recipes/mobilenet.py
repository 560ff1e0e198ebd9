"""MobileNet (v1) on ImageNet, with the activation as a flag.

The paper's "MobileNet" row: ReLU 72.0 / 90.8, Swish-1 74.2 / 91.6, Swish
(trainable β) 74.2 / 91.7 top-1 / top-5 on ImageNet.

Run:
    keras-swish train mobilenet                      # embedded digits, CPU, ~2 min
    keras-swish train mobilenet --activation relu --data tfds:imagenet2012 \\
        --data-dir ~/tensorflow_datasets --output runs/mnet-relu

Reference settings (TF Model Garden, TPU): batch 4096, 500 epochs, RMSProp
(ρ 0.9, momentum 0.9, ε 0.002), lr 0.008 × batch/128 with ×0.94 every 2.5
epochs (staircase) after 5 epochs of linear warm-up, label smoothing 0.1, L2
1e-5, dropout 0.2; reported 72.3 % top-1 with ReLU6. On the embedded digits
the defaults shrink to what 4,000 28×28 images support (α = 0.5, BatchNorm
momentum 0.9, no flips, 5 epochs of batch 64): about 2 minutes on 2 CPU
cores, validation top-1 above 90 % (chance: 10 %).
"""

import dataclasses

import keras

from keras_swish.recipes import image_classification as ic
from keras_swish.recipes.activations import activation_layer, is_piecewise_linear
from keras_swish.recipes.config import ConfigError, TrainConfig, check

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
    weight_decay: float = 1e-5  # L2 on every kernel
    batchnorm_momentum: float = 0.99
    batchnorm_epsilon: float = 1e-3
    batchnorm_scale: bool = True  # forced on for activations that are not piecewise linear


@dataclasses.dataclass
class Config:
    model: MobileNetConfig = dataclasses.field(default_factory=MobileNetConfig)
    data: ic.ImageDataConfig = dataclasses.field(default_factory=ic.ImageDataConfig)
    optimizer: ic.RMSPropConfig = dataclasses.field(default_factory=ic.RMSPropConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(epochs=500, batch_size=4096)
    )


PRESETS = {
    "embedded": {
        "model": {"alpha": 0.5, "batchnorm_momentum": 0.9},
        "data": {
            "image_size": 28,
            "crop_area_min": 0.5,
            "random_flip": False,
            "eval_crop": 1.0,
            "shuffle_buffer": 4000,
        },
        "optimizer": {"warmup_epochs": 1.0, "decay_epochs": 1.0, "decay_rate": 0.8},
        "train": {"epochs": 5, "batch_size": 64},
    },
}


def validate(config):
    ic.validate_common(config)
    model = config.model
    check(model.alpha > 0, "model.alpha", model.alpha, "positive")
    check(model.depth_multiplier >= 1, "model.depth_multiplier", model.depth_multiplier, ">= 1")
    check(0 <= model.dropout < 1, "model.dropout", model.dropout, "in [0, 1)")
    check(model.weight_decay >= 0, "model.weight_decay", model.weight_decay, ">= 0")
    check(
        0 < model.batchnorm_momentum < 1,
        "model.batchnorm_momentum",
        model.batchnorm_momentum,
        "in (0, 1)",
    )
    if config.data.image_size < 28:
        raise ConfigError(
            "MobileNet needs 'data.image_size' of at least 28. "
            f"Received: data.image_size={config.data.image_size}"
        )


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
    regularizer = keras.regularizers.L2(c.weight_decay) if c.weight_decay else None
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
            depthwise_regularizer=regularizer,
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
    outputs = ic.classifier_head(x, num_classes, c.dropout, regularizer, "mobilenet")
    return keras.Model(inputs, outputs, name=f"mobilenet_{c.activation}")


RECIPE = ic.register_image_recipe(
    name="mobilenet",
    summary="MobileNet v1 (paper: ImageNet 72.0 ReLU / 74.2 Swish top-1)",
    default_config=Config,
    presets=PRESETS,
    validate=validate,
    build_network=build_mobilenet,
    docs=__doc__,
)
