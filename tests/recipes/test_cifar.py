"""The CIFAR family: sizes from their papers, activation everywhere, references, training."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from keras_swish import SwishBeta
from keras_swish.recipes.core import runner
from keras_swish.recipes.core.config import ConfigError, parse_set
from keras_swish.recipes.core.schedules import schedule_points
from keras_swish.recipes.data.images import make_image_data, parse_data_spec
from keras_swish.recipes.models.cifar import CifarNetConfig, build_cifar_network
from tests.recipes.run_checks import assert_loads_anywhere
from tests.recipes.test_cli import cli


@pytest.mark.parametrize(
    "config, paper, activations",
    [
        (dict(architecture="resnet", depth=20), 0.27e6, 19),  # He et al. 2016, Table 6
        (dict(architecture="preact_resnet", depth=164), 1.7e6, 163),  # He et al. 2016b
        (dict(architecture="wide_resnet", depth=28, widen_factor=10), 36.5e6, 25),  # WRN Table 2
        (dict(architecture="densenet", depth=100), 7.0e6, 99),  # DenseNet Table 2, no BC
        (dict(architecture="densenet", depth=100, bottleneck_compression=True), 0.8e6, 99),  # BC
    ],
    ids=["resnet20", "preact_resnet164", "wrn_28_10", "densenet_100_12", "densenet_bc_100_12"],
)
def test_parameter_counts_match_the_papers(config, paper, activations):
    model = build_cifar_network(CifarNetConfig(activation="relu", **config), (32, 32, 3), 10)
    assert model.count_params() == pytest.approx(paper, rel=0.02)
    acts = [layer for layer in model.layers if layer.name.startswith("act_")]
    assert len(acts) == activations and all(isinstance(a, keras.layers.ReLU) for a in acts)
    others = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation, SwishBeta))
        and layer not in acts
    ]
    assert others == []  # no nonlinearity but the chosen one (the softmax is the Dense's)


def test_swish_beta_everywhere_adds_one_beta_per_channel_and_keeps_batchnorm_scale():
    relu = build_cifar_network(CifarNetConfig(activation="relu"), (32, 32, 3), 10)
    config = CifarNetConfig(activation="swish_beta", batchnorm_scale=False)
    swish = build_cifar_network(config, (32, 32, 3), 10)
    betas = [layer for layer in swish.layers if isinstance(layer, SwishBeta)]
    assert len(betas) == 19
    assert swish.count_params() - relu.count_params() == sum(int(b.beta.shape[-1]) for b in betas)
    bns = [layer for layer in swish.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(bn.scale for bn in bns)


def test_option_a_shortcuts_are_parameter_free_and_load_in_safe_mode(tmp_path):
    model = build_cifar_network(CifarNetConfig(activation="swish_beta", depth=8), (16, 16, 3), 4)
    pads = [layer for layer in model.layers if type(layer).__name__ == "ZeroChannels"]
    assert [p.extra for p in pads] == [16, 32] and all(not p.weights for p in pads)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_weight_decay_is_half_the_sum_of_squares_on_every_kernel():
    model = build_cifar_network(
        CifarNetConfig(activation="relu", weight_decay=5e-4), (32, 32, 3), 10
    )
    kernels = [
        layer.kernel
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    expected = sum(
        5e-4 * float(np.sum(np.square(keras.ops.convert_to_numpy(k)))) / 2 for k in kernels
    )
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert len(model.losses) == len(kernels) and total == pytest.approx(expected, rel=1e-5)


def test_torch_references_decay_every_parameter_but_the_activations():
    # optim.sgd's weightDecay is on every parameter: BatchNorm's γ and β and the
    # classifier's bias too; SwishBeta's β (which the references do not have) not.
    config = CifarNetConfig(
        architecture="wide_resnet", depth=10, weight_decay=1e-3, decay_all_parameters=True
    )
    model = build_cifar_network(config, (16, 16, 3), 10)
    rng = np.random.default_rng(0)
    for weight in model.weights:  # γ = 1, β = 0 and bias = 0 would hide a missing term
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    decayed = [
        w
        for layer in model.layers
        if not isinstance(layer, SwishBeta)
        for w in layer.trainable_weights
    ]
    assert {w.name for w in decayed} >= {"kernel", "gamma", "beta", "bias"}
    expected = sum(
        1e-3 * float(np.sum(np.square(keras.ops.convert_to_numpy(w)))) / 2 for w in decayed
    )
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert len(model.losses) == len(decayed) and total == pytest.approx(expected, rel=1e-5)
    betas = [layer for layer in model.layers if isinstance(layer, SwishBeta)]
    assert betas and all(layer.losses == [] for layer in betas)


def test_torch_initialization_is_msra_fan_out_untruncated_and_linear_uniform():
    config = CifarNetConfig(architecture="wide_resnet", depth=10, widen_factor=4)
    torch_model = build_cifar_network(
        dataclasses.replace(config, kernel_initializer="torch"), (16, 16, 3), 10
    )
    conv = torch_model.get_layer("stage3_block1_conv2").kernel  # 3×3, 256 → 256
    w = keras.ops.convert_to_numpy(conv).ravel()
    std = np.sqrt(2 / (3 * 3 * 256))  # Torch: normal(0, sqrt(2 / (kW·kH·nOutputPlane)))
    assert np.std(w) == pytest.approx(std, rel=0.02) and np.abs(w).max() > 3.5 * std
    dense = keras.ops.convert_to_numpy(torch_model.get_layer("predictions").kernel)
    bound = 1 / np.sqrt(256)  # nn.Linear: U(-1/√fan_in, 1/√fan_in)
    assert np.abs(dense).max() <= bound and np.abs(dense).max() > 0.9 * bound
    # The default: Keras's he_normal, fan-in, truncated at 2 standard deviations of
    # the normal it cuts (its std / 0.8796, so the kept values have the std).
    he = build_cifar_network(config, (16, 16, 3), 10).get_layer("stage3_block1_conv2").kernel
    assert np.abs(keras.ops.convert_to_numpy(he)).max() <= 2 * std / 0.87962566 + 1e-6


@pytest.mark.parametrize(
    "name, lr, batch, epochs, nesterov, decay_at, factor, weight_decay",
    [
        ("resnet20/cifar10", 0.1, 128, 182, False, [0.5, 0.75], 0.1, 1e-4),  # He et al. 4.2
        ("preact_resnet164/cifar10", 0.1, 128, 182, False, [0.5, 0.75], 0.1, 1e-4),
        # The papers' 200 and 300 epochs over 50,000 images, in passes over the 45,000.
        ("wide_resnet_28_10/cifar100", 0.1, 128, 223, True, [0.3, 0.6, 0.8], 0.2, 5e-4),
        ("densenet_100_12/cifar10", 0.1, 64, 334, True, [0.5, 0.75], 0.1, 1e-4),
    ],
)
def test_each_recipe_is_its_papers(
    name, lr, batch, epochs, nesterov, decay_at, factor, weight_decay
):
    recipe, experiment, config = runner.resolve(name)
    opt = config.optimizer
    assert (opt.learning_rate, config.train.batch_size, config.train.epochs) == (lr, batch, epochs)
    assert (opt.momentum, opt.nesterov, list(opt.decay_at), opt.decay_factor) == (
        0.9,
        nesterov,
        decay_at,
        factor,
    )
    assert config.model.weight_decay == weight_decay and config.train.label_smoothing == 0.0
    data = config.data
    assert (data.augmentation, data.pad, data.random_flip, data.image_size) == (
        "pad_crop",
        4,
        True,
        32,
    )
    assert data.normalize == name.split("/")[1]
    # Wide ResNet's code pads by reflection (randomcrop_type=reflection), the others zeros.
    assert data.pad_mode == ("reflect" if name.startswith("wide") else "zeros")
    # The Torch references decay every parameter and initialize as Torch's MSR init.
    torch = not name.startswith("resnet20")
    assert config.model.decay_all_parameters == torch
    assert config.model.kernel_initializer == ("torch" if torch else "he_normal")
    # The learning rate, stepped down at the paper's points of the run.
    steps_per_pass = 45_000 // batch
    assert config.train.steps_per_epoch is None  # an epoch is a pass, at any batch size
    total = epochs * steps_per_pass
    # The references' optimizer steps: 64k iterations (ResNet-20/164), 200 epochs
    # of 391 steps (WRN), 300 of 782 (DenseNet) — within 0.2 %.
    reference = {"r": 64_000, "p": 64_000, "w": 200 * 391, "d": 300 * 782}[name[0]]
    assert total == pytest.approx(reference, rel=0.002)
    schedule = recipe.make_schedule(config, steps_per_pass)
    for fraction in [0.0, *decay_at, 0.999]:
        step = int(fraction * total) + 1
        expected = lr * factor ** sum(step > round(f * total) for f in decay_at)
        if name.startswith("preact") and step <= 400:
            expected = lr * 0.1  # He et al. 2016b warm up ResNet-164 at 0.01 for 400 iterations
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6), (name, fraction)
    assert schedule_points(schedule, total)[-1][2] == pytest.approx(lr * factor ** len(decay_at))


def test_cifar_data_picks_the_cifar_experiment_and_other_data_is_refused():
    _, experiment, config = runner.resolve("resnet20", flags={"data": "tfds:cifar100"})
    assert experiment.name == "resnet20/cifar100" and config.data.normalize == "cifar100"
    with pytest.raises(ConfigError, match="no experiment for --data tfds:imagenet2012"):
        runner.resolve("resnet20", flags={"data": "tfds:imagenet2012"})
    with pytest.raises(ConfigError, match="'model.depth' must be 6n \\+ 2 for resnet"):
        runner.resolve("resnet20", overrides=parse_set(["model.depth=21"]))
    with pytest.raises(ConfigError, match="'optimizer.decay_at' must be increasing fractions"):
        runner.resolve("resnet20", overrides=parse_set(["optimizer.decay_at=[0.8,0.5]"]))


def test_pad_crop_augmentation_shifts_and_flips_by_the_seed():
    kw = dict(
        image_size=28,
        batch_size=16,
        seed=0,
        crop_area_min=1.0,
        random_flip=False,
        eval_crop=1.0,
        shuffle_buffer=64,
        augmentation="pad_crop",
        pad=4,
        normalize="cifar10",
    )
    data = make_image_data(parse_data_spec(None), None, **kw)
    images, _ = next(iter(data.train()))
    images = images.numpy()
    assert images.shape == (16, 28, 28, 3)
    again, _ = next(iter(make_image_data(parse_data_spec(None), None, **kw).train()))
    np.testing.assert_array_equal(again.numpy(), images)
    # Shifted crops show the zero padding on some border, never more than 4 pixels of it.
    zero_rows = [(np.abs(img).sum(axis=(1, 2)) == 0) for img in images]
    assert any(z[:4].any() or z[-4:].any() for z in zero_rows)
    assert all(not z[4:-4].any() for z in zero_rows)
    # Per-channel normalization: the validation digits have CIFAR-10's statistics removed.
    val, _ = next(iter(data.validation))
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    np.testing.assert_allclose(val.numpy()[..., 0].min(), (0 - mean[0]) / std[0], rtol=1e-5)


@pytest.mark.parametrize("pad_mode, numpy_mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_pad_crop_pads_as_numpy_does(pad_mode, numpy_mode):
    # Wide ResNet's Torch code mirrors the image (SpatialReflectionPadding, the
    # edge pixel not repeated: NumPy's "reflect"); the others pad zeros.
    import tensorflow as tf

    from keras_swish.recipes.data.images import pad_crop_transform

    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    padded = np.pad(image / 127.5 - 1.0, ((3, 3), (3, 3), (0, 0)), mode=numpy_mode)
    offsets = set()
    for seed in range(12):
        out = pad_crop_transform(
            tf.constant(image), tf.constant([seed, 7]), 8, 3, False, pad_mode=pad_mode
        ).numpy()
        found = [
            (i, j)
            for i in range(7)
            for j in range(7)
            if np.allclose(out, padded[i : i + 8, j : j + 8], atol=1e-6)
        ]
        assert found, seed
        offsets.add(found[0])
    assert len(offsets) > 3  # shifted by the seed


def test_resnet20_trains_on_the_embedded_digits_and_loads_anywhere(tmp_path):
    run = tmp_path / "run"
    result = cli("train", "resnet20", "--epochs", "3", "--output", str(run), "--verbose", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Experiment: resnet20/embedded" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["best"]["validation"]["val_top1"] > 0.5  # chance 0.1
    assert metrics["best"]["test"]["test_top1"] > 0.5
    assert_loads_anywhere(run)
