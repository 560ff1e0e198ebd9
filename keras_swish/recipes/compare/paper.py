"""The paper's numbers, for the settings its tables share with the experiments here.

Ramachandran, Zoph and Le (2017), Searching for Activation Functions: medians
of 5 runs on CIFAR (test accuracy %, Table 2), the median of the 3 printed
runs for Inception-ResNet-v2 (top-1 %), the one number printed for MobileNet
(top-1 %) and for the Transformer (newstest2014 BLEU of WMT14 En→De, Table
11: tokenized BLEU of that time's tooling, about 0.5–1 point above the
sacreBLEU 13a that `compare` reports). Only the values in shared/PAPER.md's
headline table are kept here: ReLU, Swish-1 (`swish`) and Swish
(`swish_beta`).
"""

PAPER = {
    "preact_resnet164/cifar10": {"relu": 93.8, "swish": 94.7, "swish_beta": 94.5},
    "preact_resnet164/cifar100": {"relu": 74.2, "swish": 75.1, "swish_beta": 75.1},
    "wide_resnet_28_10/cifar10": {"relu": 95.3, "swish": 95.5, "swish_beta": 95.5},
    "mobilenet/imagenet": {"relu": 72.0, "swish": 74.2, "swish_beta": 74.2},
    "inception_resnet_v2/imagenet": {"relu": 79.6, "swish": 80.3, "swish_beta": 80.2},
    "transformer_nmt/wmt14": {"relu": 27.8, "swish": 28.0, "swish_beta": 27.6},
}
PAPER_METRIC = {
    "preact_resnet164/cifar10": "test top-1 %, median of 5",
    "preact_resnet164/cifar100": "test top-1 %, median of 5",
    "wide_resnet_28_10/cifar10": "test top-1 %, median of 5",
    "mobilenet/imagenet": "validation top-1 %",
    "inception_resnet_v2/imagenet": "validation top-1 %, median of 3",
    "transformer_nmt/wmt14": "newstest2014 tokenized BLEU; here sacreBLEU 13a, ~0.5–1 lower",
}


def paper_numbers(experiment):
    """`{activation: median}` from the paper for `experiment`, or {}."""
    return dict(PAPER.get(experiment, {}))
