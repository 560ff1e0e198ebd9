"""Config sections and builders shared by the image-classification recipes."""

import dataclasses

import keras

from keras_swish.recipes.activations import check_activation
from keras_swish.recipes.config import ConfigError, check, validate_train
from keras_swish.recipes.image_data import DataError, make_image_data, parse_data_spec
from keras_swish.recipes.registry import Recipe, register_recipe
from keras_swish.recipes.schedules import WarmupExponentialDecay


@dataclasses.dataclass
class ImageDataConfig:
    source: str | None = None  # --data; None: the embedded digits
    data_dir: str | None = None  # --data-dir
    image_size: int = 224
    crop_area_min: float = 0.08
    random_flip: bool = True
    eval_crop: float = 0.875
    shuffle_buffer: int = 10000


@dataclasses.dataclass
class RMSPropConfig:
    learning_rate: float = 0.008  # per `base_batch_size` examples
    base_batch_size: int = 128  # peak lr = learning_rate · batch_size / base_batch_size
    rho: float = 0.9
    momentum: float = 0.9
    epsilon: float = 0.002
    warmup_epochs: float = 5.0
    decay_rate: float = 0.94
    decay_epochs: float = 2.5


_check = check  # the name the Inception-ResNet-v2 recipe uses

IMAGE_FLAGS = {
    "activation": "model.activation",
    "data": "data.source",
    "data_dir": "data.data_dir",
    "epochs": "train.epochs",
    "steps_per_epoch": "train.steps_per_epoch",
    "batch_size": "train.batch_size",
    "image_size": "data.image_size",
    "output": "train.output",
    "strategy": "train.strategy",
    "tpu": "train.tpu",
    "precision": "train.precision",
    "seed": "train.seed",
}


def validate_common(config):
    """Checks the sections every image recipe shares."""
    data, opt, train = config.data, config.optimizer, config.train
    try:
        check_activation(config.model.activation)
        parse_data_spec(data.source)
    except (ValueError, DataError) as error:
        raise ConfigError(str(error)) from None
    check(data.image_size >= 8, "data.image_size", data.image_size, "at least 8")
    check(0 < data.crop_area_min <= 1, "data.crop_area_min", data.crop_area_min, "in (0, 1]")
    check(0 < data.eval_crop <= 1, "data.eval_crop", data.eval_crop, "in (0, 1]")
    check(data.shuffle_buffer >= 1, "data.shuffle_buffer", data.shuffle_buffer, "positive")
    check(opt.learning_rate > 0, "optimizer.learning_rate", opt.learning_rate, "positive")
    check(opt.base_batch_size >= 1, "optimizer.base_batch_size", opt.base_batch_size, "positive")
    check(opt.warmup_epochs >= 0, "optimizer.warmup_epochs", opt.warmup_epochs, ">= 0")
    check(0 < opt.decay_rate <= 1, "optimizer.decay_rate", opt.decay_rate, "in (0, 1]")
    check(opt.decay_epochs > 0, "optimizer.decay_epochs", opt.decay_epochs, "positive")
    validate_train(train)


def preset_key(source):
    """The preset that applies to `--data source`: "embedded", "tfds:NAME", "folder:..."."""
    try:
        return parse_data_spec(source).preset
    except DataError as error:
        raise ConfigError(str(error)) from None


def make_data(config):
    data = config.data
    return make_image_data(
        parse_data_spec(data.source),
        data.data_dir,
        image_size=data.image_size,
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        crop_area_min=data.crop_area_min,
        random_flip=data.random_flip,
        eval_crop=data.eval_crop,
        shuffle_buffer=data.shuffle_buffer,
    )


def peak_learning_rate(config):
    """The reference rule: learning_rate · global batch / base_batch_size."""
    opt = config.optimizer
    return opt.learning_rate * config.train.batch_size / opt.base_batch_size


def make_rmsprop(config, steps_per_epoch):
    opt = config.optimizer
    schedule = WarmupExponentialDecay(
        peak=peak_learning_rate(config),
        warmup_steps=round(opt.warmup_epochs * steps_per_epoch),
        decay_steps=round(opt.decay_epochs * steps_per_epoch),
        decay_rate=opt.decay_rate,
    )
    return keras.optimizers.RMSprop(
        learning_rate=schedule, rho=opt.rho, momentum=opt.momentum, epsilon=opt.epsilon
    )


def make_loss(config):
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing)


def make_metrics(config):
    return [
        keras.metrics.CategoricalAccuracy(name="top1"),
        keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        # The data loss alone: `loss` also holds the L2 penalty of every kernel.
        keras.metrics.CategoricalCrossentropy(name="xent"),
    ]


def classifier_head(x, num_classes, dropout, regularizer, name):
    """Global average pooling, dropout and a float32 softmax classifier."""
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=regularizer,
        dtype="float32",  # the softmax stays float32 under mixed precision
        name=f"{name}_predictions",
    )(x)


def register_image_recipe(name, summary, default_config, presets, validate, build_network, docs):
    """Registers an image-classification recipe with the shared image pieces.

    Args:
        name: The recipe's name.
        summary: One line for `keras-swish recipes`.
        default_config: The config dataclass (model/data/optimizer/train).
        presets: Per-dataset overrides.
        validate: `config -> None`; raises `ConfigError`.
        build_network: `(model_config, input_shape, num_classes) -> keras.Model`.
        docs: How to run it, how long it takes and what it reaches.
    """

    def make_model(config, data):
        size = config.data.image_size
        return build_network(config.model, (size, size, 3), data.num_classes)

    return register_recipe(
        Recipe(
            name=name,
            summary=summary,
            default_config=default_config,
            presets=presets,
            preset_key=preset_key,
            validate=validate,
            make_data=make_data,
            make_model=make_model,
            make_optimizer=make_rmsprop,
            make_loss=make_loss,
            make_metrics=make_metrics,
            monitor="val_top1",
            flags=IMAGE_FLAGS,
            docs=docs,
        )
    )
