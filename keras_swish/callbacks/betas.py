"""Finding every layer with a learned β, reading its β, and β snapshots on disk.

A β layer is a `SwishBeta`, or an `ExpressionActivation` whose formula uses
`beta` (one without `beta` has no weight and is left out). A model's β layers
are found by walking the layer tree, which includes nested models and
activations held inside other layers (the `"swish_beta"` or `"expr:..."`
activation of `Dense(..., activation=...)` is tracked as a sublayer of the
Dense). Keras 3 has no public API for a layer's sublayers, so
the walk uses `Layer._flatten_layers(recursive=False)`, the same private
method Keras uses to collect weights; it is called in `_children()` only.

Each β layer is named by the path of its β variable without the trailing
`/beta` (`"dense/swish_beta"`, `"lstm/lstm_cell/recurrent_swish_beta"`, or
`"swish_beta_3"` for a standalone layer, `"dense/expression_activation"`
for an `"expr:..."` activation): stable across saves, reloads and
resumed runs, and readable. Should two layers share a path (nested models
with equally named layers), the owning model names are put in front, and a
counter after that if needed.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from keras_swish.errors import UsageError
from keras_swish.files import json_text, write_atomic

SNAPSHOT_NAME = "betas.json"
SNAPSHOT_FORMAT = "keras_swish.betas/1"
SWISH_FORMULA = "x * sigmoid(beta * x)"  # What a SwishBeta computes.


def _swish(x, beta):
    return x * 0.5 * (1.0 + np.tanh(0.5 * beta * x))  # σ(z) without overflow


@dataclass(frozen=True)
class LayerBetas:
    """The β values of one β layer (a SwishBeta or an ExpressionActivation).

    Attributes:
        name: The layer's stable name (its β path without `/beta`).
        values: The β values as a float32 NumPy array of β's shape.
        formula: The canonical formula of an `ExpressionActivation`, or
            None (the default) for a `SwishBeta`.
    """

    name: str
    values: np.ndarray
    formula: str | None = None

    @property
    def channels(self):
        """How many β values the layer has."""
        return int(self.values.size)

    @property
    def function(self):
        """The formula the layer computes: `formula`, or x·σ(βx) for SwishBeta."""
        return SWISH_FORMULA if self.formula is None else self.formula

    def evaluate(self, x, beta):
        """The layer's function at `x` for one β, in NumPy float64.

        Args:
            x: Inputs (any shape).
            beta: A β value (or an array broadcastable to `x`).

        Returns:
            A float64 array: x·σ(βx) for a SwishBeta, else
            `Expression.numpy(x, beta=beta)` of the formula.
        """
        x = np.asarray(x, np.float64)
        if self.formula is None:
            return _swish(x, np.asarray(beta, np.float64))
        from keras_swish.expressions.formula import parse

        return parse(self.formula).numpy(x, beta=beta)


def _children(layer):
    return layer._flatten_layers(include_self=False, recursive=False)


def is_beta_layer(layer):
    """Whether `layer` has a learned β: a SwishBeta, or an ExpressionActivation
    whose formula uses `beta`."""
    from keras_swish.expressions.layer import ExpressionActivation
    from keras_swish.layers.swish_beta import SwishBeta

    if isinstance(layer, SwishBeta):
        return True
    return isinstance(layer, ExpressionActivation) and layer.expression.uses_beta


def formula_of(layer):
    """The canonical formula of an ExpressionActivation; None for a SwishBeta."""
    from keras_swish.expressions.layer import ExpressionActivation

    return layer.formula if isinstance(layer, ExpressionActivation) else None


def _walk(layer, owners, seen, found):
    for child in _children(layer):
        if id(child) in seen:
            continue
        seen.add(id(child))
        if is_beta_layer(child):
            found.append((child, owners))
        _walk(child, owners + (child.name,), seen, found)


def find_beta_layers(model):
    """Every built layer with a learned β in `model`, with its stable name.

    The β layers are the `SwishBeta` layers (standalone, or made by
    `activation="swish_beta"`) and the `ExpressionActivation` layers whose
    formula uses `beta` (standalone, or made by `activation="expr:..."`).

    Args:
        model: A Keras layer or model.

    Returns:
        A list of `(name, layer)` pairs in layer-tree order. Layers not built
        yet (no β) are left out.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(3, activation="expr:max(x, sigmoid(beta * x))"),
    ...     keras.layers.Dense(2, activation="expr:max(x, sigmoid(x))"),
    ...     keras_swish.SwishBeta()])
    >>> [name for name, _ in keras_swish.callbacks.betas.find_beta_layers(model)]
    ['sequential/dense/expression_activation', 'sequential/swish_beta']
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


find_swish_layers = find_beta_layers  # The earlier name, from SwishBeta-only days.


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
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds it exactly
            x = x.float()
    if hasattr(x, "numpy"):  # TensorFlow, PyTorch
        return np.asarray(x.numpy())
    return np.asarray(x)  # JAX, NumPy


def betas_of(named_layers):
    """The current β of `(name, layer)` pairs, as a list of `LayerBetas`.

    Each `LayerBetas` carries the layer's formula (None for a SwishBeta).
    """
    return [
        LayerBetas(name, to_numpy(layer.beta).astype(np.float32), formula_of(layer))
        for name, layer in named_layers
    ]


def read_betas(model):
    """The current β of every β layer (SwishBeta, ExpressionActivation) in `model`.

    Args:
        model: A Keras layer or model.

    Returns:
        A list of `LayerBetas`, in the order of `find_beta_layers`.
    """
    return betas_of(find_beta_layers(model))


def all_values(layers):
    """Every β of `layers` (a list of `LayerBetas`) as one flat float32 array."""
    if not layers:
        return np.zeros((0,), np.float32)
    return np.concatenate([layer.values.reshape(-1) for layer in layers])


def write_snapshot(layers, directory, step):
    """Writes `layers` to `directory/betas.json`, replacing it atomically.

    The file is JSON: `{"format": "keras_swish.betas/1", "step": int,
    "layers": [{"name": str, "shape": [int, ...], "beta": [float, ...]}]}`,
    and an ExpressionActivation's entry also has `"formula": str` (a
    SwishBeta's has none, so the snapshots of SwishBeta-only models are as
    before). β values are float32 numbers written exactly (as float64 text).
    """

    def entry(layer):
        data = {
            "name": layer.name,
            "shape": list(layer.values.shape),
            "beta": [float(v) for v in layer.values.reshape(-1)],
        }
        if layer.formula is not None:
            data["formula"] = layer.formula
        return data

    data = {
        "format": SNAPSHOT_FORMAT,
        "step": int(step),
        "layers": [entry(layer) for layer in layers],
    }
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SNAPSHOT_NAME)
    write_atomic(path, json_text(data))
    return path


def read_snapshot(path):
    """Reads a `betas.json` written by `write_snapshot`.

    Args:
        path: The file's path.

    Returns:
        A pair `(step, layers)`: the summary step and a list of `LayerBetas`
        (with the formula of each ExpressionActivation, parsed and checked
        by the safe formula parser).

    Raises:
        UsageError: (a `ValueError`) The file is not a β snapshot, or holds a
            bad formula.
    """
    from keras_swish.expressions.formula import parse

    def formula(entry):
        text = entry.get("formula")
        if text is None:
            return None
        if not isinstance(text, str):
            raise ValueError(f"formula {text!r} is not a string")
        return str(parse(text))

    try:
        with open(path) as f:
            data = json.load(f)
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        layers = [
            LayerBetas(
                str(entry["name"]),
                np.asarray(entry["beta"], np.float32).reshape(entry["shape"]),
                formula(entry),
            )
            for entry in data["layers"]
        ]
        return int(data["step"]), layers
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(  # a ValueError: `keras-swish beta-report metrics.json` exits 2
            f"{path} is not a β snapshot written by BetaMonitor "
            f"(expected JSON in format {SNAPSHOT_FORMAT!r}): {error}"
        ) from None
