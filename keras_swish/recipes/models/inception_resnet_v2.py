"""Inception-ResNet-v2 with the activation at every nonlinearity and BatchNorm γ on.

The network is `keras.applications.InceptionResNetV2` (stem, 10 × block35,
reduction A, 20 × block17, reduction B, 10 × block8, residual scales
0.17 / 0.1 / 0.2, the last block8 without activation), rebuilt so that every
nonlinearity — each conv-BN unit and each block's output after its scaled
residual addition, 243 places, and the auxiliary head's two units — takes
the chosen activation, and every BatchNormalization keeps its scale γ: the
paper points out that Swish needs it, and `keras.applications` turns it off.
The residual scaling is a `Rescaling` and an `Add` layer, so `.keras` files
load in safe mode.

With `auxiliary_weight` > 0 (0.4, the default) the network also has TF-Slim's
auxiliary head (research/slim/nets/inception_resnet_v2.py, `AuxLogits`) on the
17 × 17 grid after the 20 block17: 5 × 5 average pooling with stride 3, a
1 × 1 conv-BN unit of 128, a conv-BN unit of 768 over the whole remaining
grid (5 × 5 at 299 × 299; both with the activation), and a classifier; its
loss is added with that weight in training only (`AuxiliaryLossClassifier`,
TF-Slim's `train_image_classifier.py`: `weights=0.4`, the same label
smoothing). Below 299 × 299 the grid can be smaller than 5 × 5 (3 × 3 at
75 × 75): the pooling window is then the whole grid. With 0 the model is the
plain functional network of one output.

Weight decay wd is the references' penalty wd·Σw²/2 (TF-Slim's
`l2_regularizer`), Keras's `L2(wd / 2)`, on every kernel and, with
`decay_biases` (the default), on the biases TF-Slim's
`inception_resnet_v2_arg_scope` decays too (`biases_regularizer`: the
residual 1 × 1 convolutions' and the classifiers'). Its training
settings live in `keras_swish.recipes.configs.inception_resnet_v2`.
"""

import dataclasses

import keras

from keras_swish.recipes.core.config import check
from keras_swish.recipes.models.activations import (
    activation_layer,
    activation_slug,
    is_piecewise_linear,
)
from keras_swish.recipes.models.auxiliary import AuxiliaryLossClassifier
from keras_swish.recipes.models.common import (
    classifier_head,
    reference_l2,
    validate_regularization,
)

MIN_IMAGE_SIZE = 75


@dataclasses.dataclass
class InceptionResNetV2Config:
    activation: str = "swish_beta"
    dropout: float = 0.2  # TF-Slim keeps 0.8 before the logits
    weight_decay: float = 4e-5  # penalty wd·Σw²/2 on every kernel (TF-Slim)
    batchnorm_momentum: float = 0.9997
    batchnorm_epsilon: float = 1e-3
    batchnorm_scale: bool = True  # forced on for activations that are not piecewise linear
    # The auxiliary head's loss weight in training (TF-Slim's AuxLogits, weights=0.4); 0: no head.
    auxiliary_weight: float = 0.4
    # L2 on the biases too (TF-Slim's arg scope: biases_regularizer, the same wd).
    decay_biases: bool = True


def validate(config):
    """Checks the `model` section and the input size."""
    model = config.model
    validate_regularization(model)
    check(
        model.batchnorm_epsilon > 0,
        "model.batchnorm_epsilon",
        model.batchnorm_epsilon,
        "positive",
    )
    check(
        model.auxiliary_weight >= 0,
        "model.auxiliary_weight",
        model.auxiliary_weight,
        ">= 0 (0: no auxiliary head)",
    )
    size = config.data.image_size
    check(size >= MIN_IMAGE_SIZE, "data.image_size", size, f"at least {MIN_IMAGE_SIZE}")


def build_inception_resnet_v2(model_config, input_shape, num_classes):
    """Inception-ResNet-v2 with the configured activation at every nonlinearity.

    Args:
        model_config: An `InceptionResNetV2Config`.
        input_shape: `(height, width, 3)`, at least 75×75.
        num_classes: Classifier width.

    Returns:
        A model named `inception_resnet_v2_<activation>`: the functional
        network, or with `auxiliary_weight` > 0 an `AuxiliaryLossClassifier`
        holding it (`.network`, two outputs: predictions and the auxiliary
        head's).
    """
    c = model_config
    regularizer = reference_l2(c.weight_decay)
    bias_regularizer = regularizer if c.decay_biases else None
    scale = c.batchnorm_scale or not is_piecewise_linear(c.activation)

    def act(x, name):
        return activation_layer(c.activation, rank=4, layer_name=f"{name}_act")(x)

    def unit(x, filters, kernel, name, strides=1, padding="same"):
        """Conv (no bias), BatchNorm, activation."""
        x = keras.layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=regularizer,
            name=name,
        )(x)
        x = keras.layers.BatchNormalization(
            momentum=c.batchnorm_momentum,
            epsilon=c.batchnorm_epsilon,
            scale=scale,
            name=f"{name}_bn",
        )(x)
        return act(x, name)

    def residual_block(x, block_type, residual_scale, name, activation=True):
        """x + scale · conv1x1(concat(branches)), then the activation."""
        if block_type == "block35":
            branches = [
                unit(x, 32, 1, f"{name}_b0"),
                unit(unit(x, 32, 1, f"{name}_b1_1"), 32, 3, f"{name}_b1_2"),
                unit(
                    unit(unit(x, 32, 1, f"{name}_b2_1"), 48, 3, f"{name}_b2_2"),
                    64,
                    3,
                    f"{name}_b2_3",
                ),
            ]
        elif block_type == "block17":
            b1 = unit(x, 128, 1, f"{name}_b1_1")
            b1 = unit(b1, 160, (1, 7), f"{name}_b1_2")
            branches = [unit(x, 192, 1, f"{name}_b0"), unit(b1, 192, (7, 1), f"{name}_b1_3")]
        else:  # block8
            b1 = unit(x, 192, 1, f"{name}_b1_1")
            b1 = unit(b1, 224, (1, 3), f"{name}_b1_2")
            branches = [unit(x, 192, 1, f"{name}_b0"), unit(b1, 256, (3, 1), f"{name}_b1_3")]
        mixed = keras.layers.Concatenate(name=f"{name}_mixed")(branches)
        up = keras.layers.Conv2D(
            x.shape[-1],
            1,
            kernel_initializer="he_normal",
            kernel_regularizer=regularizer,
            bias_regularizer=bias_regularizer,
            name=f"{name}_conv",
        )(mixed)
        up = keras.layers.Rescaling(residual_scale, name=f"{name}_scale")(up)
        x = keras.layers.Add(name=f"{name}_add")([x, up])
        return act(x, name) if activation else x

    inputs = keras.Input(input_shape, name="image")
    # Stem: 35 × 35 × 192 at 299 × 299.
    x = unit(inputs, 32, 3, "stem_1", strides=2, padding="valid")
    x = unit(x, 32, 3, "stem_2", padding="valid")
    x = unit(x, 64, 3, "stem_3")
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool_1")(x)
    x = unit(x, 80, 1, "stem_4", padding="valid")
    x = unit(x, 192, 3, "stem_5", padding="valid")
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool_2")(x)
    # Mixed 5b (Inception-A): 35 × 35 × 320.
    pool = keras.layers.AveragePooling2D(3, strides=1, padding="same", name="mixed_5b_pool")(x)
    x = keras.layers.Concatenate(name="mixed_5b")(
        [
            unit(x, 96, 1, "mixed_5b_b0"),
            unit(unit(x, 48, 1, "mixed_5b_b1_1"), 64, 5, "mixed_5b_b1_2"),
            unit(
                unit(unit(x, 64, 1, "mixed_5b_b2_1"), 96, 3, "mixed_5b_b2_2"),
                96,
                3,
                "mixed_5b_b2_3",
            ),
            unit(pool, 64, 1, "mixed_5b_b3"),
        ]
    )
    for i in range(1, 11):
        x = residual_block(x, "block35", 0.17, f"block35_{i}")
    # Mixed 6a (Reduction-A): 17 × 17 × 1088.
    b1 = unit(unit(x, 256, 1, "mixed_6a_b1_1"), 256, 3, "mixed_6a_b1_2")
    x = keras.layers.Concatenate(name="mixed_6a")(
        [
            unit(x, 384, 3, "mixed_6a_b0", strides=2, padding="valid"),
            unit(b1, 384, 3, "mixed_6a_b1_3", strides=2, padding="valid"),
            keras.layers.MaxPooling2D(3, strides=2, name="mixed_6a_pool")(x),
        ]
    )
    for i in range(1, 21):
        x = residual_block(x, "block17", 0.1, f"block17_{i}")
    if c.auxiliary_weight:
        # TF-Slim's AuxLogits on 'PreAuxLogits' (17 × 17 × 1088 at 299 × 299).
        aux = keras.layers.AveragePooling2D(
            (min(5, x.shape[1]), min(5, x.shape[2])), strides=3, padding="valid", name="aux_pool"
        )(x)
        aux = unit(aux, 128, 1, "aux_conv_1")
        aux = unit(aux, 768, tuple(aux.shape[1:3]), "aux_conv_2", padding="valid")
        aux = keras.layers.Flatten(name="aux_flatten")(aux)
        aux = keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_regularizer=regularizer,
            bias_regularizer=bias_regularizer,
            dtype="float32",
            name="aux_predictions",
        )(aux)
    # Mixed 7a (Reduction-B): 8 × 8 × 2080.
    b2 = unit(unit(x, 256, 1, "mixed_7a_b2_1"), 288, 3, "mixed_7a_b2_2")
    x = keras.layers.Concatenate(name="mixed_7a")(
        [
            unit(
                unit(x, 256, 1, "mixed_7a_b0_1"),
                384,
                3,
                "mixed_7a_b0_2",
                strides=2,
                padding="valid",
            ),
            unit(
                unit(x, 256, 1, "mixed_7a_b1_1"),
                288,
                3,
                "mixed_7a_b1_2",
                strides=2,
                padding="valid",
            ),
            unit(b2, 320, 3, "mixed_7a_b2_3", strides=2, padding="valid"),
            keras.layers.MaxPooling2D(3, strides=2, name="mixed_7a_pool")(x),
        ]
    )
    for i in range(1, 10):
        x = residual_block(x, "block8", 0.2, f"block8_{i}")
    # As in TF-Slim and Keras: the last block8 adds its residual unscaled, with
    # no activation after it.
    x = residual_block(x, "block8", 1.0, "block8_10", activation=False)
    x = unit(x, 1536, 1, "conv_7b")  # 8 × 8 × 1536
    outputs = classifier_head(
        x, num_classes, c.dropout, regularizer, "inception_resnet_v2", bias_regularizer
    )
    name = f"inception_resnet_v2_{activation_slug(c.activation)}"
    if not c.auxiliary_weight:
        return keras.Model(inputs, outputs, name=name)
    network = keras.Model(inputs, [outputs, aux], name=f"{name}_network")
    return AuxiliaryLossClassifier(network, c.auxiliary_weight, name=name)
