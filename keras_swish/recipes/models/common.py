"""Pieces every image model of the recipes shares."""

import keras

from keras_swish.recipes.core.config import check


def reference_l2(weight_decay):
    """The L2 regularizer of weight decay wd as TF-Slim and Model Garden mean it.

    Their wd is a penalty wd·Σw²/2 (`tf.nn.l2_loss`; Model Garden's image
    task divides by 2 "to match the implementation of tf.nn.l2_loss",
    official/vision/tasks/image_classification.py), while Keras's `L2(l)` is
    l·Σw²: the same penalty is `L2(wd / 2)`.

    Args:
        weight_decay: The reference's weight decay (0 for none).

    Returns:
        A `keras.regularizers.L2`, or None for no weight decay.
    """
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def classifier_head(x, num_classes, dropout, regularizer, name, bias_regularizer=None):
    """Global average pooling, dropout and a float32 softmax classifier."""
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=regularizer,
        bias_regularizer=bias_regularizer,
        dtype="float32",  # the softmax stays float32 under mixed precision
        name=f"{name}_predictions",
    )(x)


def validate_regularization(model):
    """Checks `dropout`, `weight_decay` and `batchnorm_momentum` of a `model` section."""
    check(0 <= model.dropout < 1, "model.dropout", model.dropout, "in [0, 1)")
    check(model.weight_decay >= 0, "model.weight_decay", model.weight_decay, ">= 0")
    check(
        0 < model.batchnorm_momentum < 1,
        "model.batchnorm_momentum",
        model.batchnorm_momentum,
        "in (0, 1)",
    )
