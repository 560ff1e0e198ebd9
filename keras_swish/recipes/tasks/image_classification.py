"""The image-classification task: data, optimizer, loss, metrics of the image recipes.

A model builder (`keras_swish.recipes.models`) and a config
(`keras_swish.recipes.configs`) make a recipe of this task with
`image_recipe(...)`. An epoch is `train.steps_per_epoch` optimizer steps
(default one pass over the data). RMSProp schedules count warm-up and decay
in passes over the training data, whatever the steps per epoch; SGD step
schedules drop the rate at fractions of the run (its epochs × steps per
epoch), as He et al. and their successors define them.
"""

import dataclasses

import keras

from keras_swish.recipes.core.config import ConfigError, check, validate_train
from keras_swish.recipes.core.registry import Recipe
from keras_swish.recipes.core.schedules import WarmupExponentialDecay
from keras_swish.recipes.data.images import (
    AUGMENTATIONS,
    NORMALIZATIONS,
    PAD_MODES,
    DataError,
    make_image_data,
    parse_data_spec,
)
from keras_swish.recipes.models.activations import check_activation


@dataclasses.dataclass
class ImageDataConfig:
    source: str | None = None  # --data; None: the embedded digits
    data_dir: str | None = None  # --data-dir
    image_size: int = 224
    crop_area_min: float = 0.08
    random_flip: bool = True
    eval_crop: float = 0.875
    shuffle_buffer: int = 10000
    validation_fraction: float = 0.1  # carved from train when a dataset has no validation split
    augmentation: str = "inception"  # or "pad_crop" (CIFAR: pad, random crop, flip)
    pad: int = 4  # pixels of padding for "pad_crop"
    pad_mode: str = "zeros"  # or "reflect" (Wide ResNet's Torch code: the image mirrored)
    normalize: str = (
        "symmetric"  # pixels to [-1, 1]; or "cifar10"/"cifar100"/"imagenet" per channel
    )
    # TF-Slim's random brightness (± 32/255) and saturation (× 0.5–1.5) after the
    # "inception" crop and flip (inception_preprocessing.distort_color, fast mode).
    color_distortion: bool = False


@dataclasses.dataclass
class RMSPropConfig:
    learning_rate: float = 0.008  # per `base_batch_size` examples
    base_batch_size: int = 128  # peak lr = learning_rate · batch_size / base_batch_size
    # Model Garden scales by the integer batch_size // base_batch_size.
    integer_batch_ratio: bool = False
    rho: float = 0.9
    momentum: float = 0.9
    epsilon: float = 0.002
    warmup_epochs: float = 5.0
    decay_rate: float = 0.94
    decay_epochs: float = 2.5
    # Divide the rate by decay_rate^(warmup_epochs / decay_epochs), so that the
    # decay goes on from the end of the warm-up as if it started there
    # (tensorflow/tpu inception_v4.py: "Adjust the initial learning rate for
    # warmup"); Model Garden's LinearWarmup does not.
    decay_after_warmup: bool = False


@dataclasses.dataclass
class SGDConfig:
    """SGD with momentum and a step schedule: the CIFAR papers' optimizer."""

    learning_rate: float = 0.1  # per `base_batch_size` examples
    base_batch_size: int = 128  # peak lr = learning_rate · batch_size / base_batch_size
    momentum: float = 0.9
    nesterov: bool = False
    # The rate is multiplied by `decay_factor` at each of these fractions of the
    # run (so a shorter --epochs keeps the shape of the schedule).
    decay_at: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.75])
    decay_factor: float = 0.1
    # Steps at `warmup_factor` × the rate before it starts (He et al. 2016b warm up
    # ResNet-164 at 0.01 for ~400 iterations); 0: none.
    warmup_steps: int = 0
    warmup_factor: float = 0.1


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


# The data an ImageNet experiment reads, and its size (to print a schedule before any data).
IMAGENET_DATA = ("tfds:imagenet2012", "tfds:imagenet2012:*", "folder:*")
IMAGENET_TRAIN_EXAMPLES = 1_281_167


def embedded_data(image_size):
    """The `data` overrides of an experiment on the embedded 28×28 digits."""
    return {
        "source": None,
        "image_size": image_size,
        "crop_area_min": 0.5,  # small digits: mild crops
        "random_flip": False,  # a flipped digit is another glyph
        "color_distortion": False,  # grey digits
        "eval_crop": 1.0,
        "shuffle_buffer": 4000,  # not used by the indexable digits; kept for the record
    }


def _validate_sgd(opt):
    check(opt.learning_rate > 0, "optimizer.learning_rate", opt.learning_rate, "positive")
    check(opt.base_batch_size >= 1, "optimizer.base_batch_size", opt.base_batch_size, "positive")
    check(0 <= opt.momentum < 1, "optimizer.momentum", opt.momentum, "in [0, 1)")
    check(
        all(0 < f < 1 for f in opt.decay_at) and list(opt.decay_at) == sorted(opt.decay_at),
        "optimizer.decay_at",
        list(opt.decay_at),
        "increasing fractions of the run in (0, 1)",
    )
    check(0 < opt.decay_factor <= 1, "optimizer.decay_factor", opt.decay_factor, "in (0, 1]")
    check(opt.warmup_steps >= 0, "optimizer.warmup_steps", opt.warmup_steps, ">= 0")
    check(0 < opt.warmup_factor <= 1, "optimizer.warmup_factor", opt.warmup_factor, "in (0, 1]")


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
    check(
        data.augmentation in AUGMENTATIONS,
        "data.augmentation",
        data.augmentation,
        f"one of {', '.join(AUGMENTATIONS)}",
    )
    check(data.pad >= 0, "data.pad", data.pad, ">= 0")
    check(data.pad_mode in PAD_MODES, "data.pad_mode", data.pad_mode, "zeros or reflect")
    check(
        data.pad_mode == "zeros" or data.pad < data.image_size,
        "data.pad",
        data.pad,
        f"less than data.image_size ({data.image_size}) to reflect the image",
    )
    check(
        not data.color_distortion or data.augmentation == "inception",
        "data.color_distortion",
        data.color_distortion,
        "false with augmentation pad_crop (it follows the inception crops)",
    )
    check(
        data.normalize in NORMALIZATIONS,
        "data.normalize",
        data.normalize,
        f"one of {', '.join(NORMALIZATIONS)}",
    )
    check(
        0 < data.validation_fraction < 0.5,
        "data.validation_fraction",
        data.validation_fraction,
        "in (0, 0.5)",
    )
    if isinstance(opt, SGDConfig):
        _validate_sgd(opt)
        validate_train(train)
        return
    check(opt.learning_rate > 0, "optimizer.learning_rate", opt.learning_rate, "positive")
    check(opt.base_batch_size >= 1, "optimizer.base_batch_size", opt.base_batch_size, "positive")
    check(opt.warmup_epochs >= 0, "optimizer.warmup_epochs", opt.warmup_epochs, ">= 0")
    check(0 < opt.decay_rate <= 1, "optimizer.decay_rate", opt.decay_rate, "in (0, 1]")
    check(opt.decay_epochs > 0, "optimizer.decay_epochs", opt.decay_epochs, "positive")
    validate_train(train)


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
        validation_fraction=data.validation_fraction,
        augmentation=data.augmentation,
        pad=data.pad,
        pad_mode=data.pad_mode,
        normalize=data.normalize,
        color_distortion=data.color_distortion,
    )


def peak_learning_rate(config):
    """The reference rule: learning_rate · global batch / base_batch_size."""
    opt = config.optimizer
    if getattr(opt, "integer_batch_ratio", False):
        return opt.learning_rate * (config.train.batch_size // opt.base_batch_size)
    return opt.learning_rate * config.train.batch_size / opt.base_batch_size


def make_schedule(config, steps_per_pass):
    """The learning rate over optimizer steps, defined in passes over the training data.

    RMSProp recipes: warm-up and staircase exponential decay. SGD recipes: a
    step schedule whose steps fall at fractions of the run (its epochs ×
    steps per epoch).
    """
    opt = config.optimizer
    if isinstance(opt, SGDConfig):
        total = config.train.epochs * (config.train.steps_per_epoch or steps_per_pass)
        peak = peak_learning_rate(config)
        boundaries = [max(1, round(f * total)) for f in opt.decay_at]
        values = [peak * opt.decay_factor**i for i in range(len(boundaries) + 1)]
        if opt.warmup_steps:
            boundaries = [opt.warmup_steps] + [max(b, opt.warmup_steps + 1) for b in boundaries]
            values = [peak * opt.warmup_factor] + values
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    peak = peak_learning_rate(config)
    if opt.decay_after_warmup:
        peak /= opt.decay_rate ** (opt.warmup_epochs / opt.decay_epochs)
    return WarmupExponentialDecay(
        peak=peak,
        warmup_steps=round(opt.warmup_epochs * steps_per_pass),
        decay_steps=round(opt.decay_epochs * steps_per_pass),
        decay_rate=opt.decay_rate,
    )


def make_optimizer(config, schedule):
    """RMSProp or SGD, after the type of the config's `optimizer` section."""
    opt = config.optimizer
    if isinstance(opt, SGDConfig):
        return keras.optimizers.SGD(
            learning_rate=schedule, momentum=opt.momentum, nesterov=opt.nesterov
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
        # The data loss alone: `loss` is label-smoothed (0.1 for the ImageNet recipes) and
        # also holds the L2 penalty (and Inception-ResNet-v2's auxiliary loss, in training).
        keras.metrics.CategoricalCrossentropy(name="xent"),
    ]


def image_recipe(name, summary, default_config, validate_model, build_network, docs):
    """An image-classification `Recipe` from a model builder and its config.

    Args:
        name: The recipe's name.
        summary: One line for `keras-swish recipes`.
        default_config: The config dataclass (model/data/optimizer/train)
            with the reference defaults.
        validate_model: `config -> None`: checks the `model` section;
            raises `ConfigError`.
        build_network: `(model_config, input_shape, num_classes) -> keras.Model`.
        docs: How to run it, how long it takes and what it reaches.
    """

    def validate(config):
        validate_common(config)
        validate_model(config)

    def make_model(config, data):
        size = config.data.image_size
        return build_network(config.model, (size, size, 3), data.num_classes)

    return Recipe(
        name=name,
        task="image_classification",
        summary=summary,
        default_config=default_config,
        validate=validate,
        make_data=make_data,
        make_model=make_model,
        make_schedule=make_schedule,
        make_optimizer=make_optimizer,
        make_loss=make_loss,
        make_metrics=make_metrics,
        monitor="val_top1",
        flags=IMAGE_FLAGS,
        docs=docs,
    )
