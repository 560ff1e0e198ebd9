"""`keras-swish train / evaluate / recipes`, end to end and on bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_swish.cli import main
from keras_swish.errors import UsageError
from tests.recipes.run_checks import assert_is_the_mean_of_kept_weights, assert_loads_anywhere

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
        (["train", "mobilenet", "--data", "imagenet"], "no experiment for --data imagenet"),
        (["train", "mobilenet", "--data", "tfds:cifar10"], "no experiment for --data tfds:cifar10"),
        (
            ["train", "mobilenet/imagenet", "--data", "tfds:mnist"],
            "no settings for --data tfds:mnist",
        ),
        (["train", "transformer_nmt/text"], "needs --data text:*"),
        (["train", "mobilenet", "--set", "train.steps_per_epoch=x"], "'train.steps_per_epoch'"),
        (["train", "mobilenet", "--data", "folder:/no/such/dir"], "is not a directory"),
        # Never trained on the splits that choose the model and report the result.
        (
            ["train", "mobilenet/imagenet", "--data", "tfds:imagenet2012:validation[:50%]"],
            "trains on the validation split, which the run also uses to choose its best model",
        ),
        (
            ["train", "transformer_nmt/wmt14", "--data", "tfds:wmt14_translate/de-en:validation"],
            "trains on the validation split, which the run also uses to choose its best model",
        ),
        (["train", "mobilenet", "--epochs", "0"], "'train.epochs' must be at least 1"),
        # NumPy's seed is 32 bits: these failed after the run folder was made.
        (["train", "mobilenet", "--seed", "-1"], "'train.seed' must be in [0, 2**32)"),
        (["train", "mobilenet", "--seed", str(2**32)], "'train.seed' must be in [0, 2**32)"),
        (
            ["train", "resnet20", "--set", "optimizer.decay_at=[0.5,0.75"],
            "--set optimizer.decay_at=[0.5,0.75: the value is not valid YAML",
        ),
        (
            ["train", "mobilenet", "--set", "train.output=runs/${USER}"],
            "Cannot resolve the config: Interpolation key 'USER' not found",
        ),
        (
            [
                "train",
                "mobilenet",
                "--steps-per-epoch",
                "4",
                "--set",
                "train.steps_per_execution=3",
            ],
            "'train.steps_per_execution' must be a divisor of train.steps_per_epoch=4",
        ),
        (
            ["train", "mobilenet", "--set", "train.steps_per_execution=0"],
            "'train.steps_per_execution' must be at least 1",
        ),
        # One pass over the embedded digits: 4,000 // 64 = 62 steps (known after the data).
        (
            ["train", "mobilenet", "--set", "train.steps_per_execution=4"],
            "must divide the steps of an epoch (one pass over the data: 62;",
        ),
        (["evaluate", "/no/such/run"], "is not a run folder"),
        # TensorFlow started, the data read, then a traceback from makedirs (exit 1).
        (
            ["train", "mobilenet", "--output", __file__],
            f"'train.output' must be a folder: {__file__} is a file.",
        ),
        (
            ["train", "mobilenet", "--output", f"{__file__}/run"],
            f"'train.output' must be a folder: {__file__}/run is in {__file__}, a file.",
        ),
        (["train", "mobilenet", "--tpu", "grpc://127.0.0.1:1"], "Cannot reach TPU"),
        (["train", "mobilenet", "--tpu", "no-such-tpu.invalid"], "Cannot reach TPU"),
        (
            ["train", "mobilenet", "--tpu", "my-tpu", "--strategy", "mirrored"],
            "'train.strategy' must be auto or tpu with a TPU given",
        ),
    ],
)
def test_bad_input_exits_2_with_one_message(args, message, tmp_path, capsys):
    output = tmp_path / "runs" / "run"  # runs/ made by the run too, as the default output's
    if args[0] == "train" and "--output" not in args:
        args = [*args, "--output", str(output)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists(), "nothing may be written on bad input"


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
    (run / "config.yaml").write_text("experiment: mobilenet/embedded\nmodel:\n  activation: relu\n")
    before = sorted(os.listdir(run))
    assert main(["train", "mobilenet", "--output", str(run)]) == 2
    err = capsys.readouterr().err
    assert "holds a different run" in err and "model.activation" in err
    assert sorted(os.listdir(run)) == before


@pytest.mark.parametrize(
    "value",
    [
        "nope",
        "[1, 2]",
        '{"cluster": ["a:1"]}',
        '{"cluster": {"worker": "a:1,b:2"}}',
        '{"cluster": {"worker": [1, 2]}}',
        '{"cluster": {"worker": ["host0", "host1:2222"]}}',
        '{"cluster": {"worker": ["a:1", "a:1"]}}',
        '{"cluster": {"worker": ["a:1", "b:99999"]}}',
        '{"cluster": {"worker": ["a:1", "b:\u00b2"]}}',
    ],
)
def test_a_bad_tf_config_is_one_message(value, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", value)
    output = tmp_path / "run"
    assert main(["train", "mobilenet", "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert "TF_CONFIG must be JSON like" in err and value in err and len(err.splitlines()) == 1
    assert not output.exists()


@pytest.mark.parametrize(
    "task",
    [
        {"type": "evaluator", "index": 0},  # TensorFlow would train it alone, as a second chief
        {"type": "worker", "index": 2},
        {"type": "chief", "index": 0},  # the cluster has no chief
        {"type": "worker", "index": "1"},
        {},
    ],
)
@pytest.mark.parametrize("strategy", ["auto", "multi_worker"])
def test_a_tf_config_task_outside_its_cluster_is_one_message(
    task, strategy, tmp_path, capsys, monkeypatch
):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"], "evaluator": ["127.0.0.1:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    output = tmp_path / "run"
    assert main(["train", "mobilenet", "--strategy", strategy, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert "TF_CONFIG's task must be one of the chief or worker tasks" in err, err
    assert "(0 chief, 2 worker)" in err and json.dumps(task) in err and len(err.splitlines()) == 1
    assert not output.exists()


@pytest.mark.parametrize("strategy", ["mirrored", "default", "one_device"])
def test_several_workers_need_the_multi_worker_strategy(strategy, tmp_path, capsys, monkeypatch):
    # Each machine would train alone, all as chiefs of one shared folder.
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker"}}))
    output = tmp_path / "run"
    assert main(["train", "mobilenet", "--strategy", strategy, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert "TF_CONFIG names 2 workers, which train together only with --strategy" in err
    assert f"Received: --strategy {strategy}" in err and len(err.splitlines()) == 1
    assert not output.exists()


def test_every_help_text_prints_as_written():
    # argparse %-formats a description only when it holds %(prog): "%%" stayed.
    import argparse

    from keras_swish.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = [parser.format_help()] + [p.format_help() for p in subparsers.choices.values()]
    assert len(helps) > 5
    for text in helps:
        assert "%%" not in text and "%(" not in text, text
    assert "0/25/50/75/100 % of training" in subparsers.choices["recipes"].format_help()


def test_subprocess_bad_input_has_no_traceback():
    result = cli("train", "mobilenet", "--activation", "nope", timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "keras-swish train: error: Unknown activation 'nope'" in result.stderr


def test_recipes_lists_recipes_and_experiments(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "\nmobilenet: MobileNet v1" in out
    assert "  mobilenet/embedded (default): " in out and "  mobilenet/imagenet: " in out
    assert main(["recipes", "mobilenet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mobilenet/embedded: ") and "learning_rate=0.008" in out


def test_recipes_prints_a_schedule_in_steps_without_the_data(capsys):
    # Vaswani et al.'s rate is a formula of the step: d^-0.5 · min(s^-0.5, s · w^-1.5),
    # here d = 512, w = 4,000 over 300 epochs of 1,000 steps (optimizer step i is s = i + 1).
    assert main(["recipes", "transformer_nmt/wmt14"]) == 0
    out = capsys.readouterr().out
    peak = 512**-0.5 * 4000**-0.5
    assert f"Learning rate over 300,000 steps, peak {peak:.4g}:" in out
    last = 512**-0.5 * 300_000**-0.5
    assert f"100%  step   299,999  lr {last:.4g}  ({last / peak:.2%} of peak)" in out
    # An experiment that reads only --data text:...: its settings, with no data.
    assert main(["recipes", "transformer_nmt/text"]) == 0
    out = capsys.readouterr().out
    assert "reads --data text:*" in out and "data: source=None" in out
    assert "Learning rate over 300,000 steps" in out
    # Image recipes' schedules count passes: their size must be known.
    assert main(["recipes", "mobilenet/imagenet"]) == 0
    assert "(500.0 passes over the training data of 312 steps)" in capsys.readouterr().out


def test_evaluate_reports_best_keras_on_validation_and_test(tmp_path):
    run = tmp_path / "run"
    trained = cli(
        "train",
        "mobilenet",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "3",
        "--output",
        str(run),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    # No --verbose and the output a pipe: one line for the epoch, no progress
    # bar redrawn with carriage returns (a log file's line per step).
    assert "\r" not in trained.stdout and "\x1b[" not in trained.stdout
    assert len([line for line in trained.stdout.splitlines() if line.startswith("3/3 ")]) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    evaluated = cli("evaluate", str(run))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert evaluated.stdout.startswith("best.keras on embedded MNIST 5k")
    report = json.loads(evaluated.stdout.split("\n", 1)[1])
    for split in ("validation", "test"):
        for key, value in metrics["best"][split].items():
            assert report[split][key] == pytest.approx(value, abs=1e-5), (split, key)


@pytest.mark.parametrize(
    "tty, flag, expected", [(True, "auto", 1), (False, "auto", 2), (False, "1", 1)]
)
def test_verbose_auto_is_a_progress_bar_only_on_a_terminal(monkeypatch, tty, flag, expected):
    from keras_swish.recipes import cli as recipes_cli

    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    assert recipes_cli._progress_verbosity(flag) == expected


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    # In mixed bfloat16, averaging its last 2 epochs (the weights of a
    # distributed model in float32 variables, averaged outside the strategy).
    run = tmp_path / "mirrored"
    result = cli(
        "train",
        "mobilenet",
        "--strategy",
        "mirrored",
        "--set",
        "train.cpu_devices=2",
        "--set",
        "train.average_last=2",
        "--precision",
        "mixed_bfloat16",
        "--epochs",
        "2",
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
    assert metrics["precision"] == "mixed_bfloat16" and metrics["averaged"]["epochs"] == [1, 2]
    assert_is_the_mean_of_kept_weights(run, [1, 2])
    assert_loads_anywhere(run)


def test_steps_per_execution_trains_the_same_weights_and_may_change_on_resume(tmp_path):
    # Keras runs that many steps in one call; the steps, data and weights are
    # the same (a resumed run may change it: another machine, a TPU).
    import keras

    def train(run, epochs, steps_per_execution):
        code = main(
            [
                "train",
                "mobilenet",
                "--epochs",
                str(epochs),
                "--steps-per-epoch",
                "4",
                "--set",
                f"train.steps_per_execution={steps_per_execution}",
                "--output",
                str(run),
                "--verbose",
                "0",
            ]
        )
        assert code == 0

    def weights(run):
        model = keras.models.load_model(run / "final.keras")
        return [keras.ops.convert_to_numpy(w) for w in model.weights]

    one, four, changed = tmp_path / "one", tmp_path / "four", tmp_path / "changed"
    train(one, 2, 1)
    train(four, 2, 4)
    train(changed, 1, 1)
    train(changed, 2, 2)  # resumed with another value
    reference = weights(one)
    assert keras.models.load_model(four / "final.keras").steps_per_execution == 4  # compiled so
    for run in (four, changed):
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["completed"] and [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        state = json.loads((run / "state" / "state.json").read_text())
        assert state["optimizer_iterations"] == 8
        for a, b in zip(weights(run), reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_cloud_tpu_that_is_not_ready_is_a_usage_error(monkeypatch):
    # The Cloud TPU client raises RuntimeError for a stopped TPU (and for a
    # missing Google API client) while its address is looked up.
    import tensorflow as tf

    from keras_swish.recipes.core import strategy

    class Resolver:
        def __init__(self, tpu):
            pass

        def master(self):
            raise RuntimeError('TPU "my-tpu" is not yet ready; state: STOPPED')

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    with pytest.raises(UsageError, match="Cannot reach TPU 'my-tpu': TPU .* STOPPED"):
        strategy._tpu_strategy(tf, "my-tpu")


@pytest.mark.parametrize("error", ["NotFoundError", "InternalError"])
def test_only_a_tpu_that_is_not_there_is_a_usage_error(error, monkeypatch):
    # A TPU that was reached and then failed (an internal error, out of memory)
    # keeps its traceback; one that is not there is a usage error.
    import tensorflow as tf

    from keras_swish.recipes.core import strategy

    def initialize(resolver):
        raise getattr(tf.errors, error)(None, None, "TPU failed")

    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda resolver: None)
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", initialize)
    expected = UsageError if error == "NotFoundError" else tf.errors.InternalError
    with pytest.raises(expected, match="TPU failed"):
        strategy._tpu_strategy(tf, "local")
