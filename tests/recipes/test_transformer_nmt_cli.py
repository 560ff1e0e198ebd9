"""`keras-swish train transformer_nmt` and `translate`, end to end on the embedded pairs.

One short run serves every test here: it is killed after its first epoch,
resumed, and then read back (BLEU against an untrained model, `translate`).
"""

import json
import os
import signal
import subprocess
import sys

import keras
import pytest

from keras_swish.recipes import driver
from keras_swish.recipes.data.text import load_sentencepiece
from keras_swish.recipes.tasks.decoding import corpus_bleu
from keras_swish.recipes.core.registry import get_recipe
from keras_swish.recipes.tasks.translation import translate_pairs, translator
from tests.recipes.test_cli import ROOT, _wait_for_epochs, cli

pytestmark = pytest.mark.slow

EPOCHS = 15


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run of the embedded defaults, SIGKILLed after epoch 1 and resumed."""
    run = tmp_path_factory.mktemp("nmt") / "run"
    args = [
        "train",
        "transformer_nmt",
        "--epochs",
        str(EPOCHS),
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
    second = cli(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    return run, second.stdout


def test_killed_run_resumes_and_records_bleu(run):
    run, stdout = run
    assert f"Epoch 2/{EPOCHS}" in stdout and f"Epoch 1/{EPOCHS}" not in stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] is True
    assert [s["started_at_epoch"] for s in metrics["sessions"]] == [1, 2]
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    final = metrics["final"]
    assert {"loss", "accuracy", "val_bleu", "bleu"} <= set(final)
    assert final["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert metrics["epochs"][-1]["val_accuracy"] > metrics["epochs"][0]["val_accuracy"] + 0.1
    for name in ("config.yaml", "best.keras", "final.keras", "sentencepiece.model"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    assert os.listdir(run / "logs" / "train") and os.listdir(run / "logs" / "validation")
    assert "bleu_signature nrefs:1|" in stdout


def test_bleu_rises_clearly_above_an_untrained_model(run):
    run, _ = run
    recipe, config = driver.load_run_config(get_recipe, str(run))
    data = recipe.make_data(config)  # the run's own vocabulary and split
    keras.utils.set_random_seed(config.train.seed)
    untrained = recipe.make_model(config, data)
    processor = load_sentencepiece(str(run / "sentencepiece.model"))
    untrained_bleu, _ = corpus_bleu(*translate_pairs(config, untrained, processor, data.test_pairs))
    trained_bleu = json.loads((run / "metrics.json").read_text())["final"]["bleu"]
    assert trained_bleu > untrained_bleu + 5, (trained_bleu, untrained_bleu)


def test_translate_reads_stdin_and_prints_one_line_each(run):
    run, _ = run
    sentences = ["Delete", "Close", "", "Change password", "Yes", "Open"]
    result = subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", "translate", str(run)],
        input="\n".join(sentences) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == len(sentences) and lines[2] == ""
    assert all(line.strip() for i, line in enumerate(lines) if i != 2)
    # The same as translating in this process with the run's best model and beam.
    assert lines == translator(str(run))(sentences)

    greedy = subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", "translate", str(run), "--beam-size", "1"],
        input="Delete\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    assert greedy.stdout.splitlines() == translator(str(run), beam_size=1)(["Delete"])
