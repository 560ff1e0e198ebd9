"""`beta_report`: β pictures and a per-layer table, from a model or a run."""

import os
from dataclasses import dataclass

import numpy as np

from keras_swish.callbacks import betas as betas_lib
from keras_swish.callbacks import plots
from keras_swish.errors import UsageError

DISTRIBUTION_PNG = "beta_distribution.png"
CURVES_PNG = "beta_curves.png"
_EXPECTED = (
    "Expected a Keras model, a `.keras` model file, a `betas.json` snapshot "
    "or a run's log directory written by BetaMonitor"
)


@dataclass(frozen=True)
class BetaReport:
    """What `beta_report` found and wrote.

    Attributes:
        source: What the β were read from (a path, or the model's name).
        step: The summary step of a BetaMonitor snapshot, else None.
        layers: A tuple of `LayerBetas`, one per β layer (SwishBeta, or
            ExpressionActivation with `beta`).
        distribution_png: Path of the β distribution picture.
        curves_png: Path of the learned-curves picture.

    Example:

    >>> layer = keras_swish.SwishBeta()
    >>> model = keras.Sequential([keras.Input((3,)), layer], name="net")
    >>> _ = layer.beta.assign([0.5, 1.0, 1.5])
    >>> report = keras_swish.callbacks.beta_report(model, tempfile.mkdtemp())
    >>> report.step, report.rows()[0]["mean"], report.rows()[0]["max"]
    (None, 1.0, 1.5)
    """

    source: str
    step: int | None
    layers: tuple
    distribution_png: str
    curves_png: str

    def rows(self):
        """One dict per layer: `layer`, `channels`, `mean`, `min`, `max`."""
        return [
            {
                "layer": layer.name,
                "channels": layer.channels,
                "mean": float(layer.values.mean(dtype=np.float64)),
                "min": float(layer.values.min()),
                "max": float(layer.values.max()),
            }
            for layer in self.layers
        ]

    def table(self):
        """The rows as an aligned text table, with a last row over all β."""
        values = betas_lib.all_values(list(self.layers))
        rows = self.rows() + [
            {
                "layer": f"all ({len(self.layers)} layers)",
                "channels": int(values.size),
                "mean": float(values.mean(dtype=np.float64)),
                "min": float(values.min()),
                "max": float(values.max()),
            }
        ]
        width = max(len("layer"), *(len(r["layer"]) for r in rows))
        lines = [f"{'layer':<{width}}  {'channels':>8}  {'mean':>8}  {'min':>8}  {'max':>8}"]
        lines.append("-" * len(lines[0]))
        for r in rows:
            if r is rows[-1]:
                lines.append("-" * len(lines[0]))
            lines.append(
                f"{r['layer']:<{width}}  {r['channels']:>8d}  {r['mean']:>8.4f}  "
                f"{r['min']:>8.4f}  {r['max']:>8.4f}"
            )
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _find_snapshot(directory):
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        if betas_lib.SNAPSHOT_NAME in files:
            found.append(os.path.join(root, betas_lib.SNAPSHOT_NAME))
    if not found:
        raise UsageError(
            f"No BetaMonitor snapshot ({betas_lib.SNAPSHOT_NAME}) under {directory!r}. "
            "BetaMonitor writes one to <log_dir>/beta at every summary step. "
            f"{_EXPECTED}."
        )
    if len(found) > 1:
        raise UsageError(
            f"{directory!r} holds {len(found)} BetaMonitor runs; pass one of them: "
            + ", ".join(repr(os.path.dirname(p)) for p in found[:10])
        )
    return found[0]


def _load_model(path):
    import keras

    import keras_swish  # noqa: F401  (registers SwishBeta, ExpressionActivation)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise UsageError(f"Could not load a Keras model from {path!r}: {error}") from None


def load_betas(model_or_path):
    """Reads β from a model, a `.keras` file, a snapshot or a log directory.

    Args:
        model_or_path: A Keras model (or layer); the path of a `.keras`
            model; the path of a `betas.json` snapshot; or a run's log
            directory (or any directory holding exactly one snapshot).

    Returns:
        A triple `(source, step, layers)`: a description of the source, the
        snapshot's step (None for a model) and a list of `LayerBetas`.

    Raises:
        ValueError: Nothing readable, or no β layer in it.
    """
    import keras

    if isinstance(model_or_path, keras.layers.Layer):
        source, step = f"model {model_or_path.name!r}", None
        layers = betas_lib.read_betas(model_or_path)
    elif isinstance(model_or_path, (str, os.PathLike)):
        path = source = os.fspath(model_or_path)
        step = None
        if os.path.isdir(path):
            step, layers = betas_lib.read_snapshot(_find_snapshot(path))
        elif os.path.isfile(path) and path.endswith(".json"):
            step, layers = betas_lib.read_snapshot(path)
        elif os.path.isfile(path) and path.endswith(".keras"):
            layers = betas_lib.read_betas(_load_model(path))
        elif not os.path.exists(path):
            raise UsageError(f"No such file or directory: {path!r}. {_EXPECTED}.")
        else:
            raise UsageError(f"{_EXPECTED}. Received: {path!r}")
    else:
        raise UsageError(
            f"{_EXPECTED}. Received: model_or_path of type {type(model_or_path).__name__}"
        )
    if not layers:
        raise UsageError(
            f"{source} has no SwishBeta layer and no ExpressionActivation with "
            "`beta`: no β to report."
        )
    return source, step, layers


def beta_report(model_or_path, out_dir):
    """Pictures of a model's learned β and a per-layer table.

    Writes two PNGs (800 × 500 pixels) to `out_dir`:
    `beta_distribution.png`, a histogram of every β in the style of the
    paper's Fig. 7, and `beta_curves.png`, each β layer's own function at
    the β quantiles (min, 10 %, 50 %, 90 %, max) beside ReLU:
    f(x) = x·σ(βx) for SwishBeta, the formula for an ExpressionActivation
    with `beta` (see `BetaMonitor`). The command line
    `keras-swish beta-report PATH` does the same and prints the table.

    Args:
        model_or_path: A Keras model; the path of a `.keras` model; a run's
            log directory written by `BetaMonitor` (its latest β); or the
            `betas.json` snapshot in it.
        out_dir: Directory for the PNGs; created if missing. Nothing is
            written when the input is unusable.

    Returns:
        A `BetaReport`: `print(report)` shows the table (layer, channels,
        mean, min, max), `report.rows()` gives it as dicts.

    Example:

    >>> dense = keras.layers.Dense(8, activation="swish_beta", name="fc")
    >>> model = keras.Sequential([keras.Input((4,)), dense], name="net")
    >>> report = keras_swish.callbacks.beta_report(model, tempfile.mkdtemp())
    >>> report.rows()[0]["layer"], report.rows()[0]["channels"]
    ('net/fc/swish_beta', 8)
    """
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise UsageError(f"`out_dir` must be a non-empty path. Received: out_dir={out_dir!r}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"`out_dir` must be a directory. Received: {out_dir!r} (a file)")
    source, step, layers = load_betas(model_or_path)
    values = betas_lib.all_values(layers)
    if not np.all(np.isfinite(values)):
        raise UsageError(f"{source} has non-finite β values (NaN or inf).")
    distribution = plots.distribution_figure(values, len(layers))
    curves = plots.curves_figure(layers, step=step)
    os.makedirs(out_dir, exist_ok=True)
    distribution_png = plots.save_png(distribution, os.path.join(out_dir, DISTRIBUTION_PNG))
    curves_png = plots.save_png(curves, os.path.join(out_dir, CURVES_PNG))
    return BetaReport(source, step, tuple(layers), distribution_png, curves_png)
