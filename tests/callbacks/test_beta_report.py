"""`beta_report` and `keras-swish beta-report`: PNGs and the per-layer table."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import keras_swish
from keras_swish import cli
from keras_swish.callbacks import beta_report
from keras_swish.callbacks.betas import find_swish_layers
from tests.callbacks.helpers import EXPECTED_LAYERS


def assert_picture(path):
    assert os.path.isfile(path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (800, 500)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # Not blank.
    assert (pixels < 128).any() and (pixels > 200).any()


def assert_rows_match(report, betas):
    rows = {row["layer"]: row for row in report.rows()}
    assert list(rows) == list(betas)
    for name, beta in betas.items():
        assert rows[name]["channels"] == EXPECTED_LAYERS[name]
        np.testing.assert_allclose(
            [rows[name]["mean"], rows[name]["min"], rows[name]["max"]],
            [beta.mean(), beta.min(), beta.max()],
            rtol=1e-6,
        )


def test_report_from_log_dir(trained_run, tmp_path):
    report = beta_report(trained_run.log_dir, tmp_path / "out")
    assert report.step == 1
    assert sorted(os.listdir(tmp_path / "out")) == [
        "beta_curves.png",
        "beta_distribution.png",
    ]
    assert_picture(report.distribution_png)
    assert_picture(report.curves_png)
    assert_rows_match(report, trained_run.betas)
    table = str(report)
    assert table.splitlines()[0].split() == ["layer", "channels", "mean", "min", "max"]
    assert "lstm/lstm_cell/recurrent_swish_beta" in table
    assert f"all ({len(EXPECTED_LAYERS)} layers)" in table


def test_report_from_keras_file_and_model(trained_run, tmp_path):
    from_file = beta_report(trained_run.model_path, tmp_path / "file")
    assert from_file.step is None
    assert_rows_match(from_file, trained_run.betas)
    assert_picture(from_file.distribution_png)
    from_model = beta_report(trained_run.model, tmp_path / "model")
    assert from_model.rows() == from_file.rows()


@pytest.mark.all_backends
def test_report_from_a_model_on_any_backend(tmp_path):
    dense = keras.layers.Dense(3, activation="swish_beta", name="fc")
    model = keras.Sequential([keras.Input((2,)), dense, keras_swish.SwishBeta()])
    model.layers[-1].beta.assign([0.0, 0.5, 2.0])
    report = beta_report(model, tmp_path)
    rows = report.rows()
    assert [(r["layer"], r["channels"]) for r in rows] == [
        ("sequential/fc/swish_beta", 3),
        ("sequential/swish_beta", 3),
    ]
    assert (rows[1]["mean"], rows[1]["min"], rows[1]["max"]) == (2.5 / 3, 0.0, 2.0)
    assert_picture(report.distribution_png)
    assert_picture(report.curves_png)


def test_plots_and_snapshots_get_a_new_files_permissions(tmp_path):
    """Not the 0600 of a temporary file: a team shares a run folder (umask 022 → 0644)."""
    from keras_swish.callbacks.betas import read_betas, write_snapshot

    model = keras.Sequential([keras.Input((2,)), keras_swish.SwishBeta()])
    old = os.umask(0o022)
    try:
        report = beta_report(model, tmp_path / "report")
        snapshot = write_snapshot(read_betas(model), str(tmp_path / "logs"), 3)
    finally:
        os.umask(old)
    for path in (report.distribution_png, report.curves_png, snapshot):
        assert oct(os.stat(path).st_mode & 0o777) == "0o644", path
    assert not [n for n in os.listdir(tmp_path / "report") if n.startswith(".")]


def test_report_from_snapshot_file(trained_run, tmp_path):
    path = os.path.join(trained_run.log_dir, "beta", "betas.json")
    assert_rows_match(beta_report(path, tmp_path), trained_run.betas)


def relu_model_path(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu")])
    path = str(tmp_path / "relu.keras")
    model.save(path)
    return path


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda p: str(p / "missing"), "No such file or directory"),
        (lambda p: str(p), "No BetaMonitor snapshot"),
        (relu_model_path, "has no SwishBeta layer"),
        (
            lambda p: (p / "notes.txt").write_text("hi") and str(p / "notes.txt"),
            "Received",
        ),
        (
            lambda p: (p / "bad.keras").write_text("hi") and str(p / "bad.keras"),
            "Could not load",
        ),
        (lambda p: (p / "betas.json").write_text("{}") and str(p), "not a β snapshot"),
        (lambda p: 42, "Received: model_or_path of type int"),
    ],
)
def test_bad_input_writes_nothing(make_input, message, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    with pytest.raises(ValueError, match=message):
        beta_report(make_input(source), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_several_runs_are_named(trained_run, tmp_path):
    for run in ("a", "b"):
        report = beta_report(trained_run.log_dir, tmp_path / "x")
        keras_swish.callbacks.betas.write_snapshot(list(report.layers), tmp_path / run / "beta", 0)
    with pytest.raises(ValueError, match="holds 2 BetaMonitor runs"):
        beta_report(tmp_path, tmp_path / "out")


@pytest.mark.all_backends
def test_same_paths_get_owner_prefix():
    def block(name):
        inputs = keras.Input((3,))
        return keras.Model(
            inputs,
            keras.layers.Dense(3, activation="swish_beta", name="fc")(inputs),
            name=name,
        )

    inputs = keras.Input((3,))
    model = keras.Model(inputs, block("b2")(block("b1")(inputs)))
    names = [name for name, _ in find_swish_layers(model)]
    assert names == ["b1/fc/swish_beta", "b2/fc/swish_beta"]


def test_cli_beta_report(trained_run, tmp_path, capsys):
    assert cli.main(["beta-report", trained_run.log_dir, "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "at step 1" in out and "dense/swish_beta" in out
    assert f"Wrote {tmp_path / 'beta_distribution.png'}" in out
    assert_picture(tmp_path / "beta_curves.png")


def test_cli_default_out_dir_is_beside_the_model(trained_run, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(open(trained_run.model_path, "rb").read())
    assert cli.main(["beta-report", str(model)]) == 0
    assert_picture(tmp_path / "beta_distribution.png")


@pytest.mark.parametrize(
    "argv",
    [["beta-report", "no/such/run"], ["beta-report"], [], ["no-such-command"]],
)
def test_cli_bad_input_exits_2_without_traceback(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err


def test_cli_help_lists_beta_report(capsys):
    assert cli.main(["--help"]) == 0
    assert "beta-report" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["{}", "[1, 2]", "not json", '{"epochs": [], "completed": true}'])
def test_cli_on_a_json_that_is_not_a_snapshot_is_one_message(text, tmp_path, capsys):
    from keras_swish.cli import main

    path = tmp_path / "metrics.json"
    path.write_text(text)
    assert main(["beta-report", str(path), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a β snapshot written by BetaMonitor" in err, err
    assert not (tmp_path / "out").exists()


def test_cli_as_a_process(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_swish.cli",
            "beta-report",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("keras-swish beta-report: error: No such file or directory")
    )


def test_snapshots_are_written_where_os_has_no_fchmod(tmp_path, monkeypatch):
    """Windows before Python 3.13 has no `os.fchmod`: files are still written whole."""
    from keras_swish.files import write_atomic

    monkeypatch.delattr(os, "fchmod")
    write_atomic(str(tmp_path / "betas.json"), '{"step": 1}')
    assert (tmp_path / "betas.json").read_text() == '{"step": 1}'
    assert os.listdir(tmp_path) == ["betas.json"]
