"""Finding every SwishBeta in a model, reading its β, and β snapshots on disk.

A model's SwishBeta layers are found by walking the layer tree, which
includes nested models and activations held inside other layers (the
`"swish_beta"` made for `Dense(..., activation="swish_beta")` is tracked as a
sublayer of the Dense). Keras 3 has no public API for a layer's sublayers, so
the walk uses `Layer._flatten_layers(recursive=False)`, the same private
method Keras uses to collect weights; it is called in `_children()` only.

Each SwishBeta is named by the path of its β variable without the trailing
`/beta` (`"dense/swish_beta"`, `"lstm/lstm_cell/recurrent_swish_beta"`, or
`"swish_beta_3"` for a standalone layer): stable across saves, reloads and
resumed runs, and readable. Should two layers share a path (nested models
with equally named layers), the owning model names are put in front, and a
counter after that if needed.
"""

import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

SNAPSHOT_NAME = "betas.json"
SNAPSHOT_FORMAT = "keras_swish.betas/1"


@dataclass(frozen=True)
class LayerBetas:
    """The β values of one SwishBeta layer.

    Attributes:
        name: The layer's stable name (its β path without `/beta`).
        values: The β values as a float32 NumPy array of β's shape.
    """

    name: str
    values: np.ndarray

    @property
    def channels(self):
        """How many β values the layer has."""
        return int(self.values.size)


def _children(layer):
    return layer._flatten_layers(include_self=False, recursive=False)


def _walk(layer, owners, seen, found):
    from keras_swish.layers.swish_beta import SwishBeta

    for child in _children(layer):
        if id(child) in seen:
            continue
        seen.add(id(child))
        if isinstance(child, SwishBeta):
            found.append((child, owners))
        _walk(child, owners + (child.name,), seen, found)


def find_swish_layers(model):
    """Every built SwishBeta in `model`, with its stable name.

    Args:
        model: A Keras layer or model.

    Returns:
        A list of `(name, layer)` pairs in layer-tree order. Layers not built
        yet (no β) are left out.
    """
    found = []
    _walk(model, (), {id(model)}, found)
    found = [(layer, owners) for layer, owners in found if layer.built]
    names = [layer.beta.path.removesuffix("/beta") for layer, _ in found]
    counts = {name: names.count(name) for name in names}
    for i, (_, owners) in enumerate(found):
        if counts[names[i]] > 1:  # Owners not already in the path go in front.
            parts = names[i].split("/")
            names[i] = "/".join([o for o in owners if o not in parts] + parts)
    taken = set()
    result = []
    for name, (layer, _) in zip(names, found, strict=True):
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}_{n}"
        taken.add(unique)
        result.append((unique, layer))
    return result


def to_numpy(x):
    """A Keras variable's or an eager tensor's value as a NumPy array.

    Works on every backend without `keras.ops.convert_to_numpy`, which goes
    through an `__array__` that NumPy 2 deprecates on some backends.
    """
    import keras

    if isinstance(x, keras.Variable):
        x = x.value  # The backend's variable or tensor.
    if hasattr(x, "detach"):  # PyTorch
        x = x.detach().cpu()
    if hasattr(x, "numpy"):  # TensorFlow, PyTorch
        return np.asarray(x.numpy())
    return np.asarray(x)  # JAX, NumPy


def betas_of(named_layers):
    """The current β of `(name, layer)` pairs, as a list of `LayerBetas`."""
    return [
        LayerBetas(name, to_numpy(layer.beta).astype(np.float32)) for name, layer in named_layers
    ]


def read_betas(model):
    """The current β of every SwishBeta in `model`.

    Args:
        model: A Keras layer or model.

    Returns:
        A list of `LayerBetas`, in the order of `find_swish_layers`.
    """
    return betas_of(find_swish_layers(model))


def all_values(layers):
    """Every β of `layers` (a list of `LayerBetas`) as one flat float32 array."""
    if not layers:
        return np.zeros((0,), np.float32)
    return np.concatenate([layer.values.reshape(-1) for layer in layers])


def write_snapshot(layers, directory, step):
    """Writes `layers` to `directory/betas.json`, replacing it atomically.

    The file is JSON: `{"format": "keras_swish.betas/1", "step": int,
    "layers": [{"name": str, "shape": [int, ...], "beta": [float, ...]}]}`.
    β values are float32 numbers written exactly (as float64 text).
    """
    data = {
        "format": SNAPSHOT_FORMAT,
        "step": int(step),
        "layers": [
            {
                "name": layer.name,
                "shape": list(layer.values.shape),
                "beta": [float(v) for v in layer.values.reshape(-1)],
            }
            for layer in layers
        ],
    }
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SNAPSHOT_NAME)
    fd, tmp = tempfile.mkstemp(prefix=".betas.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_snapshot(path):
    """Reads a `betas.json` written by `write_snapshot`.

    Args:
        path: The file's path.

    Returns:
        A pair `(step, layers)`: the summary step and a list of `LayerBetas`.

    Raises:
        ValueError: The file is not a β snapshot.
    """
    try:
        with open(path) as f:
            data = json.load(f)
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        layers = [
            LayerBetas(
                str(entry["name"]),
                np.asarray(entry["beta"], np.float32).reshape(entry["shape"]),
            )
            for entry in data["layers"]
        ]
        return int(data["step"]), layers
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not a β snapshot written by BetaMonitor "
            f"(expected JSON in format {SNAPSHOT_FORMAT!r}): {error}"
        ) from None
