"""`keras-swish train / evaluate / recipes`, end to end and on bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_swish.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "mobilnet"], "Unknown recipe 'mobilnet'. Recipes: "),
        (["train", "mobilenet", "--activation", "swish_bta"], "Unknown activation 'swish_bta'"),
        (["train", "mobilenet", "--strategy", "gpus"], "'train.strategy' must be one of"),
        (["train", "mobilenet", "--precision", "fp16"], "'train.precision' must be one of"),
        (
            ["train", "mobilenet", "--set", "optimizer.nope=1"],
            "Unknown config key 'optimizer.nope'",
        ),
        (["train", "mobilenet", "--data", "imagenet"], "Cannot read --data 'imagenet'"),
        (["train", "mobilenet", "--data", "folder:/no/such/dir"], "is not a directory"),
        (["train", "mobilenet", "--epochs", "0"], "'train.epochs' must be at least 1"),
        (["evaluate", "/no/such/run"], "is not a run folder"),
        (["train", "mobilenet", "--strategy", "multi_worker"], "keras-team/keras#20585"),
    ],
)
def test_bad_input_exits_2_with_one_message(args, message, tmp_path, capsys):
    output = tmp_path / "run"
    if args[0] == "train":
        args = [*args, "--output", str(output)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not output.exists(), "nothing may be written on bad input"


def test_tfds_data_that_is_not_prepared(tmp_path, capsys):
    args = [
        "train",
        "mobilenet",
        "--data",
        "tfds:imagenet2012",
        "--data-dir",
        str(tmp_path),
        "--output",
        str(tmp_path / "run"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not prepared" in err and "--manual_dir" in err
    assert not (tmp_path / "run").exists()


def test_output_dir_of_a_different_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("recipe: mobilenet\nmodel:\n  activation: relu\n")
    before = sorted(os.listdir(run))
    assert main(["train", "mobilenet", "--output", str(run)]) == 2
    err = capsys.readouterr().err
    assert "holds a different run" in err and "model.activation" in err
    assert sorted(os.listdir(run)) == before


def test_subprocess_bad_input_has_no_traceback():
    result = cli("train", "mobilenet", "--activation", "nope", timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "keras-swish train: error: Unknown activation 'nope'" in result.stderr


def test_recipes_lists_defaults_and_presets(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "\nmobilenet: MobileNet v1" in out
    assert "learning_rate=0.008" in out and "preset 'embedded'" in out


def _wait_for_epochs(path, count, process, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        try:
            with open(path) as f:
                if len(json.load(f)["epochs"]) >= count:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no {count} epoch(s) in {path} after {timeout} s")


def test_train_killed_then_resumed_learns_and_writes_every_output(tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "mobilenet",
        "--epochs",
        "4",
        "--steps-per-epoch",
        "30",
        "--output",
        str(run),
        "--verbose",
        "2",
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "keras_swish.recipes", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_epochs(run / "metrics.json", 1, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run / "backup").is_dir()
    assert json.loads((run / "metrics.json").read_text())["completed"] is False

    second = cli(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Epoch 2/4" in second.stdout and "Epoch 1/4" not in second.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert [s["started_at_epoch"] for s in metrics["sessions"]] == [1, 2]
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert metrics["completed"] is True
    assert metrics["final"]["top1"] > 0.3, metrics["final"]  # chance: 0.1
    for key in ("top5", "loss"):
        assert key in metrics["final"] and key in metrics["epochs"][-1]
    for key in ("wall_time_s", "examples_per_s", "val_top1"):
        assert key in metrics["epochs"][-1]
    assert (metrics["strategy"], metrics["replicas"], metrics["precision"]) == (
        "default",
        1,
        "float32",
    )
    assert {"keras", "tensorflow", "keras_swish", "python"} <= set(metrics["versions"])
    for name in ("config.yaml", "best.keras", "final.keras"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    for folder in ("train", "validation", "beta"):
        assert os.listdir(run / "logs" / folder), folder
    assert f"TensorBoard logs: {run / 'logs'}" in second.stdout

    # Re-running a finished run changes nothing; evaluate reads it back.
    again = cli(*args)
    assert again.returncode == 0 and "already complete" in again.stdout
    evaluated = cli("evaluate", str(run))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)["top1"] > 0.3


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    run = tmp_path / "mirrored"
    result = cli(
        "train",
        "mobilenet",
        "--strategy",
        "mirrored",
        "--set",
        "train.cpu_devices=2",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "4",
        "--output",
        str(run),
        "--verbose",
        "0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "Strategy: mirrored (MirroredStrategy), 2 replica(s), global batch 64 (32 per replica)"
        in result.stdout
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"], metrics["completed"]) == ("mirrored", 2, True)
