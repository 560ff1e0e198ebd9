"""Inception-ResNet-v2: the paper's "Inception-ResNet-v2" row, BatchNorm γ on.

The paper's results, top-1 on ImageNet over 3 runs: ReLU 79.5 / 79.6 / 79.8,
Swish-1 80.2 / 80.3 / 80.4, Swish (trainable β) 80.2 / 80.2 / 80.3.

Run:
    keras-swish train inception_resnet_v2            # inception_resnet_v2/embedded: a smoke run
    keras-swish train inception_resnet_v2/imagenet --activation relu \\
        --data-dir ~/tensorflow_datasets --output runs/irv2-relu

`inception_resnet_v2/imagenet` follows TF-Slim, the public code of the
Inception-v4 paper: research/slim/train_image_classifier.py (RMSProp
`rmsprop_decay` 0.9, `rmsprop_momentum` 0.9, `opt_epsilon` 1.0,
`learning_rate_decay_factor` 0.94 every `num_epochs_per_decay` 2.0,
staircase, `weight_decay` 4e-5) and research/slim/nets/inception_resnet_v2.py
(`inception_resnet_v2_arg_scope`: `slim.l2_regularizer(weight_decay)` — a
penalty wd·Σw²/2, on the weights and the biases — BatchNorm decay 0.9997,
ε 1e-3; dropout keep 0.8 before the logits; the auxiliary head `AuxLogits`,
whose cross-entropy `train_image_classifier.py` adds with `weights=0.4` and
the same label smoothing: `model.auxiliary_weight` 0.4), with 299×299
Inception crops (area ≥ 10 %, central 87.5 % for evaluation:
`train_image_classifier.py` passes no box to
`inception_preprocessing.preprocess_for_train`, which then takes the whole
image as the box its crops must cover 10 % of — `min_object_covered` 0.1
over `area_range` 0.05–1, the same crops as areas 0.1–1) and TF-Slim's
colour distortion (`inception_preprocessing`, fast mode: brightness ± 32/255,
then saturation × 0.5–1.5), and label smoothing
0.1 from Inception-v3 (TF-Slim's flag defaults to 0). BatchNorm keeps its
scale γ, which TF-Slim turns off: the paper points out that Swish needs it.

TF-Slim's optimizer is TF1's `tf.train.RMSPropOptimizer`, whose running mean
of squared gradients starts at 1 where Keras's `RMSprop` starts at 0; both
add ε inside the square root. With ε 1.0 the ratio of the two
denominators after t steps is at most √(1 + 0.9^t): √1.9 at the first
step, under 1.003 after 50, while the warm-up from 0 keeps the rate under 1 % of
its peak for the first 60 steps at batch 640: the recipe keeps Keras's.

The papers trained asynchronously at 0.045: Inception-v4 on 20 replicas
(its batch size is not stated), Inception-v3 on 50 replicas of 32 images
for 100 epochs, with gradients clipped at 2.0 (its section 8; TF-Slim's
`clip_gradient_norm` defaults to none, as here). The learning rate here
is the one of the public synchronous version of that recipe,
tensorflow/tpu models/experimental/inception/inception_v4.py (same RMSProp,
decay and weight decay): 0.15 per 256 images, after 3 epochs of warm-up
(its `cold_epochs` 1 + `warmup_epochs` 2; here linear from 0), divided as
there by 0.94^(3/2) so that the decay goes on from the warm-up's end: at
the default global batch of 640, 0.375 / 0.94^1.5 = 0.4115 decayed ×0.94
every 2 epochs, 0.387 after the warm-up (epoch 4) — the same rates as that
script from then on. Scaling the papers' asynchronous 0.045 per 32 images
linearly would give 0.9. That script
also keeps an exponential moving average of the weights (0.995) for
evaluation, which this recipe does not, and BatchNorm decay 0.995
(`BATCH_NORM_DECAY`; TF-Slim's 0.9997 is kept here). 100 epochs, Inception-v3's
(the TPU script's default is 80,000 steps of 256 images, about 16 epochs;
the Swish paper trains "a fixed number of steps" without saying how many).
The paper tried 3
learning rates per activation (`--set optimizer.learning_rate=...`, per
256 images).

`inception_resnet_v2/embedded` keeps the network's full depth and width
(54 M parameters) at its smallest input, 75×75, with BatchNorm momentum 0.9
and a short schedule (2 epochs of 15 steps of batch 32): a smoke run of the
paper's network that finishes in about 5 minutes on 2 CPU cores. With
`--activation relu` it learns at once (validation top-1 0.89 after 3 × 40
steps, measured with the auxiliary head); with swish_beta it starts slowly
(0.20 after the same 120 steps): Swish after each residual addition is not an identity at the start,
so the full network first behaves like one without shortcuts.
"""

import dataclasses

from keras_swish.recipes.core.config import TrainConfig
from keras_swish.recipes.core.registry import Experiment, register_experiment, register_recipe
from keras_swish.recipes.models import inception_resnet_v2 as irv2
from keras_swish.recipes.tasks import image_classification as ic

REFERENCE = (
    "TF-Slim research/slim/train_image_classifier.py and nets/inception_resnet_v2.py, "
    "with the learning rate of tensorflow/tpu models/experimental/inception/inception_v4.py"
)


@dataclasses.dataclass
class Config:
    """Inception-ResNet-v2 on ImageNet with TF-Slim's constants (see the module doc)."""

    model: irv2.InceptionResNetV2Config = dataclasses.field(
        default_factory=irv2.InceptionResNetV2Config  # wd 4e-5, BN 0.9997 / 1e-3, dropout 0.2
    )
    data: ic.ImageDataConfig = dataclasses.field(
        default_factory=lambda: ic.ImageDataConfig(
            image_size=299, crop_area_min=0.1, color_distortion=True
        )
    )
    optimizer: ic.RMSPropConfig = dataclasses.field(
        default_factory=lambda: ic.RMSPropConfig(
            learning_rate=0.15,  # tpu inception_v4.py: learning_rate, per 256 images
            base_batch_size=256,  # ... * train_batch_size / 256
            rho=0.9,  # rmsprop_decay
            momentum=0.9,  # rmsprop_momentum
            epsilon=1.0,  # opt_epsilon
            warmup_epochs=3.0,  # tpu inception_v4.py: cold_epochs 1 + warmup_epochs 2
            decay_rate=0.94,  # learning_rate_decay_factor
            decay_epochs=2.0,  # num_epochs_per_decay
            decay_after_warmup=True,  # tpu: initial_learning_rate /= 0.94 ** (3 / 2)
        )
    )
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(epochs=100, batch_size=640, label_smoothing=0.1)
    )


RECIPE = register_recipe(
    ic.image_recipe(
        name="inception_resnet_v2",
        summary="Inception-ResNet-v2, BatchNorm γ on (paper: ImageNet 79.6 ReLU / 80.2 Swish)",
        default_config=Config,
        validate_model=irv2.validate,
        build_network=irv2.build_inception_resnet_v2,
        docs=__doc__,
    )
)

register_experiment(
    Experiment(
        name="inception_resnet_v2/imagenet",
        recipe="inception_resnet_v2",
        summary="ImageNet, TF-Slim's Inception-ResNet-v2 settings, synchronous batch 640",
        data=ic.IMAGENET_DATA,
        overrides={"data": {"source": "tfds:imagenet2012"}},
        reference=REFERENCE,
        train_examples=ic.IMAGENET_TRAIN_EXAMPLES,
    )
)

register_experiment(
    Experiment(
        name="inception_resnet_v2/embedded",
        recipe="inception_resnet_v2",
        summary="embedded MNIST digits at 75 px: a ~5-minute smoke run of the full network",
        data=("embedded",),
        overrides={
            "model": {"batchnorm_momentum": 0.9},
            "data": ic.embedded_data(irv2.MIN_IMAGE_SIZE),
            # A pass of the digits is 125 steps of 32: warm-up 8 steps, ×0.8 every 15;
            # peak 0.005 at batch 32 (0.04 per 256).
            "optimizer": {
                "learning_rate": 0.04,
                "warmup_epochs": 0.06,
                "decay_epochs": 0.12,
                "decay_rate": 0.8,
                "decay_after_warmup": False,
            },
            "train": {"epochs": 2, "steps_per_epoch": 15, "batch_size": 32},
        },
        reference="the ImageNet settings, shrunk to a smoke run on the digits",
        train_examples=4000,
        default=True,
    )
)
