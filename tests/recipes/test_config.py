"""Recipe configs: every registered recipe validates; precedence; bad keys."""

import dataclasses

import pytest

from keras_swish.recipes import driver
from keras_swish.recipes.core.config import ConfigError, apply_overrides, parse_set
from keras_swish.recipes.core.registry import get_recipe, list_recipes


@pytest.mark.parametrize("recipe", list_recipes(), ids=lambda r: r.name)
def test_every_registered_recipe_and_preset_validates(recipe):
    config = recipe.default_config()
    recipe.validate(dataclasses.replace(config))
    for key, preset in recipe.presets.items():
        recipe.validate(apply_overrides(recipe.default_config(), preset, key))
    assert set(recipe.flags.values()) <= {
        f"{section}.{field.name}"
        for section in ("model", "data", "optimizer", "train")
        for field in dataclasses.fields(getattr(config, section))
    }


def test_mobilenet_reference_defaults_match_the_paper_recipe():
    config = get_recipe("mobilenet").default_config()
    assert (config.train.batch_size, config.train.epochs) == (4096, 500)
    opt = config.optimizer
    assert (opt.learning_rate, opt.base_batch_size, opt.rho, opt.momentum, opt.epsilon) == (
        0.008,
        128,
        0.9,
        0.9,
        0.002,
    )
    assert (opt.decay_rate, opt.decay_epochs, opt.warmup_epochs) == (0.94, 2.5, 5.0)
    assert config.train.label_smoothing == 0.1
    assert (config.model.weight_decay, config.model.dropout) == (1e-5, 0.2)
    assert config.data.image_size == 224


def test_precedence_defaults_preset_yaml_flags_set(tmp_path):
    recipe = get_recipe("mobilenet")
    # Defaults ← the embedded preset.
    config = driver.resolve_config(recipe)
    assert config.data.image_size == 28 and config.model.alpha == 0.5
    assert config.train.epochs == 5 and config.optimizer.rho == 0.9
    assert config.train.output == "runs/mobilenet-swish_beta"
    # ← YAML.
    path = tmp_path / "my.yaml"
    path.write_text("model:\n  alpha: 0.25\ntrain:\n  epochs: 7\n  batch_size: 32\n")
    config = driver.resolve_config(recipe, config_file=str(path))
    assert (config.model.alpha, config.train.epochs, config.train.batch_size) == (0.25, 7, 32)
    # ← flags ← --set (last wins).
    config = driver.resolve_config(
        recipe,
        config_file=str(path),
        flags={"epochs": 9, "activation": "relu", "batch_size": None},
        overrides=parse_set(
            ["train.epochs=11", "optimizer.learning_rate=0.2", "model.weight_decay=4e-5"]
        ),
    )
    assert config.train.epochs == 11
    assert config.train.batch_size == 32
    assert config.model.activation == "relu"
    assert config.optimizer.learning_rate == 0.2
    assert config.model.weight_decay == 4e-5  # YAML 1.1 would read "4e-5" as a string
    assert config.train.output == "runs/mobilenet-relu"


def test_preset_follows_the_data_source():
    recipe = get_recipe("mobilenet")
    config = driver.resolve_config(recipe, flags={"data": "tfds:imagenet2012"})
    assert config.data.image_size == 224 and config.train.batch_size == 4096


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["optimizer.learnin_rate=0.2"], r"Unknown config key 'optimizer.learnin_rate'"),
        (["optimiser.learning_rate=0.2"], r"Unknown config section 'optimiser'"),
        (["train.epochs=three"], r"'train.epochs' must be a int. Received: train.epochs='three'"),
        (["train.epochs=0"], r"'train.epochs' must be at least 1"),
        (["model.activation=swish_bta"], r"Unknown activation 'swish_bta'"),
        (["train.strategy=gpus"], r"'train.strategy' must be one of auto, default"),
        (["train.precision=fp16"], r"'train.precision' must be one of auto, float32"),
        (["epochs=3"], r"--set takes SECTION.KEY=VALUE"),
        (["data.image_size=16"], r"MobileNet needs 'data.image_size' of at least 28"),
    ],
)
def test_bad_overrides_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        driver.resolve_config(get_recipe("mobilenet"), overrides=parse_set(overrides))


def test_bad_yaml_files(tmp_path):
    recipe = get_recipe("mobilenet")
    with pytest.raises(ConfigError, match="Cannot read --config"):
        driver.resolve_config(recipe, config_file=str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        driver.resolve_config(recipe, config_file=str(tmp_path / "bad.yaml"))
    (tmp_path / "other.yaml").write_text("recipe: inception\n")
    with pytest.raises(ConfigError, match="is for recipe 'inception'"):
        driver.resolve_config(recipe, config_file=str(tmp_path / "other.yaml"))


def test_unknown_recipe():
    with pytest.raises(KeyError, match="Unknown recipe 'mobilnet'. Recipes: .*mobilenet"):
        get_recipe("mobilnet")
