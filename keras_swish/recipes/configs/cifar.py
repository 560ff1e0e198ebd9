"""The CIFAR family: the paper's Table 2 and 4 networks and the search's child network.

Run:
    keras-swish train resnet20                          # resnet20/embedded: CPU, ~2 min
    keras-swish train resnet20/cifar10 --activation relu --data-dir ~/tensorflow_datasets
    keras-swish train wide_resnet_28_10/cifar100 --data-dir ~/tensorflow_datasets

Each recipe takes its training constants from its network's own paper, with
that paper's augmentation (4 pixels of padding — zeros, or for Wide ResNet
the image mirrored, as its code pads — a random 32×32 crop and a horizontal
flip) and per-channel normalization. The three networks whose reference code
is Torch's (ResNet-164, WRN, DenseNet; `TORCH_REFERENCE`) also decay every
parameter, as Torch's `optim.sgd` does (BatchNorm's γ and β and the
classifier's bias; not the activation's own β), and initialize as that code
does (convolutions N(0, 2 / (k·k·filters)), the classifier U(±1/√fan_in)). CIFAR-10 and CIFAR-100
have no validation split: 5,000 training images (the last 10 % of TFDS's
train split, fixed) validate and pick the best model, as He et al. (2016)
held out 5k; the 10,000 test images only report it. An epoch is a
pass over those 45,000, and each recipe trains its reference's number of
optimizer steps: ResNet-20 and -164 64k iterations (182 epochs), WRN and
DenseNet the steps of their papers' 200 and 300 epochs over all 50,000
images (223 and 334 epochs here: 78.3k and 234.8k steps), with the learning rate
stepped at the same fractions of the run. The paper's numbers
(test accuracy %, medians of 5 runs; ReLU / Swish-1 / Swish with trainable
β): ResNet-164 on CIFAR-10 93.8 / 94.7 / 94.5 and on CIFAR-100 74.2 / 75.1 /
75.1; WRN-28-10 on CIFAR-10 95.3 / 95.5 / 95.5.

- `resnet20`: He et al. (2016), Deep Residual Learning, section 4.2 —
  SGD momentum 0.9, lr 0.1, batch 128, weight decay 1e-4, ÷10 at 32k and
  48k iterations, 64k iterations (182 epochs of 45k images: ÷10 at 50 % and
  75 %); option A shortcuts; 0.27 M parameters.
- `preact_resnet164`: He et al. (2016), Identity Mappings, section 5 and
  appendix — the same schedule, with lr 0.01 for the first 400 iterations;
  bottleneck units; 1.7 M parameters. Plain momentum, as the paper's Caffe
  runs: its Torch re-implementation (KaimingHe/resnet-1k-layers, on
  fb.resnet.torch's train.lua) uses Nesterov momentum, `--set
  optimizer.nesterov=true`.
- `wide_resnet_28_10`: Zagoruyko and Komodakis (2016), section 4 — SGD with
  Nesterov momentum 0.9, lr 0.1 ×0.2 at epochs 60, 120 and 160 of 200 (30, 60
  and 80 % of the run), batch 128, weight decay 5e-4, no dropout; 36.5 M
  parameters.
- `densenet_100_12`: Huang et al. (2017), section 4.2 — SGD with Nesterov
  momentum 0.9, lr 0.1 ÷10 at 50 % and 75 % of 300 epochs, batch 64, weight
  decay 1e-4, no dropout with augmentation; DenseNet (L = 100, k = 12) without
  bottleneck/compression, 7.0 M parameters (`--set
  model.bottleneck_compression=true` gives DenseNet-BC, 0.8 M).

The `/embedded` experiments run each network on the embedded 28×28 digits
(no flips): ResNet-20 for 6 epochs (about 2 minutes on 2 CPU cores), the
three large networks as smoke runs of 2 epochs of 10 steps.
"""

import copy
import dataclasses

from keras_swish.recipes.core.config import TrainConfig
from keras_swish.recipes.core.registry import Experiment, register_experiment, register_recipe
from keras_swish.recipes.models import cifar
from keras_swish.recipes.tasks import image_classification as ic

CIFAR_TRAIN_EXAMPLES = 45_000  # 50,000 less the 10 % held out for validation
# The code of ResNet-164 (KaimingHe/resnet-1k-layers), WRN (szagoruyko/wide-residual-networks)
# and DenseNet (liuzhuang13/DenseNet), all on fb.resnet.torch's pattern: optim.sgd's
# weightDecay on every parameter, convolutions initialized N(0, 2 / (k·k·filters)).
TORCH_REFERENCE = {"decay_all_parameters": True, "kernel_initializer": "torch"}


def _config_class(name, doc, model, optimizer, epochs, batch_size, pad_mode="zeros"):
    """A config dataclass with this network's reference constants as defaults."""

    def train():
        return TrainConfig(epochs=epochs, batch_size=batch_size, label_smoothing=0.0)

    def data():
        return ic.ImageDataConfig(
            image_size=32,
            augmentation="pad_crop",
            pad=4,
            pad_mode=pad_mode,
            random_flip=True,
            eval_crop=1.0,
            normalize="cifar10",
            shuffle_buffer=50_000,
        )

    fields = [
        (
            "model",
            cifar.CifarNetConfig,
            dataclasses.field(default_factory=lambda: copy.copy(model)),
        ),
        ("data", ic.ImageDataConfig, dataclasses.field(default_factory=data)),
        (
            "optimizer",
            ic.SGDConfig,
            dataclasses.field(default_factory=lambda: copy.deepcopy(optimizer)),
        ),
        ("train", TrainConfig, dataclasses.field(default_factory=train)),
    ]
    cls = dataclasses.make_dataclass(name, fields)
    cls.__doc__ = doc
    cls.__module__ = __name__
    return cls


NETWORKS = {
    "resnet20": dict(
        summary="ResNet-20, He et al. 2016 (0.27 M): the search's child network",
        reference="He et al. (2016), Deep Residual Learning, section 4.2",
        model=cifar.CifarNetConfig(architecture="resnet", depth=20, weight_decay=1e-4),
        optimizer=ic.SGDConfig(learning_rate=0.1, base_batch_size=128, momentum=0.9),
        epochs=182,
        batch_size=128,
        embedded={"train": {"epochs": 6, "batch_size": 128}},
    ),
    "preact_resnet164": dict(
        summary="pre-activation ResNet-164, He et al. 2016 (1.7 M; C10: 93.8 ReLU / 94.5 Swish)",
        reference="He et al. (2016), Identity Mappings in Deep Residual Networks",
        model=cifar.CifarNetConfig(
            architecture="preact_resnet", depth=164, weight_decay=1e-4, **TORCH_REFERENCE
        ),
        optimizer=ic.SGDConfig(
            learning_rate=0.1, base_batch_size=128, momentum=0.9, warmup_steps=400
        ),
        epochs=182,
        batch_size=128,
        embedded={
            "optimizer": {"warmup_steps": 5},
            "train": {"epochs": 2, "steps_per_epoch": 10, "batch_size": 64},
        },
    ),
    "wide_resnet_28_10": dict(
        summary="Wide ResNet 28-10, Zagoruyko, Komodakis 2016 (36.5 M; C10 95.3 ReLU / 95.5 Swish)",
        reference="Zagoruyko and Komodakis (2016), Wide Residual Networks, section 4",
        model=cifar.CifarNetConfig(
            architecture="wide_resnet",
            depth=28,
            widen_factor=10,
            weight_decay=5e-4,
            **TORCH_REFERENCE,
        ),
        optimizer=ic.SGDConfig(
            learning_rate=0.1,
            base_batch_size=128,
            momentum=0.9,
            nesterov=True,
            decay_at=[0.3, 0.6, 0.8],
            decay_factor=0.2,
        ),
        epochs=223,  # the paper's 200 epochs of 391 steps (50,000 images): 78.2k steps
        batch_size=128,
        pad_mode="reflect",  # scripts/train_cifar.sh: randomcrop_type=reflection
        embedded={"train": {"epochs": 2, "steps_per_epoch": 10, "batch_size": 32}},
    ),
    "densenet_100_12": dict(
        summary="DenseNet-100-12 (L = 100, k = 12, no BC), Huang et al. 2017 (7.0 M)",
        reference="Huang et al. (2017), Densely Connected Convolutional Networks, section 4.2",
        model=cifar.CifarNetConfig(
            architecture="densenet", depth=100, growth_rate=12, weight_decay=1e-4, **TORCH_REFERENCE
        ),
        optimizer=ic.SGDConfig(learning_rate=0.1, base_batch_size=64, momentum=0.9, nesterov=True),
        epochs=334,  # the paper's 300 epochs of 782 steps (50,000 images): 234.6k steps
        batch_size=64,
        embedded={"train": {"epochs": 2, "steps_per_epoch": 10, "batch_size": 32}},
    ),
}


def _register(name, spec):
    config_class = _config_class(
        f"{name.title().replace('_', '')}Config",
        f"{spec['summary']}: {spec['reference']}.",
        spec["model"],
        spec["optimizer"],
        spec["epochs"],
        spec["batch_size"],
        spec.get("pad_mode", "zeros"),
    )
    recipe = register_recipe(
        ic.image_recipe(
            name=name,
            summary=spec["summary"],
            default_config=config_class,
            validate_model=cifar.validate,
            build_network=cifar.build_cifar_network,
            docs=__doc__,
        )
    )
    for dataset in ("cifar10", "cifar100"):
        register_experiment(
            Experiment(
                name=f"{name}/{dataset}",
                recipe=name,
                summary=f"{dataset.upper()}, {spec['reference']}",
                data=(f"tfds:{dataset}", f"tfds:{dataset}:*"),
                overrides={"data": {"source": f"tfds:{dataset}", "normalize": dataset}},
                reference=spec["reference"],
                train_examples=CIFAR_TRAIN_EXAMPLES,
            )
        )
    embedded = {
        "data": {**ic.embedded_data(28), "augmentation": "pad_crop", "normalize": "symmetric"},
        **{k: v for k, v in spec["embedded"].items()},
    }
    register_experiment(
        Experiment(
            name=f"{name}/embedded",
            recipe=name,
            summary="embedded MNIST digits at 28 px, pad-and-crop augmentation, no flips",
            data=("embedded",),
            overrides=embedded,
            reference=f"{spec['reference']}, on the embedded digits",
            train_examples=4000,
            default=True,
        )
    )
    return recipe


RECIPES = {name: _register(name, spec) for name, spec in NETWORKS.items()}
