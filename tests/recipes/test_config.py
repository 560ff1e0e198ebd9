"""Recipe configs and experiments: validation, precedence, references, schedules, bad input."""

import dataclasses
import math

import numpy as np
import pytest

from keras_swish.recipes.core import runner
from keras_swish.recipes.core.config import ConfigError, merge, parse_set
from keras_swish.recipes.core.registry import (
    find_experiment,
    get_recipe,
    list_experiments,
    list_recipes,
)
from keras_swish.recipes.core.schedules import schedule_points
from keras_swish.recipes.tasks.image_classification import peak_learning_rate

IMAGENET = 1_281_167


@pytest.mark.parametrize("experiment", list_experiments(), ids=lambda e: e.name)
def test_every_experiment_validates(experiment):
    recipe = get_recipe(experiment.recipe)
    config = merge(recipe.default_config(), [(experiment.overrides, experiment.name)])
    recipe.validate(config)
    if "source" in experiment.overrides.get("data", {}):
        assert experiment.reads(config.data.source)  # its own default data
    else:  # no default data: the user must give some
        with pytest.raises(ConfigError, match=f"Experiment '{experiment.name}' needs --data"):
            runner.resolve(experiment.name)
    assert set(recipe.flags.values()) <= {
        f"{section}.{field.name}"
        for section in ("model", "data", "optimizer", "train")
        for field in dataclasses.fields(getattr(config, section))
    }


@pytest.mark.parametrize("recipe", list_recipes(), ids=lambda r: r.name)
def test_every_recipe_has_one_default_experiment_on_embedded_data(recipe):
    experiment = find_experiment(recipe.name)
    assert experiment.default and experiment.reads(None) and experiment.reads("embedded")


def test_mobilenet_imagenet_is_model_gardens_mobilenet_imagenet():
    # official/vision/configs/image_classification.py, 'mobilenet_imagenet'.
    recipe, experiment, config = runner.resolve("mobilenet/imagenet")
    assert "mobilenet_imagenet" in experiment.reference
    assert (config.train.batch_size, config.train.epochs) == (4096, 500)
    opt = config.optimizer
    assert (opt.rho, opt.momentum, opt.epsilon) == (0.9, 0.9, 0.002)
    assert (opt.decay_rate, opt.decay_epochs, opt.warmup_epochs) == (0.98, 2.5, 5.0)
    assert config.train.label_smoothing == 0.1
    model = config.model
    assert (model.weight_decay, model.regularize_depthwise, model.dropout) == (1e-5, False, 0.2)
    assert (model.batchnorm_momentum, model.batchnorm_epsilon) == (0.997, 1e-3)
    assert (config.data.image_size, config.data.source) == (224, "tfds:imagenet2012")
    # classification_input.py: normalize_image(offset=MEAN_RGB, scale=STDDEV_RGB).
    assert config.data.normalize == "imagenet"
    from keras_swish.recipes.data.images import _to_float

    pixel = np.array([[[255, 128, 0]]], dtype=np.uint8)
    mean_rgb, stddev_rgb = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    np.testing.assert_allclose(
        _to_float(pixel, "imagenet").numpy(), (pixel - mean_rgb) / stddev_rgb, rtol=1e-5
    )


def test_inception_resnet_v2_imagenet_is_tf_slims():
    _, experiment, config = runner.resolve("inception_resnet_v2/imagenet")
    assert "train_image_classifier.py" in experiment.reference
    opt, model = config.optimizer, config.model
    # train_image_classifier.py: rmsprop_decay, rmsprop_momentum, opt_epsilon,
    # learning_rate_decay_factor, num_epochs_per_decay. The synchronous Inception-v4
    # script (tensorflow/tpu models/experimental/inception/inception_v4.py):
    # learning_rate 0.15 * train_batch_size / 256, cold_epochs 1 + warmup_epochs 2.
    assert (opt.rho, opt.momentum, opt.epsilon) == (0.9, 0.9, 1.0)
    assert (opt.decay_rate, opt.decay_epochs) == (0.94, 2.0)
    assert (opt.learning_rate, opt.base_batch_size, opt.warmup_epochs) == (0.15, 256, 3.0)
    assert config.train.batch_size == 640 and peak_learning_rate(config) == pytest.approx(0.375)
    assert opt.decay_after_warmup  # inception_v4.py: initial_learning_rate /= 0.94 ** (3 / 2)
    # train_image_classifier.py's preprocessing: inception_preprocessing (fast mode).
    assert config.data.color_distortion and config.data.crop_area_min == 0.1
    # inception_resnet_v2_arg_scope: weight_decay, batch_norm_decay, batch_norm_epsilon.
    assert (model.weight_decay, model.batchnorm_momentum, model.batchnorm_epsilon) == (
        4e-5,
        0.9997,
        1e-3,
    )
    assert config.data.image_size == 299
    # train_image_classifier.py: the AuxLogits loss, weights=0.4, the same label smoothing.
    assert model.auxiliary_weight == 0.4


def _model_garden_lr(step, peak, warmup, decay_steps, rate):
    """Model Garden's LinearWarmup over ExponentialDecay(staircase), written out."""
    after = peak * rate ** math.floor(step / decay_steps)
    if step < warmup:
        return peak * rate ** math.floor(warmup / decay_steps) * step / warmup
    return after


@pytest.mark.parametrize(
    "name, peak, warmup_epochs, decay_epochs, rate",
    [
        ("mobilenet/imagenet", 0.008 * (4096 // 128), 5, 2.5, 0.98),
        ("inception_resnet_v2/imagenet", 0.15 * 640 / 256 / 0.94**1.5, 3, 2.0, 0.94),
    ],
)
def test_image_schedules_at_fixed_fractions(name, peak, warmup_epochs, decay_epochs, rate):
    recipe, _, config = runner.resolve(name)
    steps_per_pass = IMAGENET // config.train.batch_size
    total = config.train.epochs * steps_per_pass
    schedule = recipe.make_schedule(config, steps_per_pass)
    warmup = round(warmup_epochs * steps_per_pass)
    decay = round(decay_epochs * steps_per_pass)
    for fraction, step, value in schedule_points(schedule, total):
        expected = _model_garden_lr(step, peak, warmup, decay, rate)
        assert value == pytest.approx(expected, rel=1e-5), (fraction, step)
    if name.startswith("mobilenet"):
        # 500 epochs of ×0.98 per 2.5 epochs: 1.8 % of the peak at the end, not 4e-6.
        assert schedule_points(schedule, total)[-1][2] / peak == pytest.approx(0.98**199, rel=1e-4)
        assert schedule_points(schedule, total)[2][2] / peak > 0.1  # halfway: 0.98^100


def _tpu_inception_v4_lr(step, batch_size):
    """tensorflow/tpu models/experimental/inception/inception_v4.py's rate, written out."""
    batches_per_epoch = 1281167 / batch_size
    initial = 0.15 * batch_size / 256  # learning_rate * train_batch_size / 256
    initial /= 0.94 ** ((2 + 1) / 2)  # (warmup_epochs + cold_epochs) / decay_epochs
    epoch = int(step / batches_per_epoch)
    if epoch < 1:  # cold_epochs: cold_learning_rate
        rate = 0.001
    elif epoch < 3:
        rate = epoch * initial / 3
    else:
        rate = initial * 0.94 ** math.floor(step / int(2 * batches_per_epoch))
    return max(rate, 0.0001 * initial)


def test_inception_resnet_v2_rates_are_the_tpu_scripts_after_the_warm_up():
    recipe, _, config = runner.resolve("inception_resnet_v2/imagenet")
    steps_per_pass = IMAGENET // config.train.batch_size
    schedule = recipe.make_schedule(config, steps_per_pass)
    # From epoch 4 on (the warm-up differs: linear from 0 here, stepped there),
    # in the middle of each decay period (there 2 × 2001.8 steps, here 2 × 2001).
    for period in range(2, config.train.epochs // 2):
        step = (2 * period + 1) * steps_per_pass
        expected = _tpu_inception_v4_lr(step, config.train.batch_size)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5), step
    assert float(schedule(3 * steps_per_pass)) == pytest.approx(0.3868, abs=1e-4)


def test_schedule_counts_passes_not_steps_per_epoch():
    # --steps-per-epoch only sets how often to validate and save.
    recipe, _, config = runner.resolve("mobilenet/imagenet", flags={"steps_per_epoch": 100})
    a = recipe.make_schedule(config, IMAGENET // 4096)
    recipe, _, config = runner.resolve("mobilenet/imagenet")
    b = recipe.make_schedule(config, IMAGENET // 4096)
    assert a.get_config() == b.get_config()
    assert b.decay_steps == round(2.5 * (IMAGENET // 4096))


def test_transformer_schedule_is_vaswanis():
    recipe, _, config = runner.resolve("transformer_nmt/wmt14")
    schedule = recipe.make_schedule(config, None)
    for step in (1, 100, 4000, 100_000, 300_000):  # Eq. 3 counts steps from 1
        expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert float(schedule(step - 1)) == pytest.approx(expected, rel=1e-5)


def test_recipes_cli_prints_the_schedule(capsys):
    from keras_swish.cli import main

    assert main(["recipes", "mobilenet/imagenet"]) == 0
    out = capsys.readouterr().out
    assert "156,000 steps" in out and "mobilenet_imagenet" in out
    rows = [line for line in out.splitlines() if "of peak)" in line]
    assert [row.split()[0] for row in rows] == ["0%", "25%", "50%", "75%", "100%"]
    assert "1.87% of peak" in rows[-1]


def test_precedence_defaults_experiment_yaml_flags_set(tmp_path):
    recipe, experiment, config = runner.resolve("mobilenet")
    assert experiment.name == "mobilenet/embedded"
    assert config.data.image_size == 28 and config.model.alpha == 0.5
    assert config.train.epochs == 5 and config.optimizer.rho == 0.9
    assert config.train.output == "runs/mobilenet-embedded-swish_beta"
    path = tmp_path / "my.yaml"
    path.write_text("model:\n  alpha: 0.25\ntrain:\n  epochs: 7\n  batch_size: 32\n")
    _, _, config = runner.resolve("mobilenet", config_file=str(path))
    assert (config.model.alpha, config.train.epochs, config.train.batch_size) == (0.25, 7, 32)
    _, _, config = runner.resolve(
        "mobilenet",
        config_file=str(path),
        flags={"epochs": 9, "activation": "relu"},
        overrides=parse_set(
            ["train.epochs=11", "optimizer.learning_rate=0.2", "model.weight_decay=4e-5"]
        ),
    )
    assert config.train.epochs == 11
    assert config.train.batch_size == 32
    assert config.model.activation == "relu"
    assert config.optimizer.learning_rate == 0.2
    assert config.model.weight_decay == 4e-5  # YAML 1.1 would read "4e-5" as a string
    assert config.train.output == "runs/mobilenet-embedded-relu"


def test_set_null_undoes_a_default():
    _, _, config = runner.resolve("transformer_nmt/wmt14")
    assert config.train.steps_per_epoch == 1000
    _, _, config = runner.resolve(
        "transformer_nmt/wmt14", overrides=parse_set(["train.steps_per_epoch=null"])
    )
    assert config.train.steps_per_epoch is None
    _, experiment, config = runner.resolve(
        "mobilenet", overrides=parse_set(["data.source=null", "train.tpu=null"])
    )
    assert config.data.source is None and config.train.tpu is None
    assert experiment.name == "mobilenet/embedded"


def test_the_data_source_picks_the_experiment():
    _, experiment, config = runner.resolve("mobilenet", flags={"data": "tfds:imagenet2012"})
    assert experiment.name == "mobilenet/imagenet"
    assert config.data.image_size == 224 and config.train.batch_size == 4096
    _, experiment, _ = runner.resolve("mobilenet", flags={"data": "folder:/data/imagenet"})
    assert experiment.name == "mobilenet/imagenet"


@pytest.mark.parametrize(
    "name, flags, match",
    [
        ("mobilenet", {"data": "tfds:cifar10"}, r"no experiment for --data tfds:cifar10"),
        ("mobilenet/imagenet", {"data": "tfds:cifar10"}, r"no settings for --data tfds:cifar10"),
        ("mobilenet/embedded", {"data": "tfds:imagenet2012"}, r"reads --data embedded"),
        ("mobilenet/cifar", {}, r"Unknown experiment 'mobilenet/cifar'"),
        ("mobilnet", {}, r"Unknown recipe 'mobilnet'. Recipes: .*mobilenet"),
        ("mobilenet", {"vocab_size": 10}, r"does not take --vocab-size"),
    ],
)
def test_unknown_pairings_are_refused(name, flags, match):
    with pytest.raises(ConfigError, match=match):
        runner.resolve(name, flags=flags)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["optimizer.learnin_rate=0.2"], r"Unknown config key 'optimizer.learnin_rate'.*rho"),
        (["optimiser.learning_rate=0.2"], r"Unknown config section 'optimiser'"),
        (["train.epochs=three"], r"'train.epochs': Value 'three'"),
        (["train.epochs=0"], r"'train.epochs' must be at least 1"),
        (["model.activation=swish_bta"], r"Unknown activation 'swish_bta'"),
        (["train.strategy=gpus"], r"'train.strategy' must be one of auto, default"),
        (["train.precision=fp16"], r"'train.precision' must be one of auto, float32"),
        (["epochs=3"], r"--set takes SECTION.KEY=VALUE"),
        (["data.image_size=16"], r"'data.image_size' must be at least 28"),
        (["data.validation_fraction=0.7"], r"'data.validation_fraction' must be in"),
        (["train.output=gs://bucket/runs/x"], r"'train.output' must be a local or mounted"),
        # OmegaConf's merge skips ???: the default would stay without a word.
        (["train.epochs=???"], r"--set: 'train.epochs' is \?\?\? \(OmegaConf's missing"),
        (["optimizer.decay_at=[0.5,'???']"], r"'optimizer.decay_at\[1\]' is \?\?\?"),
    ],
)
def test_bad_overrides_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        runner.resolve("mobilenet", overrides=parse_set(overrides))


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        runner.resolve("mobilenet", config_file=str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        runner.resolve("mobilenet", config_file=str(tmp_path / "bad.yaml"))
    (tmp_path / "template.yaml").write_text("optimizer:\n  learning_rate: ???\n")
    with pytest.raises(ConfigError, match=r"template.yaml: 'optimizer.learning_rate' is \?\?\?"):
        runner.resolve("mobilenet", config_file=str(tmp_path / "template.yaml"))
    (tmp_path / "other.yaml").write_text("experiment: inception_resnet_v2/embedded\n")
    with pytest.raises(ConfigError, match="is for 'inception_resnet_v2/embedded'"):
        runner.resolve("mobilenet", config_file=str(tmp_path / "other.yaml"))


def test_unknown_recipe():
    with pytest.raises(KeyError, match="Unknown recipe 'mobilnet'. Recipes: .*mobilenet"):
        get_recipe("mobilnet")


def test_step_schedules_are_checked_in_numpy_as_keras_computes_them():
    """`check_longer_schedule` evaluates PiecewiseConstantDecay in NumPy (see `_rates`)."""
    import keras
    import numpy as np

    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3, 5, 9], [1.0, 0.5, 0.1, 0.01])
    steps = np.arange(14, dtype="int64")
    expected = keras.ops.convert_to_numpy(schedule(steps))
    np.testing.assert_allclose(runner._rates(schedule, steps), expected, rtol=1e-6)
    np.testing.assert_allclose(runner._rates(0.25, steps), np.full(14, 0.25))
    # Schedules counted in passes do not depend on the run's length: no evaluation at all.
    recipe, _, short = runner.resolve("mobilenet/imagenet")
    long = dataclasses.replace(short, train=dataclasses.replace(short.train, epochs=900))
    assert runner._same_schedule(recipe.make_schedule(short, 312), recipe.make_schedule(long, 312))
    recipe, _, short = runner.resolve("resnet20/cifar10")
    long = dataclasses.replace(short, train=dataclasses.replace(short.train, epochs=300))
    a, b = recipe.make_schedule(short, 351), recipe.make_schedule(long, 351)
    assert not runner._same_schedule(a, b)
