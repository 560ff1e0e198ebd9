"""Pictures of learned β: the distribution (the paper's Fig. 7) and the curves.

Figures are drawn on matplotlib's Agg canvas directly, without `pyplot`: no
display is needed and the user's pyplot backend and state are left alone.
Both pictures are `WIDTH` × `HEIGHT` pixels.
"""

import os
import tempfile

import numpy as np

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


def _swish(x, beta):
    return x * 0.5 * (1.0 + np.tanh(0.5 * beta * x))  # σ(z) without overflow


def curves_figure(betas, title="Learned Swish curves"):
    """f(x) = x·σ(βx) on [−6, 6] for the β quantiles, with ReLU and x/2.

    Args:
        betas: Every β value (any shape; at least one value).
        title: The figure title.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    betas = np.asarray(betas, np.float64).reshape(-1)
    figure = _figure()
    axes = figure.add_subplot()
    x = np.linspace(*X_RANGE, 601)
    axes.plot(x, np.maximum(x, 0.0), color="0.6", linestyle="--", label="ReLU")
    axes.plot(x, x / 2.0, color="0.6", linestyle=":", label="x/2 (β = 0)")
    values = np.quantile(betas, QUANTILES)
    colors = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e")
    for label, beta, color in zip(_QUANTILE_LABELS, values, colors, strict=True):
        axes.plot(x, _swish(x, beta), color=color, label=f"{label}: β = {beta:.4g}")
    axes.set_xlim(*X_RANGE)
    axes.set_ylim(-1.5, X_RANGE[1])
    axes.axhline(0.0, color="0.85", linewidth=0.8, zorder=0)
    axes.axvline(0.0, color="0.85", linewidth=0.8, zorder=0)
    axes.set_xlabel("x")
    axes.set_ylabel("f(x) = x · σ(βx)")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    return figure


def distribution_figure(betas, layer_count, title=None):
    """A histogram of every β, drawn like the paper's Fig. 7.

    Args:
        betas: Every β value (any shape; at least one value).
        layer_count: How many SwishBeta layers the values come from.
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
            f"{layer_count} SwishBeta layer{'s' if layer_count != 1 else ''})"
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
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".plot.", suffix=".png", dir=directory)
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
