"""A comparison's pictures and its TensorBoard HParams dashboard."""

import io
import math
import os
import warnings

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path):
    """Saves a figure as a PNG, whole or not at all (a comparison or search may be killed)."""
    from keras_swish.recipes.core.config import write_atomic

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    write_atomic(path, buffer.getvalue())


def _scale(metric):
    return 1.0 if "bleu" in metric else 100.0


def final_metric_plot(results, path):
    """Every run's metric per activation (dots), the median (bar), the paper's (cross)."""
    plt = _pyplot()
    experiments = results["experiments"]
    widest = max(len(table["activations"]) for table in experiments.values())
    fig, axes = plt.subplots(
        1, len(experiments), figsize=((2 + 1.3 * widest) * len(experiments), 4), squeeze=False
    )
    for ax, (experiment, table) in zip(axes[0], experiments.items(), strict=True):
        metric, scale = table["metric"], _scale(table["metric"])
        names = list(table["activations"])
        for i, name in enumerate(names):
            runs = np.asarray(table["activations"][name][metric]["runs"]) * scale
            jitter = np.linspace(-0.15, 0.15, len(runs)) if len(runs) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), runs, s=18, color="tab:blue", zorder=3)
            ax.hlines(np.median(runs), i - 0.3, i + 0.3, color="black", zorder=4)
            if name in table["paper"]:
                ax.scatter([i], [table["paper"][name]], marker="x", color="tab:red", zorder=5)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(experiment)
        ax.set_ylabel(f"{metric} ({'BLEU' if scale == 1 else '%'})")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("every seed (dots), median (bar), the paper's median (red x)")
    save_png(fig, path)


def curves_plot(results, path):
    """Validation metric per epoch: median over seeds and the range, per activation."""
    plt = _pyplot()
    experiments = results["experiments"]
    fig, axes = plt.subplots(1, len(experiments), figsize=(6 * len(experiments), 4), squeeze=False)
    for ax, (experiment, table) in zip(axes[0], experiments.items(), strict=True):
        for name, row in table["activations"].items():
            curves = [[math.nan if v is None else v for v in c] for c in row["curves"] if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            values = np.asarray([c[:length] for c in curves], dtype=float)
            epochs = np.arange(1, length + 1)
            with warnings.catch_warnings():  # an epoch where every seed diverged: a gap
                warnings.simplefilter("ignore", RuntimeWarning)
                # A diverged seed's NaN epochs leave the others' median and range.
                median = np.nanmedian(values, axis=0)
                low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            (line,) = ax.plot(epochs, median, label=name)
            ax.fill_between(epochs, low, high, alpha=0.2, color=line.get_color())
        ax.set_title(experiment)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation metric (median, range over seeds)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    save_png(fig, path)


def betas_plot(results, path):
    """The learned β of every trainable-β activation, over the models its runs report.

    Returns:
        Whether there was any β to draw.
    """
    from keras_swish.callbacks.report import load_betas
    from keras_swish.recipes.core.runner import model_path

    found = {}
    for experiment, table in results["experiments"].items():
        for name, row in table["activations"].items():
            values = []
            for run in row["runs"]:
                try:
                    _, _, layers = load_betas(model_path(run))
                except ValueError:  # no SwishBeta in this model
                    break
                values.extend(np.concatenate([np.ravel(b.values) for b in layers]).tolist())
            if values:
                found[f"{experiment}: {name}"] = np.asarray(values)
    if not found:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in found.items():
        ax.hist(values, bins=60, alpha=0.5, label=f"{label} ({values.size} β)")
    ax.set_xlabel("learned β")
    ax.set_ylabel("channels")
    ax.set_title("learned β of every run's reported model")
    ax.legend(fontsize=8)
    save_png(fig, path)
    return True


def write_plots(results, output):
    if not results["experiments"]:
        return
    final_metric_plot(results, os.path.join(output, "final_metric.png"))
    curves_plot(results, os.path.join(output, "validation_curves.png"))
    betas_plot(results, os.path.join(output, "betas.png"))


def write_hparams(cells, results, output):
    """One HParams session per finished run, under `<output>/hparams`."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    root = os.path.join(output, "hparams")
    metrics = sorted(
        {table["metric"] for table in results["experiments"].values()}
        | {"val_" + table["metric"].split("_", 1)[1] for table in results["experiments"].values()}
    )
    with tf.summary.create_file_writer(root).as_default():
        hp.hparams_config(
            hparams=[
                hp.HParam("experiment", hp.Discrete(sorted({c.experiment for c in cells}))),
                hp.HParam("activation", hp.Discrete(sorted({c.activation for c in cells}))),
                hp.HParam("seed", hp.IntInterval(0, max(c.seed for c in cells))),
                hp.HParam("learning_rate", hp.RealInterval(0.0, 1e9)),
            ],
            metrics=[hp.Metric(m) for m in metrics],
        )
    from keras_swish.recipes.compare import _metrics_of, is_done, metric_names

    for cell in cells:
        if not is_done(cell):
            continue
        run = _metrics_of(cell)
        head, _, split = metric_names(run)
        session = os.path.join(root, cell.key.replace("/", "-"))
        values = dict(run["reported"][split])
        values.update(run["reported"]["validation"])
        with tf.summary.create_file_writer(session).as_default():
            hp.hparams(
                {
                    "experiment": cell.experiment,
                    "activation": cell.activation,
                    "seed": cell.seed,
                    "learning_rate": float(cell.learning_rate or 0.0),
                },
                trial_id=cell.key,
            )
            for name in metrics:
                if isinstance(values.get(name), (int, float)):
                    tf.summary.scalar(name, values[name], step=1)
