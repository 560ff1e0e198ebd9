"""`keras-swish compare`: activations × seeds (× learning rates) on one runner, with intervals.

Every (experiment, activation, seed, learning rate) is an ordinary run of
`keras-swish train` in its own folder under the comparison's output:

    <output>/<experiment>/<activation>/seed<S>[-lr<LR>]/   a run folder (metrics.json, ...)
    <output>/results.json, results.csv, results.md          the tables
    <output>/final_metric.png, validation_curves.png, betas.png
    <output>/hparams/                                        TensorBoard's HParams dashboard

A finished run is reused (its `metrics.json` says `completed` for at least
the epochs asked for; a larger `--epochs` continues it); an interrupted one
resumes where it stopped, so a killed comparison re-run with the same command
only trains what is left. A run folder holding other settings is refused
before anything runs, as `keras-swish train` refuses it. With several learning rates, each
activation keeps, among its rates with the most finished seeds, the one whose runs
have the best median validation metric, as the paper did on ImageNet; the reported
numbers are then that rate's.
"""

import csv
import dataclasses
import functools
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time

from keras_swish.errors import UsageError
from keras_swish.files import json_text
from keras_swish.recipes.compare import stats
from keras_swish.recipes.compare.paper import PAPER_METRIC, paper_numbers
from keras_swish.recipes.launch import child_setup

PAPER_ACTIVATIONS = (
    "relu",
    "leaky_relu",
    "prelu",
    "softplus",
    "elu",
    "selu",
    "gelu",
    "swish",
    "swish_beta",
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a comparison."""

    experiment: str
    activation: str
    seed: int
    learning_rate: float | None  # None: the experiment's own
    output: str  # its run folder
    epochs: int | None = None  # what the comparison asks for (None: any finished run counts)
    learning_rate_key: str = "optimizer.learning_rate"  # the config key learning_rate sets

    @property
    def key(self):
        lr = "" if self.learning_rate is None else f"-lr{self.learning_rate:g}"
        return f"{self.experiment}/{self.activation}/seed{self.seed}{lr}"


def parse_activations(text):
    """`"relu,swish"` or `"paper"` → a tuple of activation names, checked."""
    from keras_swish.recipes.models.activations import (
        ACTIVATIONS,
        activation_slug,
        check_activation,
    )

    names = PAPER_ACTIVATIONS if text == "paper" else tuple(_split_top_level(text))
    bad, seen = [], {}
    for name in names:
        try:
            check_activation(name)
        except ValueError as error:
            bad.append(str(error))
            continue
        # Two spellings of one formula would share a run folder (its slug).
        slug = activation_slug(name)
        if slug in seen:
            bad.append(f"{seen[slug]} and {name} are the same activation")
        seen.setdefault(slug, name)
    if bad or not names:
        raise UsageError(
            f"--activations takes 'paper' or distinct names from: {', '.join(ACTIVATIONS)}, "
            f"or expr:<formula>. Received: --activations {text}" + (f" ({bad[0]})" if bad else "")
        )
    return names


def _split_top_level(text):
    """Splits at the commas outside parentheses: `relu,expr:max(x, sin(x))` → 2 names."""
    names, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    names.append("".join(current).strip())
    return [n for n in names if n]


def parse_learning_rates(text):
    if text is None:
        return (None,)
    try:
        rates = tuple(float(x) for x in text.split(","))
    except ValueError:
        rates = ()
    if not rates or any(r <= 0 for r in rates):
        raise UsageError(
            f"--learning-rates takes positive numbers separated by commas. Received: {text}"
        )
    return rates


def plan(
    experiments,
    activations,
    seeds,
    learning_rates,
    output,
    train_flags,
    overrides,
    config_file=None,
):
    """Every cell of the comparison, each checked by the runner before anything runs.

    Raises:
        UsageError: a bad experiment, flag or setting (nothing is written).
    """
    from keras_swish.recipes.core import runner
    from keras_swish.recipes.core.config import check_local_folder
    from keras_swish.recipes.models.activations import activation_slug

    check_local_folder(output, "--output")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1. Received: --seeds {seeds}")
    cells, planned = [], {}
    for experiment in experiments:
        # The recipe names the config key a learning rate sets.
        recipe = runner.resolve(experiment, config_file, train_flags, overrides)[0]
        for activation in activations:
            for lr in learning_rates:
                set_lr = {} if lr is None else runner.nested({recipe.learning_rate_key: lr})
                for seed in range(seeds):
                    _, resolved, config = runner.resolve(
                        experiment,
                        config_file=config_file,
                        flags=dict(train_flags, activation=activation, seed=seed),
                        overrides=_merge(overrides, set_lr),
                    )
                    lr_part = "" if lr is None else f"-lr{lr:g}"
                    folder = os.path.join(
                        output,
                        resolved.name.replace("/", "-"),
                        activation_slug(activation),
                        f"seed{seed}{lr_part}",
                    )
                    same = (resolved.name, activation, lr)
                    if folder in planned:
                        # An experiment named twice (`resnet20,resnet20/embedded`), an
                        # activation or rate given twice: one run, counted once.
                        if planned[folder] == same:
                            continue
                        raise UsageError(
                            f"{_describe(planned[folder])} and {_describe(same)} would share "
                            f"the run folder {folder}: give activations and learning rates "
                            "that differ in their folder names."
                        )
                    planned[folder] = same
                    # A folder holding a run with other settings is refused here, as
                    # `train` would refuse it, before any cell runs; fewer epochs
                    # than asked for is a run to continue, not a finished one.
                    runner.check_output(
                        resolved,
                        dataclasses.replace(
                            config, train=dataclasses.replace(config.train, output=folder)
                        ),
                    )
                    cells.append(
                        Cell(
                            resolved.name,
                            activation,
                            seed,
                            lr,
                            folder,
                            config.train.epochs,
                            recipe.learning_rate_key,
                        )
                    )
    return cells


def _describe(cell_key):
    experiment, activation, lr = cell_key
    return f"{experiment} {activation}" + ("" if lr is None else f" at learning rate {lr!r}")


def _merge(a, b):
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in (a or {}).items()}
    for section, values in (b or {}).items():
        out.setdefault(section, {}).update(values)
    return out


def is_done(cell):
    """Whether the cell's run finished, with as many epochs as the cell asks for."""
    from keras_swish.recipes.core.runner import trained_epochs

    try:
        with open(os.path.join(cell.output, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return False
    if not metrics.get("completed"):
        return False
    return cell.epochs is None or trained_epochs(metrics) >= cell.epochs


def _command(cell, train_args):
    args = [
        sys.executable,
        "-m",
        "keras_swish_cli",
        "train",
        cell.experiment,
        "--activation",
        cell.activation,
        "--seed",
        str(cell.seed),
        "--output",
        cell.output,
        "--verbose",
        "2",
        *train_args,
    ]
    if cell.learning_rate is not None:
        args += ["--set", f"{cell.learning_rate_key}={cell.learning_rate!r}"]
    return args


def _gpus():
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` entries.

    Those `CUDA_VISIBLE_DEVICES` names when it is set (a user's or a
    scheduler's mask, which nvidia-smi does not follow); else every GPU
    nvidia-smi lists. Found without starting TensorFlow here.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [name.strip() for name in visible.split(",")]
        # CUDA stops at the first entry that is not a device: "-1" hides them all.
        kept = []
        for name in names:
            if not name or name.startswith("-"):
                break
            kept.append(name)
        return kept
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(line.startswith("GPU ") for line in listing.splitlines())
    return [str(index) for index in range(count)]


_SHARED_GPU_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def _pinning(slot, parallel, gpus):
    """(env changes, CPU cores) that give worker slot `slot` its own devices.

    `gpus`: the `_gpus()` names the slots share out.
    """
    if parallel <= 1:
        return {}, None
    if gpus:
        env = {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
        if parallel > len(gpus):
            # Slots share a GPU: TensorFlow reserves nearly all of a GPU's memory
            # at start and JAX 75 % of it, so the second process on it would fail
            # out of memory. Each takes what it uses (a user's own setting wins).
            for name, value in _SHARED_GPU_ENV.items():
                if name not in os.environ:
                    env[name] = value
        return env, None
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < parallel:
        return {}, None
    share = len(cores) // parallel
    return {}, set(cores[slot * share : (slot + 1) * share])


def _eta(seconds):
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


def execute(cells, train_args, parallel=1, poll_s=1.0, stream=sys.stdout):
    """Trains every cell not yet done, `parallel` at a time; returns the failed cells."""
    done = [c for c in cells if is_done(c)]
    pending = [c for c in cells if not is_done(c)]
    print(
        f"compare: {len(cells)} runs, {len(done)} already done, {len(pending)} to run, "
        f"{parallel} at a time",
        file=stream,
        flush=True,
    )
    gpus = _gpus()
    free_slots = list(range(parallel))
    running, failed, durations = {}, [], []
    started = time.monotonic()

    def progress():
        left = len(pending)
        if durations:
            eta = sum(durations) / len(durations) * (left + len(running) / 2) / parallel
            eta = f", ETA {_eta(eta)}"
        else:
            eta = ""
        print(
            f"compare: {len(cells) - left - len(running)}/{len(cells)} done, "
            f"{len(running)} running, {left} left{eta} "
            f"({_eta(time.monotonic() - started)} elapsed)",
            file=stream,
            flush=True,
        )

    try:
        while pending or running:
            while pending and free_slots:
                cell = pending.pop(0)
                slot = free_slots.pop(0)
                env_changes, cores = _pinning(slot, parallel, gpus)
                os.makedirs(cell.output, exist_ok=True)
                log = open(os.path.join(cell.output, "train.log"), "a", encoding="utf-8")
                process = subprocess.Popen(
                    _command(cell, train_args),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ, **env_changes),
                    preexec_fn=functools.partial(child_setup, cores, os.getpid()),
                )
                log.close()
                running[process] = (cell, slot, time.monotonic())
                progress()
            for process in [p for p in running if p.poll() is not None]:
                cell, slot, t0 = running.pop(process)
                free_slots.append(slot)
                if process.returncode == 0 and is_done(cell):
                    durations.append(time.monotonic() - t0)
                else:
                    failed.append(cell)
                    print(
                        f"compare: {cell.key} failed (exit status {process.returncode}); "
                        f"see {os.path.join(cell.output, 'train.log')}",
                        file=stream,
                        flush=True,
                    )
                progress()
            time.sleep(poll_s)
    except BaseException:
        for process in running:
            process.terminate()
        for process in running:
            process.wait()
        raise
    return failed


# --- Results ---------------------------------------------------------------------


def _metrics_of(cell):
    """A run's metrics.json, its metrics' nulls (NaN written as JSON) NaN again.

    `reported` is the part for the model the run reports (`runner.reported`):
    averaged.keras where the run averages its last epochs, else best.keras.
    """
    from keras_swish.recipes.core.runner import reported

    with open(os.path.join(cell.output, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)

    def numbers(values):
        return {k: math.nan if v is None else v for k, v in values.items()}

    metrics["epochs"] = [numbers(e) for e in metrics.get("epochs") or ()]
    for model in ("best", "averaged", "last"):
        for split in ("validation", "test"):
            if (metrics.get(model) or {}).get(split) is not None:
                metrics[model][split] = numbers(metrics[model][split])
    metrics["reported"] = reported(metrics)
    return metrics


def metric_names(metrics):
    """(headline metric, second metric or None, split) that a run reports."""
    model = metrics["reported"]
    split = "test" if model.get("test") else "validation"
    prefix = "test_" if split == "test" else "val_"
    values = model[split]
    if prefix + "bleu" in values:
        return prefix + "bleu", prefix + "bleu_intl", split
    return prefix + "top1", prefix + "top5", split


def _selection_metric(metrics):
    """The validation number a learning rate is chosen by."""
    values = metrics["reported"]["validation"]
    return values.get("val_bleu", values.get("val_top1"))


def _rate_rank(runs):
    """(finished runs, median validation metric; NaN lowest) of one rate's runs."""
    median = stats.summary([_selection_metric(m) for _, m in runs])["median"]
    return (len(runs), -math.inf if median is None or math.isnan(median) else median)


def collect(cells, baseline):
    """The results of every finished cell: tables per experiment, as plain data."""
    results = {"experiments": {}, "baseline": baseline}
    by_experiment = {}
    for cell in cells:
        if is_done(cell):
            by_experiment.setdefault(cell.experiment, []).append((cell, _metrics_of(cell)))
    for experiment, runs in by_experiment.items():
        head, second, split = metric_names(runs[0][1])
        activations = {}
        for cell, metrics in runs:
            entry = activations.setdefault(cell.activation, {"rates": {}})
            rate = entry["rates"].setdefault(str(cell.learning_rate), [])
            rate.append((cell, metrics))
        table = {}
        for activation, entry in activations.items():
            # The learning rate with the best median validation metric (paper: ImageNet),
            # among the rates with the most finished seeds: a rate whose other runs
            # failed is not chosen on the strength of its one lucky run.
            rates = entry["rates"]
            chosen = max(rates, key=lambda r: _rate_rank(rates[r]))
            chosen_runs = sorted(rates[chosen], key=lambda cm: cm[0].seed)
            planned = {
                c.seed
                for c in cells
                if (c.experiment, c.activation, str(c.learning_rate))
                == (experiment, activation, chosen)
            }
            row = {
                "learning_rate": None if chosen == "None" else float(chosen),
                "learning_rate_key": chosen_runs[0][0].learning_rate_key,
                "learning_rates_tried": [None if r == "None" else float(r) for r in rates],
                "seeds": [c.seed for c, _ in chosen_runs],
                # Planned, not finished (failed, or still to run): the row is without them.
                "seeds_missing": sorted(planned - {c.seed for c, _ in chosen_runs}),
                "runs": [c.output for c, _ in chosen_runs],
                head: stats.summary([m["reported"][split][head] for _, m in chosen_runs]),
            }
            if second and all(second in m["reported"][split] for _, m in chosen_runs):
                row[second] = stats.summary([m["reported"][split][second] for _, m in chosen_runs])
            row["by_seed"] = {c.seed: m["reported"][split][head] for c, m in chosen_runs}
            row["curves"] = [
                [e.get("val_" + head.split("_", 1)[1], e.get("val_accuracy")) for e in m["epochs"]]
                for _, m in chosen_runs
            ]
            table[activation] = row
        if baseline in table:
            for activation, row in table.items():
                if activation != baseline:
                    row["vs_baseline"] = stats.paired(row["by_seed"], table[baseline]["by_seed"])
        results["experiments"][experiment] = {
            "metric": head,
            "second_metric": second,
            "split": split,
            "model": " / ".join(sorted({m["reported"].get("model", "?") for _, m in runs})),
            "activations": table,
            "paper": paper_numbers(experiment),
            "paper_metric": PAPER_METRIC.get(experiment),
        }
    if len(results["experiments"]) > 1:
        results["table3"] = table3(results)
    return results


TABLE3_SUBJECT = "swish_beta"  # the paper's "Swish": trainable β


def table3(results):
    """The paper's Table 3: for each other activation (a "baseline" there), in how
    many experiments the median of Swish (`swish_beta`) is above, equal to or
    below its median, compared as the tables print them (0.1 %, or 0.1 BLEU), as
    the paper counts equal printed numbers as equivalent. Empty without
    `swish_beta` among the activations."""
    counts = {}
    for experiment in results["experiments"].values():
        rows, metric = experiment["activations"], experiment["metric"]
        if TABLE3_SUBJECT not in rows:
            continue

        def printed(row, metric=metric):
            # A diverged run (NaN) ranks below every number: one of 5 seeds
            # lowers the median as the worst run would, not to NaN.
            runs = [-math.inf if math.isnan(v) else v for v in row[metric]["runs"]]
            median = statistics.median(runs) if runs else -math.inf
            return median if math.isinf(median) else round(median * _scale(metric), 1)

        subject = printed(rows[TABLE3_SUBJECT])
        for activation, row in rows.items():
            if activation == TABLE3_SUBJECT:
                continue
            other = printed(row)
            c = counts.setdefault(activation, {"better": 0, "equal": 0, "worse": 0})
            c["better" if subject > other else "equal" if subject == other else "worse"] += 1
    return counts


def _scale(metric):
    return 1.0 if "bleu" in metric else 100.0  # accuracies as %, like the paper


def results_markdown(results):
    lines = ["# Comparison", ""]
    for experiment, table in results["experiments"].items():
        head, second = table["metric"], table["second_metric"]
        scale = _scale(head)
        unit = "BLEU" if scale == 1 else "%"
        lines += [f"## {experiment}", ""]
        lines.append(
            f"{head} ({unit}, {table.get('model', 'best.keras')} of each run, "
            f"{table['split']} split): median, "
            "mean ± std, every run (by seed)."
        )
        if table["split"] == "validation":
            chose = []
            if "best.keras" in table.get("model", "best.keras"):
                chose.append("each run's best epoch")
            if any(len(r["learning_rates_tried"]) > 1 for r in table["activations"].values()):
                chose.append("each activation's learning rate")
            if chose:
                lines.append(
                    "The data has no labelled test split: the validation split also chose "
                    + " and ".join(chose)
                    + ", so these numbers lean high (as the paper's ImageNet numbers do)."
                )
        if results["baseline"] in table["activations"]:
            lines.append(
                f"Δ vs {results['baseline']}: mean paired difference over the seeds both "
                "finished, with its Student-t 95 % interval (none from one seed), and the "
                "sign test's two-sided p-value (never below 2^(1−n) with n seeds: 0.25 at "
                "3, 0.0625 at 5)."
            )
        lines.append("")
        paper = table["paper"]
        header = ["activation", "median", "mean ± std", "runs"]
        if second:
            header.append(f"{second} median")
        header += [f"Δ vs {results['baseline']} [95 % CI]", "p"]
        if paper:
            header.append(f"paper ({table['paper_metric']})")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for activation, row in table["activations"].items():
            s = row[head]
            missing = row.get("seeds_missing")
            cells = [
                activation + _rate_label(row),
                f"{s['median'] * scale:.2f}",
                f"{s['mean'] * scale:.2f} ± "
                + ("—" if s["std"] is None else f"{s['std'] * scale:.2f}"),
                " ".join(f"{v * scale:.2f}" for v in s["runs"])
                + (f" (seed {', '.join(map(str, missing))} not finished)" if missing else ""),
            ]
            if second:
                cells.append(f"{row[second]['median'] * scale:.2f}" if second in row else "")
            vs = row.get("vs_baseline")
            if vs and vs["mean_difference"] is not None:
                low, high = vs["ci95"]
                diff = vs["mean_difference"] * scale
                interval = "" if low is None else f" [{low * scale:+.2f}, {high * scale:+.2f}]"
                if low is not None and high - low <= 1e-9 * max(1.0, abs(vs["mean_difference"])):
                    # No spread (to float rounding): no width, and not a certainty.
                    interval += " (the same difference at every seed)"
                left_out = vs.get("not_finite")
                note = f" ({len(left_out)} diverged seed(s) left out)" if left_out else ""
                both = vs["seeds"] + (left_out or [])
                if len(both) < len(row["seeds"]):  # the baseline lacks some of this row's
                    note += f" (seed {', '.join(map(str, sorted(both)))} only)"
                cells += [
                    f"{diff:+.2f}{interval}{note}",
                    f"{vs['sign_test_p']:.3g}",
                ]
            else:
                cells += ["", ""]
            if paper:
                cells.append(f"{paper[activation]:.1f} (paper)" if activation in paper else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("table3"):
        lines += [
            f"## Swish ({TABLE3_SUBJECT}) against each activation over every experiment "
            "(the paper's Table 3)",
            "",
            "Experiments where Swish's median is above, equal to or below the "
            "activation's, both rounded to 0.1 % (or 0.1 BLEU) as the paper prints its "
            "tables (the tables above print two decimals); a diverged run counts as the "
            "lowest value.",
            "",
            "| baseline | Swish > baseline | Swish = baseline | Swish < baseline |",
            "|---|---|---|---|",
        ]
        for activation, c in results["table3"].items():
            lines.append(f"| {activation} | {c['better']} | {c['equal']} | {c['worse']} |")
        lines.append("")
    return "\n".join(lines)


def _rate_label(row):
    """` (lr 0.008)`, ` (scale 2)` for the Transformer's multiple of its schedule, or ``."""
    if not row["learning_rate"]:
        return ""
    key = row.get("learning_rate_key", "optimizer.learning_rate")
    name = "lr" if key == "optimizer.learning_rate" else key.rsplit(".", 1)[-1]
    return f" ({name} {row['learning_rate']:g})"


def results_csv(results):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["experiment", "activation", "learning_rate", "seed", "metric", "value", "run"])
    for experiment, table in results["experiments"].items():
        for activation, row in table["activations"].items():
            for seed, run, value in zip(
                row["seeds"], row["runs"], row[table["metric"]]["runs"], strict=True
            ):
                writer.writerow(
                    [
                        experiment,
                        activation,
                        row["learning_rate"],
                        seed,
                        table["metric"],
                        value,
                        run,
                    ]
                )
    return out.getvalue()


def write_results(results, output):
    from keras_swish.recipes.core.config import write_atomic

    os.makedirs(output, exist_ok=True)
    write_atomic(os.path.join(output, "results.json"), json_text(results, indent=2))
    write_atomic(os.path.join(output, "results.csv"), results_csv(results))
    write_atomic(os.path.join(output, "results.md"), results_markdown(results))


def compare(
    experiments,
    activations,
    seeds,
    output,
    learning_rates=(None,),
    baseline="relu",
    parallel=1,
    train_flags=None,
    train_args=(),
    overrides=None,
    config_file=None,
    stream=sys.stdout,
):
    """Runs (or finishes) a comparison and writes its results; returns them.

    Args:
        experiments: Experiment or recipe names.
        activations: Activation names.
        seeds: Seeds per setting (0 … seeds − 1).
        output: The comparison's folder.
        learning_rates: Rates to try per activation, or `(None,)` for the experiment's own.
        baseline: The activation the others are compared with.
        parallel: Runs at a time.
        train_flags: {flag: value} of `keras-swish train` flags (to check the plan).
        train_args: The same, as command-line arguments for the runs.
        overrides: `--set` overrides (nested dict) for every run.
        config_file: A `--config` YAML file for every run.
    """
    from keras_swish.recipes.compare import plots

    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1. Received: --parallel {parallel}")
    if baseline not in activations:
        raise UsageError(
            f"--baseline {baseline} is not among --activations {','.join(activations)}."
        )
    cells = plan(
        experiments,
        activations,
        seeds,
        learning_rates,
        output,
        train_flags or {},
        overrides,
        config_file,
    )
    failed = execute(cells, list(train_args), parallel=parallel, stream=stream)
    results = collect(cells, baseline)
    results["failed"] = [c.key for c in failed]
    write_results(results, output)
    plots.write_plots(results, output)
    plots.write_hparams(cells, results, output)
    return results
