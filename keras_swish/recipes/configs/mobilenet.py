"""MobileNet v1: the paper's "MobileNet" row, with the activation as a flag.

The paper's results on ImageNet, top-1 / top-5: ReLU 72.0 / 90.8, Swish-1
74.2 / 91.6, Swish (trainable β) 74.2 / 91.7.

Run:
    keras-swish train mobilenet                      # mobilenet/embedded: CPU, ~1 min
    keras-swish train mobilenet/imagenet --activation relu \\
        --data-dir ~/tensorflow_datasets --output runs/mnet-relu

`mobilenet/imagenet` takes every constant from one public config: TF Model
Garden's `mobilenet_imagenet` experiment
(official/vision/configs/image_classification.py, the 500-epoch TPU recipe
of its MobileNet backbones): global batch 4096, 500 epochs, RMSProp (ρ 0.9,
momentum 0.9, ε 0.002), lr 0.008 · (batch // 128) = 0.256, 5 epochs of
linear warm-up from 0 that override the start of a decay counted from step
0, ×0.98 every 2.5 epochs (staircase), label smoothing 0.1, l2_weight_decay
1e-5 (a penalty wd·Σw²/2, not on depthwise kernels), BatchNorm momentum
0.997 and ε 1e-3, dropout 0.2, 224×224 Inception crops normalized with
ImageNet's per-channel mean and standard deviation (its classification_input.py). Over 500 epochs
that schedule ends at 0.98^200 ≈ 1.8 % of its peak. (Model Garden's
MobileNet-v1 YAML, imagenet_mobilenetv1_tpu.yaml, swaps in ×0.94 —
0.94^200 ≈ 4e-6 of the peak at the end, below 1 % from epoch ~190 on;
`--set optimizer.decay_rate=0.94` gives that one.) `mobilenet_imagenet` is
written with a MobileNet-v2 backbone; that YAML puts the v1 backbone on it,
and Model Garden's 72.3 % top-1 for MobileNet v1 with ReLU6 is for that
×0.94 setting.

`mobilenet/embedded` shrinks the same network to what the embedded 4,000
28×28 digits support (α = 0.5, BatchNorm momentum 0.9, no flips, 5 epochs
of batch 64): about a minute on 2 CPU cores, best validation top-1 about
90 % (chance: 10 %).
"""

import dataclasses

from keras_swish.recipes.core.config import TrainConfig
from keras_swish.recipes.core.registry import Experiment, register_experiment, register_recipe
from keras_swish.recipes.models import mobilenet_v1
from keras_swish.recipes.tasks import image_classification as ic

REFERENCE = (
    "TF Model Garden, official/vision/configs/image_classification.py, "
    "experiment 'mobilenet_imagenet'"
)


@dataclasses.dataclass
class Config:
    """MobileNet v1 on ImageNet with Model Garden's `mobilenet_imagenet` constants."""

    model: mobilenet_v1.MobileNetConfig = dataclasses.field(
        default_factory=mobilenet_v1.MobileNetConfig  # dropout 0.2, BN 0.997 / 1e-3, wd 1e-5
    )
    data: ic.ImageDataConfig = dataclasses.field(default_factory=ic.ImageDataConfig)
    optimizer: ic.RMSPropConfig = dataclasses.field(
        default_factory=lambda: ic.RMSPropConfig(
            learning_rate=0.008,  # initial_learning_rate: 0.008 * (train_batch_size // 128)
            base_batch_size=128,
            integer_batch_ratio=True,
            rho=0.9,  # 'rmsprop': {'rho': 0.9, 'momentum': 0.9, 'epsilon': 0.002}
            momentum=0.9,
            epsilon=0.002,
            warmup_epochs=5.0,  # 'linear' warm-up, warmup_steps: 5 * steps_per_epoch
            decay_rate=0.98,  # 'exponential', decay_rate: 0.98, staircase: True
            decay_epochs=2.5,  # decay_steps: int(2.5 * steps_per_epoch)
        )
    )
    train: TrainConfig = dataclasses.field(
        # train_batch_size 4096, train_steps 500 * steps_per_epoch, label_smoothing 0.1
        default_factory=lambda: TrainConfig(epochs=500, batch_size=4096, label_smoothing=0.1)
    )


RECIPE = register_recipe(
    ic.image_recipe(
        name="mobilenet",
        summary="MobileNet v1 (paper: ImageNet 72.0 ReLU / 74.2 Swish top-1)",
        default_config=Config,
        validate_model=mobilenet_v1.validate,
        build_network=mobilenet_v1.build_mobilenet,
        docs=__doc__,
    )
)

register_experiment(
    Experiment(
        name="mobilenet/imagenet",
        recipe="mobilenet",
        summary="ImageNet, Model Garden's 500-epoch mobilenet_imagenet config",
        data=ic.IMAGENET_DATA,
        # classification_input.py normalizes with ImageNet's per-channel mean and std.
        overrides={"data": {"source": "tfds:imagenet2012", "normalize": "imagenet"}},
        reference=REFERENCE,
        train_examples=ic.IMAGENET_TRAIN_EXAMPLES,
    )
)

register_experiment(
    Experiment(
        name="mobilenet/embedded",
        recipe="mobilenet",
        summary="embedded MNIST digits: α 0.5 at 28 px, 5 epochs, ~1 min on a CPU",
        data=("embedded",),
        overrides={
            "model": {"alpha": 0.5, "batchnorm_momentum": 0.9},
            "data": ic.embedded_data(28),
            "optimizer": {
                "integer_batch_ratio": False,
                "warmup_epochs": 1.0,
                "decay_epochs": 1.0,
                "decay_rate": 0.8,
            },
            "train": {"epochs": 5, "batch_size": 64},
        },
        reference="the ImageNet settings, shrunk to 4,000 28×28 digits",
        train_examples=4000,
        default=True,
    )
)
