"""The CIFAR networks of the paper's Tables 2 and 4, with the activation at every nonlinearity.

- `resnet`: He et al. (2016), "Deep Residual Learning", section 4.2: a 3×3
  stem of 16 filters, three stages of n basic blocks (16, 32, 64 filters),
  6n + 2 layers; ResNet-20 (n = 3, 0.27 M parameters) is the child network
  of the activation search. Shortcuts are the paper's option A for CIFAR:
  identity, with stride-2 subsampling and zero channels where the shape
  changes (no parameters).
- `preact_resnet`: He et al. (2016), "Identity Mappings in Deep Residual
  Networks": pre-activation bottleneck units (BN → act → 1×1, BN → act →
  3×3, BN → act → 1×1 to 4× the width), 9n + 2 layers; ResNet-164 (n = 18,
  1.7 M parameters). Projection shortcuts where the shape changes.
- `wide_resnet`: Zagoruyko and Komodakis (2016): pre-activation basic blocks
  of width 16k, 32k, 64k, (depth − 4) / 6 per stage, optional dropout
  between the convolutions; WRN-28-10 has 36.5 M parameters.
- `densenet`: Huang et al. (2017): three dense blocks of BN → act → 3×3
  (growth k) layers joined by transitions (BN → act → 1×1 → 2×2 average
  pool). DenseNet (L = 100, k = 12) has 7.0 M parameters; with
  `bottleneck_compression` (DenseNet-BC: 1×1 bottlenecks of 4k and
  transitions that halve the channels) 0.8 M.

Every convolution's kernel gets weight decay in the references' convention
(their wd is added to the gradient: a penalty wd·Σw²/2, Keras `L2(wd / 2)`);
with `decay_all_parameters` (the Torch references: ResNet-164, WRN, DenseNet)
also BatchNorm's γ and β and the classifier's bias. `kernel_initializer`
"torch" is those references' initialization (see `CifarNetConfig`). BatchNorm
keeps its scale γ for activations that are not piecewise linear.
"""

import dataclasses

import keras

from keras_swish.recipes.core.config import check
from keras_swish.recipes.models.activations import (
    activation_layer,
    activation_slug,
    is_piecewise_linear,
)
from keras_swish.recipes.models.common import reference_l2, validate_regularization

ARCHITECTURES = ("resnet", "preact_resnet", "wide_resnet", "densenet")
KERNEL_INITIALIZERS = ("he_normal", "torch")


@keras.saving.register_keras_serializable(package="keras_swish")
class ZeroChannels(keras.layers.Layer):
    """Appends `extra` zero channels: option A's shortcut where a stage widens.

    (A registered layer, not a Lambda, so that `.keras` files load in safe mode.)
    """

    def __init__(self, extra, **kwargs):
        super().__init__(**kwargs)
        self.extra = int(extra)

    def call(self, x):
        before = self.extra // 2
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, self.extra - before]])

    def compute_output_shape(self, input_shape):
        channels = None if input_shape[-1] is None else input_shape[-1] + self.extra
        return (*input_shape[:-1], channels)

    def get_config(self):
        return {**super().get_config(), "extra": self.extra}


@dataclasses.dataclass
class CifarNetConfig:
    """One of the CIFAR networks; which fields matter depends on `architecture`."""

    architecture: str = "resnet"
    activation: str = "swish_beta"
    depth: int = 20  # resnet 6n+2, preact_resnet 9n+2, wide_resnet 6n+4, densenet 3n+4 (6n+4 BC)
    widen_factor: int = 1  # wide_resnet's k
    growth_rate: int = 12  # densenet's k
    bottleneck_compression: bool = False  # densenet: DenseNet-BC
    dropout: float = 0.0  # wide_resnet: between the two convolutions of a block
    weight_decay: float = 1e-4  # the references' wd (penalty wd·Σw²/2)
    # Also on BatchNorm's γ and β and the classifier's bias: Torch's optim.sgd adds
    # weightDecay to every parameter's gradient (the activations' own β or α aside:
    # the references have none).
    decay_all_parameters: bool = False
    # "he_normal" (fan-in, truncated), or "torch": the Torch references' MSR init,
    # N(0, 2 / (k·k·filters)) untruncated (fan-out), and nn.Linear's U(±1/√fan_in).
    kernel_initializer: str = "he_normal"
    batchnorm_momentum: float = 0.9  # Torch's 0.1 update
    batchnorm_epsilon: float = 1e-5
    batchnorm_scale: bool = True  # forced on for activations that are not piecewise linear


def _blocks(config):
    """Units per stage implied by `depth`, or a ConfigError naming the rule."""
    arch, depth = config.architecture, config.depth
    if arch == "resnet":
        rule, n = "6n + 2", (depth - 2) / 6
    elif arch == "preact_resnet":
        rule, n = "9n + 2", (depth - 2) / 9
    elif arch == "wide_resnet":
        rule, n = "6n + 4", (depth - 4) / 6
    elif config.bottleneck_compression:
        rule, n = "6n + 4", (depth - 4) / 6
    else:
        rule, n = "3n + 4", (depth - 4) / 3
    check(n == int(n) and n >= 1, "model.depth", depth, f"{rule} for {arch} (n ≥ 1)")
    return int(n)


def validate(config):
    """Checks the `model` section (a `CifarNetConfig`)."""
    model = config.model
    check(
        model.architecture in ARCHITECTURES,
        "model.architecture",
        model.architecture,
        f"one of {', '.join(ARCHITECTURES)}",
    )
    _blocks(model)
    check(
        model.kernel_initializer in KERNEL_INITIALIZERS,
        "model.kernel_initializer",
        model.kernel_initializer,
        f"one of {', '.join(KERNEL_INITIALIZERS)}",
    )
    check(model.widen_factor >= 1, "model.widen_factor", model.widen_factor, "at least 1")
    check(model.growth_rate >= 1, "model.growth_rate", model.growth_rate, "at least 1")
    validate_regularization(model)
    check(config.data.image_size >= 8, "data.image_size", config.data.image_size, "at least 8")


def build_cifar_network(model_config, input_shape, num_classes):
    """The CIFAR network `model_config.architecture`, with its activation everywhere.

    Args:
        model_config: A `CifarNetConfig`.
        input_shape: `(height, width, 3)`.
        num_classes: Classifier width.

    Returns:
        A functional `keras.Model` named `<architecture>_<depth>_<activation>`.
    """
    c = model_config
    regularizer = reference_l2(c.weight_decay)
    other_regularizer = regularizer if c.decay_all_parameters else None
    scale = c.batchnorm_scale or not is_piecewise_linear(c.activation)
    n = _blocks(c)
    counter = {"act": 0}
    torch_init = c.kernel_initializer == "torch"

    def conv(x, filters, kernel, stride=1, name=None):
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer=(
                keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
                if torch_init
                else "he_normal"
            ),
            kernel_regularizer=regularizer,
            name=name,
        )(x)

    def bn(x, name):
        return keras.layers.BatchNormalization(
            momentum=c.batchnorm_momentum,
            epsilon=c.batchnorm_epsilon,
            scale=scale,
            gamma_regularizer=other_regularizer,
            beta_regularizer=other_regularizer,
            name=name,
        )(x)

    def act(x):
        counter["act"] += 1
        return activation_layer(c.activation, rank=4, layer_name=f"act_{counter['act']}")(x)

    inputs = keras.Input(input_shape, name="image")
    if c.architecture == "resnet":
        x = act(bn(conv(inputs, 16, 3, name="stem"), "stem_bn"))
        for stage, filters in enumerate((16, 32, 64)):
            for block in range(n):
                name = f"stage{stage + 1}_block{block + 1}"
                stride = 2 if stage and not block else 1
                y = act(bn(conv(x, filters, 3, stride, f"{name}_conv1"), f"{name}_bn1"))
                y = bn(conv(y, filters, 3, name=f"{name}_conv2"), f"{name}_bn2")
                shortcut = x
                if stride != 1:
                    shortcut = keras.layers.MaxPooling2D(1, strides=2, name=f"{name}_subsample")(x)
                if shortcut.shape[-1] != filters:
                    extra = filters - shortcut.shape[-1]
                    shortcut = ZeroChannels(extra, name=f"{name}_pad")(shortcut)
                x = act(keras.layers.Add(name=f"{name}_add")([y, shortcut]))
    elif c.architecture in ("preact_resnet", "wide_resnet"):
        bottleneck = c.architecture == "preact_resnet"
        widths = (16, 32, 64) if bottleneck else tuple(16 * c.widen_factor * m for m in (1, 2, 4))
        x = conv(inputs, 16, 3, name="stem")
        for stage, width in enumerate(widths):
            out = 4 * width if bottleneck else width
            for block in range(n):
                name = f"stage{stage + 1}_block{block + 1}"
                stride = 2 if stage and not block else 1
                pre = act(bn(x, f"{name}_bn1"))
                if bottleneck:
                    y = conv(pre, width, 1, name=f"{name}_conv1")
                    y = conv(act(bn(y, f"{name}_bn2")), width, 3, stride, f"{name}_conv2")
                    y = conv(act(bn(y, f"{name}_bn3")), out, 1, name=f"{name}_conv3")
                else:
                    y = conv(pre, width, 3, stride, f"{name}_conv1")
                    y = act(bn(y, f"{name}_bn2"))
                    if c.dropout:
                        y = keras.layers.Dropout(c.dropout, name=f"{name}_dropout")(y)
                    y = conv(y, width, 3, name=f"{name}_conv2")
                shortcut = x
                if stride != 1 or x.shape[-1] != out:  # projection of the pre-activation
                    shortcut = conv(pre, out, 1, stride, f"{name}_shortcut")
                x = keras.layers.Add(name=f"{name}_add")([y, shortcut])
        x = act(bn(x, "final_bn"))
    else:  # densenet
        k = c.growth_rate
        x = conv(inputs, 2 * k if c.bottleneck_compression else 16, 3, name="stem")
        for stage in range(3):
            for layer in range(n):
                name = f"block{stage + 1}_layer{layer + 1}"
                y = act(bn(x, f"{name}_bn1"))
                if c.bottleneck_compression:
                    y = conv(y, 4 * k, 1, name=f"{name}_conv1")
                    y = act(bn(y, f"{name}_bn2"))
                y = conv(y, k, 3, name=f"{name}_conv2")
                x = keras.layers.Concatenate(name=f"{name}_concat")([x, y])
            if stage < 2:
                name = f"transition{stage + 1}"
                channels = x.shape[-1] // 2 if c.bottleneck_compression else x.shape[-1]
                x = conv(act(bn(x, f"{name}_bn")), channels, 1, name=f"{name}_conv")
                x = keras.layers.AveragePooling2D(2, name=f"{name}_pool")(x)
        x = act(bn(x, "final_bn"))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        # Torch's nn.Linear: U(±1/√fan_in) (a variance of 1/(3·fan_in)); the bias 0.
        kernel_initializer=(
            keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
            if torch_init
            else "glorot_uniform"
        ),
        kernel_regularizer=regularizer,
        bias_regularizer=other_regularizer,
        dtype="float32",
        name="predictions",
    )(x)
    return keras.Model(
        inputs, outputs, name=f"{c.architecture}_{c.depth}_{activation_slug(c.activation)}"
    )
