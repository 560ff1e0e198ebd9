"""`keras-swish compare`: statistics, tables from runs, a real comparison, kills, bad input."""

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_swish.cli import main
from keras_swish.recipes.compare import (
    Cell,
    collect,
    is_done,
    plan,
    results_markdown,
    stats,
    write_results,
)
from keras_swish.recipes.core import runner
from tests.recipes.run_checks import ROOT, alive, strict_json

# --- statistics ----------------------------------------------------------------


def test_summary_is_numpys():
    values = [0.91, 0.93, 0.92, 0.95]
    s = stats.summary(values)
    assert s["median"] == pytest.approx(np.median(values))
    assert s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert s["runs"] == values and s["n"] == 4


def test_sign_test_exact_values():
    assert stats.sign_test([0.1] * 5) == pytest.approx(2 / 32)  # 5 of 5 better
    assert stats.sign_test([0.1, -0.1]) == 1.0
    assert stats.sign_test([0.2, 0.1, 0.3, -0.1, 0.0]) == pytest.approx(
        2 * (math.comb(4, 0) + math.comb(4, 1)) / 16
    )
    assert stats.sign_test([0.0, 0.0]) == 1.0
    # A diverged seed's NaN difference is no sign: 4 of 4 better, not 4 of 5.
    assert stats.sign_test([0.1] * 4 + [math.nan]) == pytest.approx(2 / 16)


def test_paired_differences_leave_out_a_diverged_seed_and_its_sign_counts_it_worse():
    values = {0: 0.9, 1: 0.8, 2: math.nan, 3: 0.7, 5: math.nan}
    baseline = {0: 0.8, 1: 0.7, 2: 0.6, 3: 0.8, 4: 0.5, 5: math.nan}
    p = stats.paired(values, baseline)
    assert p["seeds"] == [0, 1, 3] and p["not_finite"] == [2, 5]
    assert p["differences"] == pytest.approx([0.1, 0.1, -0.1])
    assert p["mean_difference"] == pytest.approx(0.1 / 3)
    assert None not in p["ci95"]
    # Seed 2 diverged where the baseline did not: worse. Seed 5: both, equal.
    assert (p["better"], p["equal"], p["worse"]) == (2, 1, 2)
    assert p["sign_test_p"] == 1.0  # 2 better, 2 worse


def test_t_quantiles_match_the_tables():
    # Student's t, two-sided 95 %: the printed tables' values for 1-5, 10 and 29 degrees.
    for df, table in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228)):
        assert stats.t_quantile(0.95, df) == pytest.approx(table, abs=5e-4), df
    assert stats.t_quantile(0.95, 29) == pytest.approx(2.045, abs=5e-4)
    assert stats.t_quantile(0.99, 4) == pytest.approx(4.604, abs=5e-4)
    assert stats.t_within(stats.t_quantile(0.9, 7), 7) == pytest.approx(0.9, abs=1e-12)


def test_t_interval_is_the_textbook_one_and_covers_95_percent_at_few_seeds():
    d = [0.01, 0.02, -0.005, 0.015, 0.03]
    low, high = stats.t_interval(d)
    half = 2.7764451051977934 * np.std(d, ddof=1) / np.sqrt(5)
    assert (low, high) == pytest.approx((np.mean(d) - half, np.mean(d) + half), abs=1e-12)
    assert stats.t_interval([0.5]) == (None, None)  # one seed: no interval
    # Normal differences at 2, 3 and 5 seeds: ~95 % of intervals hold the true mean
    # (a percentile bootstrap holds it ~50, 75 and 85 % of the time).
    rng = np.random.default_rng(0)
    for n in (2, 3, 5):
        samples = rng.normal(0.3, 1.0, size=(4000, n))
        hits = [lo <= 0.3 <= hi for lo, hi in map(stats.t_interval, samples)]
        assert 0.94 <= np.mean(hits) <= 0.96, (n, np.mean(hits))


# --- tables from run folders -------------------------------------------------------


def _fake_run(folder, val, test, epochs=3):
    os.makedirs(folder, exist_ok=True)
    metrics = {
        "completed": True,
        "epochs": [{"epoch": e + 1, "val_top1": val * (e + 1) / epochs} for e in range(epochs)],
        "best": {
            "model": "best.keras",
            "validation": {"val_top1": val, "val_top5": 1.0},
            "test": {"test_top1": test, "test_top5": 1.0},
        },
    }
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def test_tables_pick_the_learning_rate_on_validation_and_pair_by_seed(tmp_path):
    cells = []
    # relu: one rate. swish: 0.1 is better on validation (but worse on test) than 0.2.
    for seed, (val, test) in enumerate([(0.80, 0.79), (0.82, 0.80), (0.81, 0.78)]):
        cell = Cell("preact_resnet164/cifar10", "relu", seed, None, str(tmp_path / f"relu{seed}"))
        _fake_run(cell.output, val, test)
        cells.append(cell)
    for lr, rows in ((0.1, [(0.85, 0.81), (0.86, 0.83), (0.84, 0.82)]), (0.2, [(0.70, 0.90)] * 3)):
        for seed, (val, test) in enumerate(rows):
            folder = str(tmp_path / f"swish{lr}-{seed}")
            cell = Cell("preact_resnet164/cifar10", "swish_beta", seed, lr, folder)
            _fake_run(cell.output, val, test)
            cells.append(cell)
    results = collect(cells, "relu")
    table = results["experiments"]["preact_resnet164/cifar10"]
    assert table["metric"] == "test_top1" and table["split"] == "test"
    swish = table["activations"]["swish_beta"]
    assert swish["learning_rate"] == 0.1 and sorted(swish["learning_rates_tried"]) == [0.1, 0.2]
    assert swish["test_top1"]["median"] == pytest.approx(0.82)
    vs = swish["vs_baseline"]
    assert vs["differences"] == pytest.approx([0.02, 0.03, 0.04])
    assert vs["better"] == 3 and vs["sign_test_p"] == pytest.approx(0.25)
    write_results(results, str(tmp_path / "out"))
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| swish_beta (lr 0.1) | 82.00 |" in md and "94.5 (paper)" in md and "93.8 (paper)" in md
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert len(rows) == 6 and {r["activation"] for r in rows} == {"relu", "swish_beta"}


def test_runs_that_average_their_checkpoints_are_compared_on_the_average(tmp_path):
    # Transformer runs report averaged.keras (Vaswani's checkpoint averaging):
    # the table, the rate choice and the paired signs use its numbers, not best.keras's.
    cells = []
    for activation, rows in (("relu", [(20.0, 19.0), (21.0, 20.0)]), ("swish", [(22.0, 18.0)] * 2)):
        for seed, (averaged_bleu, best_bleu) in enumerate(rows):
            cell = Cell(
                "transformer_nmt/wmt14",
                activation,
                seed,
                None,
                str(tmp_path / f"{activation}{seed}"),
            )
            os.makedirs(cell.output)
            metrics = {
                "completed": True,
                "epochs": [{"epoch": 1, "val_accuracy": 0.5}],
                "best": {
                    "model": "best.keras",
                    "validation": {"val_bleu": best_bleu, "val_bleu_intl": best_bleu},
                    "test": {"test_bleu": best_bleu, "test_bleu_intl": best_bleu},
                },
                "averaged": {
                    "model": "averaged.keras",
                    "epochs": [1],
                    "validation": {"val_bleu": averaged_bleu, "val_bleu_intl": averaged_bleu},
                    "test": {"test_bleu": averaged_bleu, "test_bleu_intl": None},
                },
            }
            with open(os.path.join(cell.output, "metrics.json"), "w") as f:
                json.dump(metrics, f)
            cells.append(cell)
    table = collect(cells, "relu")["experiments"]["transformer_nmt/wmt14"]
    assert table["metric"] == "test_bleu" and table["model"] == "averaged.keras"
    swish = table["activations"]["swish"]
    assert swish["by_seed"] == {0: 22.0, 1: 22.0}
    assert math.isnan(swish["test_bleu_intl"]["median"])  # null in JSON: NaN again
    assert swish["vs_baseline"]["better"] == 2
    write_results(collect(cells, "relu"), str(tmp_path / "out"))
    assert "averaged.keras of each run" in (tmp_path / "out" / "results.md").read_text()


def test_a_diverged_run_as_metrics_json_writes_it_is_a_nan_row(tmp_path):
    # metrics.json is standard JSON: a NaN is written null. compare reads it
    # back as NaN (the run counts, its median is NaN), and results.json is
    # standard JSON too.
    cells = []
    for seed, test in enumerate([0.8, None]):
        cell = Cell("preact_resnet164/cifar10", "relu", seed, None, str(tmp_path / f"r{seed}"))
        _fake_run(cell.output, 0.8, test)
        cells.append(cell)
    table = collect(cells, "relu")["experiments"]["preact_resnet164/cifar10"]
    row = table["activations"]["relu"]["test_top1"]
    assert row["n"] == 2 and math.isnan(row["runs"][1]) and math.isnan(row["median"])
    write_results(collect(cells, "relu"), str(tmp_path / "out"))
    text = (tmp_path / "out" / "results.json").read_text()
    strict_json(text)  # no bare NaN
    assert "null" in text


def test_table3_counts_experiments_where_swish_beats_each_baseline(tmp_path):
    cells = []
    # Swish's median against relu: above in a, equal as printed (80.0 %) in b, below in c.
    for experiment, swish in (("a/x", 0.9), ("b/x", 0.80004), ("c/x", 0.7)):
        for activation, value in (("relu", 0.8), ("gelu", 0.85), ("swish_beta", swish)):
            folder = str(tmp_path / experiment.replace("/", "-") / activation)
            _fake_run(folder, value, value)
            cells.append(Cell(experiment, activation, 0, None, folder))
    results = collect(cells, "relu")
    assert results["table3"] == {
        "relu": {"better": 1, "equal": 1, "worse": 1},
        "gelu": {"better": 1, "equal": 0, "worse": 2},
    }
    md = results_markdown(results)
    assert "(the paper's Table 3)" in md and "| relu | 1 | 1 | 1 |" in md
    # A diverged run (NaN) is the lowest value: relu's 2 of 3 seeds diverged in d
    # (median below every number); one of Swish's 3 in e only lowers its median.
    nan_cells = []
    runs = {
        "d/x": {"relu": [None, None, 0.9], "gelu": [0.85] * 3, "swish_beta": [0.8] * 3},
        "e/x": {"relu": [0.7] * 3, "gelu": [0.8] * 3, "swish_beta": [None, 0.75, 0.9]},
    }
    for experiment, by_activation in runs.items():
        for activation, tests in by_activation.items():
            for seed, test in enumerate(tests):
                folder = str(tmp_path / experiment.replace("/", "-") / activation / str(seed))
                _fake_run(folder, 0.8, test)
                nan_cells.append(Cell(experiment, activation, seed, None, folder))
    assert collect(cells + nan_cells, "relu")["table3"] == {
        "relu": {"better": 3, "equal": 1, "worse": 1},  # e: Swish's median 0.75 > 0.7
        "gelu": {"better": 1, "equal": 0, "worse": 4},  # e: 0.75 < 0.8
    }
    # Without swish_beta there is nothing to count.
    assert collect([c for c in cells if c.activation != "swish_beta"], "relu")["table3"] == {}


def test_a_rate_with_failed_runs_is_not_chosen_for_its_one_lucky_run(tmp_path):
    cells = []
    for seed in range(3):  # lr 0.1: every seed finished, 0.80 on validation
        folder = str(tmp_path / f"a{seed}")
        _fake_run(folder, 0.80, 0.80)
        cells.append(Cell("a/x", "relu", seed, 0.1, folder))
    for seed in range(3):  # lr 0.4: two seeds failed (no metrics.json), one at 0.81
        folder = str(tmp_path / f"b{seed}")
        if seed == 0:
            _fake_run(folder, 0.81, 0.81)
        cells.append(Cell("a/x", "relu", seed, 0.4, folder))
    row = collect(cells, "relu")["experiments"]["a/x"]["activations"]["relu"]
    assert row["learning_rate"] == 0.1 and row["test_top1"]["n"] == 3


def test_a_table_says_which_seeds_it_is_without(tmp_path):
    # relu finished seeds 0-4, swish_beta 0-2 (3 and 4 failed or still to run): the
    # rows' means are over other seeds than Δ, which pairs seeds 0-2 only.
    cells = []
    for activation, values in (
        ("relu", [0.92, 0.93, 0.94, 0.80, 0.81]),
        ("swish_beta", [0.93] * 5),
    ):
        for seed, value in enumerate(values):
            folder = str(tmp_path / f"{activation}{seed}")
            if activation == "relu" or seed < 3:
                _fake_run(folder, value, value)
            cells.append(Cell("a/x", activation, seed, None, folder))
    results = collect(cells, "relu")
    rows = results["experiments"]["a/x"]["activations"]
    assert rows["relu"]["seeds_missing"] == [] and rows["swish_beta"]["seeds_missing"] == [3, 4]
    assert rows["swish_beta"]["vs_baseline"]["seeds"] == [0, 1, 2]
    md = results_markdown(results)
    assert "| 93.00 93.00 93.00 (seed 3, 4 not finished) |" in md, md
    line = next(x for x in md.splitlines() if x.startswith("| swish_beta"))
    assert "+0.00 [+0.00, +0.00]" not in line and "[" in line  # differences 1, 0, -1
    assert "(seed 0, 1, 2 only)" not in line  # Δ is over all of swish_beta's seeds
    assert "never below 2^(1−n) with n seeds" in md
    # Every seed the same difference: the t interval has no width, and says why.
    same = {0: 0.9, 1: 0.9, 2: 0.9}
    rows["swish_beta"]["vs_baseline"] = stats.paired(same, {0: 0.898, 1: 0.898, 2: 0.898})
    line = next(x for x in results_markdown(results).splitlines() if x.startswith("| swish_beta"))
    assert "+0.20 [+0.20, +0.20] (the same difference at every seed)" in line, line
    # Equal differences up to float rounding (a spread of ~1e-16) too.
    base = {0: 0.1, 1: 0.2, 2: 0.3}
    vs = stats.paired({k: v + 0.02 for k, v in base.items()}, base)
    assert vs["ci95"][0] != vs["ci95"][1]  # 0.020000000000000004, 0.01999999999999999, ...
    rows["swish_beta"]["vs_baseline"] = vs
    line = next(x for x in results_markdown(results).splitlines() if x.startswith("| swish_beta"))
    assert "(the same difference at every seed)" in line, line
    # The other way round: relu lacks seeds swish_beta has.
    results = collect([c for c in cells if not (c.activation == "relu" and c.seed == 2)], "relu")
    md = results_markdown(results)
    line = next(x for x in md.splitlines() if x.startswith("| swish_beta"))
    assert "(seed 0, 1 only)" in line, line


def test_one_seed_has_no_spread_and_a_validation_table_says_what_chose_it(tmp_path):
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:  # no test split (ImageNet)
        best = {"model": "best.keras", "validation": {"val_top1": 0.7}}
        json.dump({"completed": True, "epochs": [], "best": best}, f)
    results = collect([Cell("a/x", "relu", 0, None, folder)], "relu")
    row = results["experiments"]["a/x"]["activations"]["relu"]["val_top1"]
    assert row["std"] is None
    md = results_markdown(results)
    assert "| relu | 70.00 | 70.00 ± — | 70.00 |" in md, md
    assert "the validation split also chose each run's best epoch, so" in md
    # An averaged model chose no epoch: with one rate, nothing was chosen on validation.
    results["experiments"]["a/x"]["model"] = "averaged.keras"
    assert "also chose" not in results_markdown(results)


def test_the_transformers_rate_is_labelled_as_the_multiple_of_its_schedule(tmp_path):
    from keras_swish.recipes.compare import _rate_label

    row = {"learning_rate": 2.0, "learning_rate_key": "optimizer.scale"}
    assert _rate_label(row) == " (scale 2)"
    assert _rate_label(dict(row, learning_rate_key="optimizer.learning_rate")) == " (lr 2)"
    assert _rate_label(dict(row, learning_rate=None)) == ""


# --- a real comparison ---------------------------------------------------------------

ARGS = [
    "compare",
    "mobilenet",
    "--activations",
    "relu,swish_beta",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "3",
]


def _compare(output, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "keras_swish_cli", *ARGS, "--output", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1200,
        **kwargs,
    )


def _runs(output):
    return sorted(
        os.path.join(root) for root, _, files in os.walk(output) if "metrics.json" in files
    )


def _assert_every_file_and_its_numbers_come_from_the_runs(output):
    """A finished comparison: its files, numbers from the runs' metrics, and a
    re-run that trains nothing."""
    for name in (
        "results.md",
        "results.csv",
        "results.json",
        "final_metric.png",
        "validation_curves.png",
        "betas.png",
    ):
        assert (output / name).stat().st_size > 0, name
    assert os.listdir(output / "hparams")
    results = json.loads((output / "results.json").read_text())
    table = results["experiments"]["mobilenet/embedded"]["activations"]
    by_run = {}
    for run in _runs(output):
        metrics = json.loads(open(os.path.join(run, "metrics.json")).read())
        activation, seed = run.split(os.sep)[-2], int(run.split(os.sep)[-1][4:])
        by_run[(activation, seed)] = metrics["best"]["test"]["test_top1"]
    assert len(by_run) == 4
    for activation in ("relu", "swish_beta"):
        values = [by_run[(activation, s)] for s in (0, 1)]
        assert table[activation]["test_top1"]["median"] == pytest.approx(np.median(values))
        assert table[activation]["test_top1"]["runs"] == pytest.approx(values)
    differences = [by_run[("swish_beta", s)] - by_run[("relu", s)] for s in (0, 1)]
    vs = table["swish_beta"]["vs_baseline"]
    assert vs["differences"] == pytest.approx(differences)
    assert vs["ci95"] == pytest.approx(list(stats.t_interval(differences)))
    # A re-run trains nothing.
    stamps = {run: os.path.getmtime(os.path.join(run, "metrics.json")) for run in _runs(output)}
    again = _compare(output)
    assert again.returncode == 0 and "4 already done, 0 to run" in again.stdout
    assert stamps == {r: os.path.getmtime(os.path.join(r, "metrics.json")) for r in _runs(output)}


def _completed(folder):
    try:
        return json.load(open(os.path.join(folder, "metrics.json"))).get("completed", False)
    except FileNotFoundError:
        return False


def _lock_holders(output):
    """{pid: run folder} of the live processes in the run locks (`.lock`) of runs
    not finished yet."""
    holders = {}
    for root, _, files in os.walk(output):
        if ".lock" in files and not _completed(root):
            text = open(os.path.join(root, ".lock")).read().strip()
            if text and alive(int(text)):
                holders[int(text)] = root
    return holders


@pytest.mark.slow
def test_kill_9_mid_comparison_then_the_same_command_finishes_it(tmp_path):
    # One real comparison serves both checks (killed and finished; then its files
    # and numbers): each comparison trains four MobileNets in processes of their own.
    output = tmp_path / "cmp"
    log = tmp_path / "first.log"
    with open(log, "w") as stdout:
        first = subprocess.Popen(
            [sys.executable, "-m", "keras_swish_cli", *ARGS, "--output", str(output)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),  # its lines reach the log before -9
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a session of its own, as when started from a shell
        )
    try:
        deadline = time.monotonic() + 600
        while not any(
            json.loads(open(os.path.join(r, "metrics.json")).read()).get("completed")
            for r in _runs(output)
        ):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        while not _lock_holders(output):  # the next run has started and holds its folder
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        # The comparison alone (as the OOM killer would): its running child must not
        # live on as an orphan that keeps writing its run folder.
        running = _lock_holders(output)
        first.kill()
        first.wait()
    assert running, "no run was training when the comparison was killed"
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in running):
        assert time.monotonic() < deadline, f"orphaned runs still alive: {running}"
        time.sleep(0.2)
    # Stopped, not left to finish on its own (it had its model, 3 steps and the final
    # evaluation still to do when the comparison died).
    assert not any(_completed(folder) for folder in running.values())
    finished = {
        r: os.path.getmtime(os.path.join(r, "metrics.json"))
        for r in _runs(output)
        if json.loads(open(os.path.join(r, "metrics.json")).read()).get("completed")
    }
    assert 1 <= len(finished) < 4
    again = _compare(output)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(finished)} already done, {4 - len(finished)} to run" in again.stdout
    for run, stamp in finished.items():  # nothing finished ran again
        assert os.path.getmtime(os.path.join(run, "metrics.json")) == stamp
    results = json.loads((output / "results.json").read_text())
    rows = results["experiments"]["mobilenet/embedded"]["activations"]
    assert all(rows[a]["test_top1"]["n"] == 2 for a in ("relu", "swish_beta"))
    assert "compare: 4 runs, 0 already done, 4 to run" in log.read_text()
    _assert_every_file_and_its_numbers_come_from_the_runs(output)


def _finished_run(experiment, flags, epochs_trained):
    """A run folder as `train` leaves it after `epochs_trained` epochs (config, metrics, state)."""
    _, resolved, config = runner.resolve(experiment, flags=flags)
    os.makedirs(os.path.join(config.train.output, "state"))
    with open(os.path.join(config.train.output, "config.yaml"), "w") as f:
        f.write(runner.config_text(resolved, config))
    history = [{"epoch": e + 1, "val_top1": 0.5} for e in range(epochs_trained)]
    with open(os.path.join(config.train.output, "metrics.json"), "w") as f:
        json.dump({"completed": True, "epochs": history}, f)
    state = {
        "epoch": epochs_trained,
        "checkpoint": f"epoch-{epochs_trained}.weights.h5",
        "best": None,
        "history": history,
        "sessions": [],
    }
    with open(os.path.join(config.train.output, "state", "state.json"), "w") as f:
        json.dump(state, f)


def test_finished_runs_count_only_with_the_epochs_and_settings_asked_for(tmp_path, capsys):
    output = str(tmp_path / "cmp")
    flags = {"epochs": 2, "steps_per_epoch": 3}
    (cell,) = plan(["mobilenet"], ("relu",), 1, (None,), output, flags, {})
    _finished_run("mobilenet", dict(flags, activation="relu", seed=0, output=cell.output), 2)
    assert cell.epochs == 2 and is_done(cell)
    # More epochs: the finished run is continued, not reused as it is.
    (longer,) = plan(["mobilenet"], ("relu",), 1, (None,), output, dict(flags, epochs=3), {})
    assert longer.epochs == 3 and not is_done(longer)
    assert is_done(dataclasses.replace(longer, epochs=None))  # what was checked before
    # Other settings in the same folder: refused before anything runs, as `train` does.
    args = ["compare", "mobilenet", "--activations", "relu", "--seeds", "1", "--epochs", "2"]
    before = sorted(os.walk(output))
    assert main([*args, "--steps-per-epoch", "4", "--output", output]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a different run" in err and "train.steps_per_epoch (3 → 4)" in err, err
    assert len(err.splitlines()) == 1 and sorted(os.walk(output)) == before
    # Fewer epochs than the run has: refused too.
    assert main([*args, "--epochs", "1", "--steps-per-epoch", "3", "--output", output]) == 2
    assert "would shorten it" in capsys.readouterr().err


def test_an_experiment_named_twice_is_one_set_of_runs(tmp_path):
    # `mobilenet` is `mobilenet/embedded`: its runs were planned (and counted) twice.
    cells = plan(
        ["mobilenet", "mobilenet/embedded"], ("relu", "swish"), 2, (None,), str(tmp_path), {}, {}
    )
    assert len(cells) == 4 and len({cell.output for cell in cells}) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--activations", "relu,swish_bta"], "--activations takes 'paper' or distinct names"),
        (["--activations", "relu,relu"], "--activations takes 'paper' or distinct names"),
        (  # two spellings of one formula: one run folder
            ["--activations", "relu,expr:x*sigmoid(x),expr:sigmoid(x) * x"],
            "(expr:x*sigmoid(x) and expr:sigmoid(x) * x are the same activation)",
        ),
        (["--activations", "relu", "--seeds", "0"], "--seeds must be at least 1"),
        (  # rates whose folder names (lr{:g}) are the same: one folder, two runs
            ["--activations", "relu", "--learning-rates", "0.1234567,0.1234568"],
            "at learning rate 0.1234568 would share the run folder",
        ),
        (["--activations", "gelu,swish"], "--baseline relu is not among --activations"),
        (["--activations", "relu", "--learning-rates", "0.1,x"], "--learning-rates takes"),
        (["--activations", "relu", "--parallel", "0"], "--parallel must be at least 1"),
        (["--activations", "relu", "--data", "tfds:cifar10"], "no experiment for --data"),
        (["--activations", "relu", "--set", "train.epochs=0"], "'train.epochs' must be"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(args, message, tmp_path, capsys):
    output = tmp_path / "cmp"
    assert main(["compare", "mobilenet", *args, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not output.exists()


def test_an_output_that_is_a_file_is_refused(tmp_path, capsys):
    # compare and search write folders too: one message, exit 2, not a traceback.
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for command in (
        ["compare", "mobilenet", "--activations", "relu"],
        ["search", "--unary", "x", "--binary", "mul", "--max-trials", "1"],
    ):
        assert main([*command, "--output", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert f"'--output' must be a folder: {path} is a file." in err, err
        assert len(err.splitlines()) == 1 and path.read_text() == "mine"


def test_an_output_url_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "mobilenet", "--activations", "relu", "--output", "gs://b/c"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'--output' must be a local or mounted folder" in err and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_parallel_slots_get_their_own_devices(monkeypatch):
    from keras_swish.recipes import compare

    assert compare._pinning(0, 1, gpus=["0", "1", "2", "3"]) == ({}, None)  # all of them
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    assert [compare._pinning(s, 2, gpus=["0", "1"])[0] for s in range(2)] == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    # More slots than GPUs: they share, and each takes only the memory it uses.
    grow = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert [compare._pinning(s, 3, gpus=["0", "1"])[0] for s in range(3)] == [
        {"CUDA_VISIBLE_DEVICES": "0", **grow},
        {"CUDA_VISIBLE_DEVICES": "1", **grow},
        {"CUDA_VISIBLE_DEVICES": "0", **grow},
    ]
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")  # the user's choice stays
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in compare._pinning(0, 3, gpus=["0"])[0]
    monkeypatch.setattr(compare.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4}, raising=False)
    cores = [compare._pinning(s, 2, gpus=[])[1] for s in range(2)]
    assert cores == [{0, 1}, {2, 3}]  # disjoint shares of the CPU


@pytest.mark.parametrize(
    "visible, expected",
    [
        ("4,5", ["4", "5"]),
        ("GPU-1a2b, 3", ["GPU-1a2b", "3"]),
        ("", []),
        ("-1", []),
        ("2,-1,3", ["2"]),
    ],
)
def test_parallel_slots_share_only_the_gpus_the_user_left_visible(visible, expected, monkeypatch):
    # nvidia-smi lists every GPU of the machine; a CUDA_VISIBLE_DEVICES mask is
    # the user's (or a scheduler's) choice, and the slots stay inside it.
    from keras_swish.recipes import compare

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(compare.subprocess, "run", _no_nvidia_smi)
    assert compare._gpus() == expected
    if expected:
        pinned = [compare._pinning(s, 2, expected)[0]["CUDA_VISIBLE_DEVICES"] for s in range(2)]
        assert pinned == [expected[0], expected[1 % len(expected)]]


def _no_nvidia_smi(*args, **kwargs):
    raise AssertionError("nvidia-smi must not decide when CUDA_VISIBLE_DEVICES is set")


def test_learning_rates_of_the_transformer_scale_vaswanis_rate(tmp_path):
    # Its optimizer has no learning_rate: the rate is scale · d_model^-0.5 · f(step).
    from keras_swish.recipes.compare import _command

    (cell,) = plan(["transformer_nmt"], ("relu",), 1, (2.0,), str(tmp_path), {}, {})
    assert cell.output.endswith("seed0-lr2") and cell.learning_rate_key == "optimizer.scale"
    assert _command(cell, [])[-2:] == ["--set", "optimizer.scale=2.0"]
    (image,) = plan(["mobilenet"], ("relu",), 1, (0.5,), str(tmp_path), {}, {})
    assert _command(image, [])[-2:] == ["--set", "optimizer.learning_rate=0.5"]
    assert not os.listdir(tmp_path)  # planning writes nothing
