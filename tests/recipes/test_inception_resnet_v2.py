"""The Inception-ResNet-v2 recipe: activation everywhere, BatchNorm γ, size, run."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_swish import SwishBeta
from keras_swish.recipes.core import runner
from keras_swish.recipes.core.config import ConfigError, parse_set
from keras_swish.recipes.core.registry import get_recipe
from keras_swish.recipes.models.auxiliary import AuxiliaryLossClassifier
from keras_swish.recipes.models.inception_resnet_v2 import (
    MIN_IMAGE_SIZE,
    InceptionResNetV2Config,
    build_inception_resnet_v2,
)
from tests.recipes.run_checks import assert_loads_anywhere, train_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Conv-BN-activation units: stem 5, mixed_5b 7, block35 6 (×10), mixed_6a 4,
# block17 4 (×20), mixed_7a 7, block8 4 (×10), conv_7b 1.
UNITS = 5 + 7 + 10 * 6 + 4 + 20 * 4 + 7 + 10 * 4 + 1
# ... and one after each residual addition but the last block8's.
ACTIVATIONS = UNITS + 10 + 20 + 9
RESIDUAL_SCALES = [0.17] * 10 + [0.1] * 20 + [0.2] * 9 + [1.0]
ACTIVATION_KINDS = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.Activation,
    SwishBeta,
)


def small(activation="swish_beta", **kwargs):
    """The full network at its smallest input, 75×75, with 10 classes (no auxiliary head)."""
    kwargs.setdefault("auxiliary_weight", 0.0)
    config = InceptionResNetV2Config(activation=activation, **kwargs)
    return build_inception_resnet_v2(config, (75, 75, 3), 10)


def batchnorms(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize(
    "name, kind",
    [("relu", keras.layers.ReLU), ("swish_beta", SwishBeta), ("gelu", keras.layers.Activation)],
)
def test_activation_at_every_nonlinearity_and_batchnorm_keeps_gamma(name, kind):
    model = small(name)
    acts = [layer for layer in model.layers if isinstance(layer, ACTIVATION_KINDS)]
    assert len(acts) == ACTIVATIONS == 243
    assert all(type(a) is kind and a.name.endswith("_act") for a in acts)
    names = {layer.name for layer in model.layers}
    assert "block8_9_act" in names and "block8_10_act" not in names
    bns = batchnorms(model)
    assert len(bns) == UNITS == 204
    assert all(bn.scale and bn.gamma is not None for bn in bns)
    assert all((bn.momentum, bn.epsilon) == (0.9997, 1e-3) for bn in bns)


def test_batchnorm_scale_can_be_off_only_for_piecewise_linear_activations():
    relu = small("relu", batchnorm_scale=False)
    assert not any(bn.scale for bn in batchnorms(relu))
    swish = small("swish_beta", batchnorm_scale=False)
    assert all(bn.scale for bn in batchnorms(swish))


def test_residual_scales_and_weight_decay():
    model = small(weight_decay=1e-4)
    scales = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert [s.scale for s in scales] == RESIDUAL_SCALES
    assert [s.name for s in scales][::10] == [
        "block35_1_scale",
        "block17_1_scale",
        "block17_11_scale",
        "block8_1_scale",
    ]
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 40
    kernels = [
        layer.kernel
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    # TF-Slim's arg scope decays the biases too: the residual 1×1 convs' and the logits'.
    biases = [
        layer.bias
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias
    ]
    assert len(kernels) == UNITS + 40 + 1 and len(biases) == 40 + 1
    assert len(model.losses) == len(kernels) + len(biases)
    # Give the biases (zeros at first) values, so that their penalty counts.
    for bias in biases:
        bias.assign(np.full(bias.shape, 0.5, "float32"))
    # TF-Slim's l2_regularizer(wd) is wd·Σw²/2 (tf.nn.l2_loss): Keras L2(wd / 2).
    expected = sum(
        1e-4 * float(np.sum(np.square(keras.ops.convert_to_numpy(w)))) / 2 for w in kernels + biases
    )
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert total == pytest.approx(expected, rel=1e-5)
    # Runs from before kept their biases free (`decay_biases` false); so does the
    # auxiliary head's classifier then, which has one otherwise.
    assert len(small(weight_decay=1e-4, decay_biases=False).losses) == len(kernels)
    with_head = small(weight_decay=1e-4, auxiliary_weight=0.4).network
    assert with_head.get_layer("aux_predictions").bias_regularizer is not None
    # The head's two conv kernels, its classifier's kernel and bias.
    assert len(with_head.losses) == len(kernels) + len(biases) + 4


def test_full_size_parameter_count():
    reference = keras.applications.InceptionResNetV2(weights=None)
    reference_acts = [
        layer for layer in reference.layers if isinstance(layer, keras.layers.Activation)
    ]
    assert len(reference_acts) == ACTIVATIONS
    assert not any(bn.scale for bn in batchnorms(reference))  # what the paper warns about
    assert reference.count_params() == 55_873_736
    config = InceptionResNetV2Config(activation="relu", batchnorm_scale=False, auxiliary_weight=0)
    keras_like = build_inception_resnet_v2(config, (299, 299, 3), 1000)
    assert keras_like.count_params() == reference.count_params()  # the same network

    model = build_inception_resnet_v2(InceptionResNetV2Config(), (299, 299, 3), 1000)
    assert isinstance(model, AuxiliaryLossClassifier) and model.auxiliary_weight == 0.4
    network = model.network
    body = [layer for layer in network.layers if not layer.name.startswith("aux_")]
    gammas = sum(
        int(bn.gamma.shape[0]) for bn in body if isinstance(bn, keras.layers.BatchNormalization)
    )
    betas = sum(int(np.prod(layer.beta.shape)) for layer in body if isinstance(layer, SwishBeta))
    # TF-Slim's AuxLogits at 299×299: 17×17×1088 → 5×5 average pool, stride 3 →
    # 1×1 conv 128 (BN) → 5×5 conv 768 (BN), valid → 1×1 → logits.
    grid = network.get_layer("block17_20_act").output.shape
    assert grid == (None, 17, 17, 1088)
    assert network.get_layer("aux_pool").output.shape == (None, 5, 5, 1088)
    assert network.get_layer("aux_conv_2").kernel.shape == (5, 5, 128, 768)
    # Its BatchNorms keep γ (4 weights a channel) and its two units take the
    # activation (TF-Slim's conv2d arg scope): a β a channel.
    aux_head = 1088 * 128 + 5 * 5 * 128 * 768 + 768 * 1000 + 1000 + (4 + 1) * (128 + 768)
    aux_acts = [network.get_layer(f"aux_conv_{i}_act") for i in (1, 2)]
    assert all(isinstance(a, SwishBeta) for a in aux_acts)
    assert model.count_params() == reference.count_params() + gammas + betas + aux_head
    assert abs((model.count_params() - aux_head) / 55.8e6 - 1) < 0.01
    assert model.output_shape == (None, 1000)
    assert [tuple(o.shape) for o in network.outputs] == [(None, 1000), (None, 1000)]


@pytest.mark.parametrize("auxiliary_weight", [0.0, 0.4])
def test_saved_model_loads_in_safe_mode(tmp_path, auxiliary_weight):
    model = small(weight_decay=0.0, auxiliary_weight=auxiliary_weight)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    path = str(tmp_path / "irv2.keras")
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x, training=False)), expected, rtol=1e-5, atol=1e-6
    )
    assert type(restored) is type(model)
    network = getattr(model, "network", model)
    restored = getattr(restored, "network", restored)
    assert [type(layer) for layer in restored.layers] == [type(layer) for layer in network.layers]


def test_reference_defaults_and_embedded_experiment():
    recipe = get_recipe("inception_resnet_v2")
    assert recipe.task == "image_classification"
    # --data picks the experiment: ImageNet gets TF-Slim's settings.
    found, experiment, config = runner.resolve(
        "inception_resnet_v2", flags={"data": "tfds:imagenet2012"}
    )
    assert found is recipe and experiment.name == "inception_resnet_v2/imagenet"
    assert runner.resolve("inception_resnet_v2/imagenet")[2] == config
    assert config.data.image_size == 299
    opt = config.optimizer
    assert (opt.learning_rate, opt.base_batch_size, opt.rho, opt.momentum, opt.epsilon) == (
        0.15,
        256,
        0.9,
        0.9,
        1.0,
    )
    assert (opt.decay_rate, opt.decay_epochs, opt.warmup_epochs) == (0.94, 2.0, 3.0)
    assert config.train.label_smoothing == 0.1
    model = config.model
    assert (model.weight_decay, model.batchnorm_momentum, model.batchnorm_epsilon) == (
        4e-5,
        0.9997,
        1e-3,
    )
    assert model.activation == "swish_beta" and model.batchnorm_scale
    assert config.train.output == "runs/inception_resnet_v2-imagenet-swish_beta"
    _, experiment, embedded = runner.resolve("inception_resnet_v2")
    assert experiment.name == "inception_resnet_v2/embedded" and experiment.default
    assert embedded.data.image_size == MIN_IMAGE_SIZE == 75
    assert embedded.train.output == "runs/inception_resnet_v2-embedded-swish_beta"
    assert not hasattr(recipe, "presets")


def test_unknown_data_for_the_recipe_is_refused():
    with pytest.raises(ConfigError, match="has no experiment for --data text:a,b"):
        runner.resolve("inception_resnet_v2", flags={"data": "text:a,b"})
    with pytest.raises(ConfigError, match="has no settings for --data folder:x"):
        runner.resolve("inception_resnet_v2/embedded", flags={"data": "folder:x"})


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["data.image_size=74"], r"'data.image_size' must be at least 75"),
        (["model.dropout=1.0"], r"'model.dropout' must be in \[0, 1\)"),
        (["model.batchnorm_momentum=1"], r"'model.batchnorm_momentum' must be in \(0, 1\)"),
        (["model.batchnorm_epsilon=0"], r"'model.batchnorm_epsilon' must be positive"),
        (["model.weight_decay=-1e-5"], r"'model.weight_decay' must be >= 0"),
        (["model.alpha=0.5"], r"Unknown config key 'model.alpha'"),
        (["model.activation=swish_bta"], r"Unknown activation 'swish_bta'"),
    ],
)
def test_bad_config_names_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        runner.resolve("inception_resnet_v2", overrides=parse_set(overrides))


def cli(*args, timeout=1800):
    return subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.slow
def test_train_on_embedded_data_learns_and_writes_every_output(tmp_path):
    run = tmp_path / "run"
    # ReLU: with Swish after every residual add the 54 M-parameter network starts
    # slowly, and its cross-entropy over the first few steps is noisy.
    args = [
        "train",
        "inception_resnet_v2",
        "--activation",
        "relu",
        "--steps-per-epoch",
        "12",
        "--epochs",
        "2",
        "--verbose",
        "2",
    ]
    # SIGKILLed right after epoch 1's commit, before best.keras and metrics.json
    # are written; the same command resumes the model with its auxiliary head
    # from the checkpoint (a weight or optimizer step missing stops it) and
    # publishes epoch 1's files first.
    result = train_process(args, run, kill_at="epoch_committed:1")
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert not (run / "best.keras").exists() and not (run / "metrics.json").exists()
    result = train_process(args, run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming at epoch 2 of 2" in result.stdout
    assert result.stdout.count("Epoch 2/2") == 1 and "Epoch 1/2" not in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] is True and metrics["recipe"] == "inception_resnet_v2"
    first, second = metrics["epochs"]
    # The cross-entropy falls (`loss` adds the L2 penalty of 54 M weights).
    assert second["xent"] < first["xent"], metrics["epochs"]
    for key in ("top1", "top5", "val_top1", "val_top5", "wall_time_s"):
        assert key in second
    best, last = metrics["best"], metrics["last"]
    assert best["model"] == "best.keras" and best["monitor"] == "val_top1"
    assert best["epoch"] in (1, 2)
    assert {"val_top1", "val_top5", "val_loss"} <= set(best["validation"])
    assert {"test_top1", "test_top5", "test_loss"} <= set(best["test"])  # embedded has a test split
    assert last["model"] == "final.keras" and last["epoch"] == 2
    assert last["validation"]["val_top1"] == second["val_top1"]
    assert "final" not in metrics
    for name in ("config.yaml", "best.keras", "final.keras"):
        assert (run / name).is_file(), name
    # The resume state stays, so that a larger --epochs can continue the run.
    assert (run / "state" / "state.json").is_file() and not (run / "backup").exists()
    assert os.listdir(run / "logs" / "train") and os.listdir(run / "logs" / "validation")
    # Rerunning a finished run and `evaluate` are the runner's, checked on
    # MobileNet (tests/recipes/test_runner.py, test_cli.py); each would load this
    # 54 M-parameter network once more. What is this network's own: its files load
    # in safe mode in a fresh process and give the numbers metrics.json reports.
    assert_loads_anywhere(run)  # both .keras files, safe mode, a process with only keras_swish
