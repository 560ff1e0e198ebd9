"""Pictures of learned β: the distribution (the paper's Fig. 7) and the curves.

The curves are each β layer's own function: x·σ(βx) for a SwishBeta, the
formula for an ExpressionActivation (`curve_groups` gives their data).

Figures are drawn on matplotlib's Agg canvas directly, without `pyplot`: no
display is needed and the user's pyplot backend and state are left alone.
Both pictures are `WIDTH` × `HEIGHT` pixels.
"""

import io
import math
import textwrap
from dataclasses import dataclass

import numpy as np

from keras_swish.files import write_atomic

WIDTH, HEIGHT, DPI = 800, 500, 100
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)
_QUANTILE_LABELS = ("min", "10 %", "50 %", "90 %", "max")
X_RANGE = (-6.0, 6.0)


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


SWISH_TITLE = "Learned Swish curves"
FORMULA_TITLE = "Learned activation curves"
_COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e")
_Y_LIMIT = 12.0  # Formula panels: the y-axis follows the curves within ±this.


@dataclass(frozen=True)
class CurveGroup:
    """The curves drawn in one panel of `curves_figure`: one function.

    Attributes:
        function: The formula every layer of the group computes (canonical
            text; `"x * sigmoid(beta * x)"` for SwishBeta).
        layers: The names of the layers in the group.
        swish: Whether the group holds SwishBeta layers (drawn as x·σ(βx)).
        x: The inputs, `linspace(-6, 6, 601)`.
        betas: The β quantiles of the group's layers (min, 10 %, 50 %,
            90 %, max), float64.
        labels: The quantiles' names, `("min", "10 %", "50 %", "90 %", "max")`.
        curves: float64 array `(len(betas), len(x))`: the group's function
            at each β quantile.
    """

    function: str
    layers: tuple
    swish: bool
    x: np.ndarray
    betas: np.ndarray
    labels: tuple
    curves: np.ndarray

    @property
    def label(self):
        """The function as drawn in titles: x · σ(βx) for SwishBeta."""
        return "x · σ(βx)" if self.swish else self.function


def _as_layers(layers):
    from keras_swish.callbacks.betas import LayerBetas

    if isinstance(layers, (list, tuple)) and all(isinstance(v, LayerBetas) for v in layers):
        if not layers:
            raise ValueError("curves need at least one layer with β.")
        return list(layers)
    # Bare β values: SwishBeta layers, as before formulas were followed.
    return [LayerBetas("swish_beta", np.asarray(layers, np.float32))]


def curve_groups(layers):
    """The data of `curves_figure`: each layer's own function at its β quantiles.

    Layers computing the same function are one group (a SwishBeta and an
    ExpressionActivation of `"x * sigmoid(beta * x)"` too), whose curves are
    taken at the quantiles of all their β. A SwishBeta's curve is
    x·σ(βx); an ExpressionActivation's is `Expression.numpy(x, beta=β)` of
    its formula. Non-finite values (a formula's poles) come out as NaN.

    Args:
        layers: A list of `LayerBetas` (as from `read_betas`), or bare β
            values (any shape), taken as SwishBeta.

    Returns:
        A list of `CurveGroup`, in the order their functions first occur.
    """
    from keras_swish.callbacks.betas import SWISH_FORMULA

    groups = {}
    for layer in _as_layers(layers):
        groups.setdefault(layer.function, []).append(layer)
    x = np.linspace(*X_RANGE, 601)
    result = []
    for function, members in groups.items():
        values = np.concatenate([m.values.reshape(-1) for m in members]).astype(np.float64)
        betas = np.quantile(values, QUANTILES)
        # The layer that evaluates: a SwishBeta if the group has one (its
        # overflow-free σ), else the formula itself.
        first = next((m for m in members if m.formula is None), members[0])
        curves = np.stack([first.evaluate(x, beta) for beta in betas])
        curves = np.where(np.isfinite(curves), curves, np.nan)
        result.append(
            CurveGroup(
                function=function,
                layers=tuple(m.name for m in members),
                swish=function == SWISH_FORMULA,
                x=x,
                betas=betas,
                labels=_QUANTILE_LABELS,
                curves=curves,
            )
        )
    return result


def curves_title(layers, step=None):
    """`"Learned Swish curves"` when every layer is a Swish, else
    `"Learned activation curves"`; with `" (step N)"` for a step."""
    from keras_swish.callbacks.betas import SWISH_FORMULA

    swish = all(layer.function == SWISH_FORMULA for layer in _as_layers(layers))
    title = SWISH_TITLE if swish else FORMULA_TITLE
    return title if step is None else f"{title} (step {step})"


def _y_limits(group):
    if group.swish:
        return -1.5, X_RANGE[1]
    finite = group.curves[np.isfinite(group.curves)]
    low = min(-1.5, float(finite.min())) if finite.size else -1.5
    high = max(X_RANGE[1], float(finite.max())) if finite.size else X_RANGE[1]
    margin = 0.05 * (high - low)
    return max(low - margin, -_Y_LIMIT), min(high + margin, _Y_LIMIT)


def _draw_group(axes, group, small):
    x = group.x
    axes.plot(x, np.maximum(x, 0.0), color="0.6", linestyle="--", label="ReLU")
    if group.swish:
        axes.plot(x, x / 2.0, color="0.6", linestyle=":", label="x/2 (β = 0)")
    for label, beta, curve, color in zip(
        group.labels, group.betas, group.curves, _COLORS, strict=True
    ):
        axes.plot(x, curve, color=color, label=f"{label}: β = {beta:.4g}")
    axes.set_xlim(*X_RANGE)
    axes.set_ylim(*_y_limits(group))
    axes.axhline(0.0, color="0.85", linewidth=0.8, zorder=0)
    axes.axvline(0.0, color="0.85", linewidth=0.8, zorder=0)
    axes.set_xlabel("x")
    axes.legend(loc="upper left", fontsize="x-small" if small else "small")


def curves_figure(layers, title=None, step=None):
    """Each β layer's own function on [−6, 6] at its β quantiles, with ReLU.

    One panel per function (see `curve_groups`): f(x) = x·σ(βx) for
    SwishBeta layers, beside x/2 (β = 0); the formula of an
    ExpressionActivation, evaluated with `Expression.numpy` at that layer's
    β. Each panel draws the β quantiles (min, 10 %, 50 %, 90 %, max) of its
    layers. Only SwishBeta layers give the earlier single-panel picture.

    Args:
        layers: A list of `LayerBetas` (as from `read_betas`), or bare β
            values (any shape; at least one), taken as SwishBeta.
        title: The figure title; by default `curves_title(layers, step)`.
        step: The summary step, for the default title.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    groups = curve_groups(layers)
    if title is None:
        title = curves_title(layers, step)
    figure = _figure()
    if len(groups) == 1:
        axes = figure.add_subplot()
        _draw_group(axes, groups[0], small=False)
        function = groups[0].label
        axes.set_ylabel(f"f(x) = {function}" if len(function) <= 40 else "f(x)")
        if len(function) > 40:
            title = f"{title}\nf(x) = {_wrap(function, 90)}"
        axes.set_title(title)
        return figure
    columns = math.ceil(math.sqrt(len(groups)))
    rows = math.ceil(len(groups) / columns)
    for i, group in enumerate(groups):
        axes = figure.add_subplot(rows, columns, i + 1)
        _draw_group(axes, group, small=True)
        count = len(group.layers)
        axes.set_title(
            f"f(x) = {_wrap(group.label, 90 // columns)}\n"
            f"({count} layer{'s' if count != 1 else ''})",
            fontsize="small",
        )
    figure.suptitle(title)
    return figure


def _wrap(text, width):
    return "\n".join(textwrap.wrap(text, max(width, 20))) or text


def distribution_figure(betas, layer_count, title=None):
    """A histogram of every β, drawn like the paper's Fig. 7.

    Args:
        betas: Every β value (any shape; at least one value).
        layer_count: How many β layers (SwishBeta, ExpressionActivation)
            the values come from.
        title: The figure title; by default it says how many values and
            layers are drawn.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    betas = np.asarray(betas, np.float64).reshape(-1)
    figure = _figure()
    axes = figure.add_subplot()
    low = min(0.0, float(betas.min()))
    high = max(1.5, float(betas.max()))
    axes.hist(betas, bins=60, range=(low, high), color="#3b528b", edgecolor="white")
    axes.axvline(1.0, color="#d62728", linestyle="--", label="β = 1 (Swish-1)")
    axes.set_xlim(low, high)
    axes.set_xlabel("β")
    axes.set_ylabel("count")
    if title is None:
        title = (
            f"Distribution of trained β ({betas.size} values in "
            f"{layer_count} layer{'s' if layer_count != 1 else ''} with β)"
        )
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    return figure


def to_rgb(figure):
    """The figure's pixels as a `(HEIGHT, WIDTH, 3)` uint8 array."""
    figure.canvas.draw()
    return np.array(figure.canvas.buffer_rgba())[..., :3]


def save_png(figure, path):
    """Writes `figure` as a PNG to `path`, replacing any file there atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
    return path
