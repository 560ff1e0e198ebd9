"""`keras-swish train transformer_nmt` and `translate`, end to end on the embedded pairs.

One short run serves every test here: it is killed after its first epoch,
resumed, and then read back (BLEU against an untrained model, `translate`).
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import keras
import pytest

from keras_swish.recipes.core import runner
from keras_swish.recipes.data.text import load_sentencepiece
from keras_swish.recipes.tasks.decoding import corpus_bleu
from keras_swish.recipes.tasks.translation import translate_pairs, translator
from tests.recipes.run_checks import assert_is_the_mean_of_kept_weights, assert_loads_anywhere
from tests.recipes.test_cli import ROOT, cli

pytestmark = pytest.mark.slow

EPOCHS = 15


def _wait_for_epochs(path, count, process, timeout=600):
    """Waits until `path` (metrics.json) lists `count` epochs while `process` runs."""
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
    assert (run / "state" / "state.json").is_file()
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
    assert metrics["recipe"] == "transformer_nmt"
    assert metrics["experiment"] == "transformer_nmt/embedded"
    assert "final" not in metrics
    best, last = metrics["best"], metrics["last"]
    assert best["model"] == "best.keras" and best["monitor"] == "val_accuracy"
    best_epoch = max(metrics["epochs"], key=lambda e: e["val_accuracy"])["epoch"]
    assert best["epoch"] == best_epoch
    # BLEU goes where its prefix says: validation pairs and test pairs.
    assert {"val_loss", "val_accuracy", "val_bleu", "val_bleu_intl"} <= set(best["validation"])
    assert {"test_bleu", "test_bleu_intl"} <= set(best["test"])
    bleus = [v for split in ("validation", "test") for k, v in best[split].items() if "bleu" in k]
    assert len(bleus) == 4 and all(0 <= v <= 100 for v in bleus)
    signatures = best["signatures"]
    assert signatures["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert signatures["bleu_intl_signature"].startswith(
        "nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp"
    )
    assert last == {
        "model": "final.keras",
        "epoch": EPOCHS,
        "validation": {k: v for k, v in metrics["epochs"][-1].items() if k.startswith("val_")},
    }
    assert metrics["epochs"][-1]["val_accuracy"] > metrics["epochs"][0]["val_accuracy"] + 0.1
    for name in ("config.yaml", "best.keras", "final.keras", "sentencepiece.model"):
        assert (run / name).is_file(), name
    # The resume state stays (a larger --epochs continues the run); no Keras backup.
    assert (run / "state" / "state.json").is_file() and not (run / "backup").exists()
    assert os.listdir(run / "logs" / "train") and os.listdir(run / "logs" / "validation")
    assert f"best.keras (epoch {best_epoch}): " in stdout
    assert f"val_bleu {best['validation']['val_bleu']:.4f}" in stdout
    assert f"test_bleu {best['test']['test_bleu']:.4f}" in stdout
    # Vaswani's checkpoint averaging: the last 5 epochs' weights, evaluated the same way.
    averaged = metrics["averaged"]
    assert averaged["model"] == "averaged.keras" and (run / "averaged.keras").is_file()
    assert averaged["epochs"] == list(range(EPOCHS - 4, EPOCHS + 1))
    assert {"val_bleu", "val_bleu_intl"} <= set(averaged["validation"])
    assert {"test_bleu", "test_bleu_intl"} <= set(averaged["test"])
    assert averaged["signatures"] == signatures
    lines = stdout.splitlines()
    line = next(x for x in lines if x.startswith("averaged.keras"))
    assert line.startswith(f"averaged.keras (the mean of epochs {EPOCHS - 4}-{EPOCHS}): ")
    assert f"test_bleu {averaged['test']['test_bleu']:.4f}" in line
    # The weights kept for it stay beside the last checkpoint (a rerun of the final stage).
    assert sorted(os.listdir(run / "state")) == [
        *[f"average-{e}.h5" for e in range(EPOCHS - 4, EPOCHS + 1)],
        f"epoch-{EPOCHS}.weights.h5",
        "state.json",
    ]
    # keras-hub's layers and SwishBeta come back from averaged.keras in the order
    # of the trained model's variables: the mean of the kept weights, variable by variable.
    assert_is_the_mean_of_kept_weights(run, range(EPOCHS - 4, EPOCHS + 1))


def test_bleu_rises_clearly_above_an_untrained_model(run):
    run, _ = run
    recipe, config = runner.load_run_config(str(run))
    assert recipe.name == "transformer_nmt" and config.train.output == str(run)
    data = recipe.make_data(config)  # the run's own vocabulary and split
    keras.utils.set_random_seed(config.train.seed)
    untrained = recipe.make_model(config, data)
    processor = load_sentencepiece(str(run / "sentencepiece.model"))
    untrained_bleu, _ = corpus_bleu(*translate_pairs(config, untrained, processor, data.test_pairs))
    trained_bleu = json.loads((run / "metrics.json").read_text())["best"]["test"]["test_bleu"]
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
    # The same as translating in this process with the model the run reports
    # (the average of its last checkpoints) and its beam.
    assert runner.model_path(str(run)) == str(run / "averaged.keras")
    assert lines == translator(str(run))(sentences)
    _, config = runner.load_run_config(str(run))
    processor = load_sentencepiece(str(run / "sentencepiece.model"))
    averaged = keras.models.load_model(run / "averaged.keras")
    texts = [s for s in sentences if s]
    expected, _ = translate_pairs(config, averaged, processor, [(s, "") for s in texts])
    assert [line for line in lines if line] == expected

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


def test_translate_uses_best_keras_not_final_keras(run, tmp_path):
    """A copy of the run (without averaging) whose best.keras is untrained: translate follows it."""
    run, _ = run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "sentencepiece.model", "final.keras"):
        shutil.copy(run / name, copy / name)
    recipe, config = runner.load_run_config(str(run))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, beam_size=1))
    processor = load_sentencepiece(str(run / "sentencepiece.model"))
    keras.utils.set_random_seed(1)
    untrained = recipe.make_model(config, types.SimpleNamespace(vocab_size=processor.vocab_size()))
    untrained.save(copy / "best.keras")
    sentences = ["Delete", "Change password"]
    result = subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", "translate", str(copy), "--beam-size", "1"],
        input="\n".join(sentences) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pairs = [(s, "") for s in sentences]
    from_best, _ = translate_pairs(config, untrained, processor, pairs)
    final = keras.models.load_model(copy / "final.keras")
    from_final, _ = translate_pairs(config, final, processor, pairs)
    assert from_best != from_final  # so that the check below tells them apart
    assert result.stdout.splitlines() == from_best


def test_best_and_final_load_in_a_fresh_process_and_evaluate_the_same(run):
    assert_loads_anywhere(run[0])
