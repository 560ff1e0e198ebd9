"""A run's `best.keras`, trained on TensorFlow, serves on JAX and PyTorch (Keras 3's promise)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_swish.cli import main
from tests.backend_utils import swish_betas
from tests.recipes.run_checks import ROOT

pytest.importorskip("tensorflow")

# Loads a model in a fresh process under KERAS_BACKEND, predicts on saved inputs.
_PREDICT = """
import sys
import numpy as np
import keras
import keras_swish  # noqa: F401  (registers SwishBeta and the recipes' classes)
from tests.backend_utils import swish_betas

model_path, inputs_path, out_path = sys.argv[1:]
model = keras.models.load_model(model_path, safe_mode=True)
with np.load(inputs_path) as saved:
    inputs = [saved[f"x{i}"] for i in range(len(saved.files))]
output = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
np.save(out_path, np.asarray(output))
betas = [keras.ops.convert_to_numpy(b) for b in swish_betas(model)]
np.savez(out_path + ".betas.npz", *betas)
print("backend", keras.backend.backend())
"""


def _inputs(model):
    rng = np.random.default_rng(0)
    inputs = []
    for tensor in model.inputs:
        shape = [3 if d is None else d for d in tensor.shape]
        if "int" in str(tensor.dtype):  # token ids, 0 the padding
            inputs.append(rng.integers(1, 50, size=shape).astype(str(tensor.dtype)))
        else:
            inputs.append(rng.normal(size=shape).astype("float32"))
    return inputs


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["mobilenet", "transformer_nmt"])
def test_best_keras_predicts_the_same_on_jax_and_pytorch(recipe, tmp_path):
    import keras

    run = tmp_path / "run"
    flags = ["--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0"]
    assert main(["train", recipe, *flags, "--output", str(run)]) == 0
    model = keras.models.load_model(run / "best.keras", safe_mode=True)
    betas = [keras.ops.convert_to_numpy(b) for b in swish_betas(model)]
    assert betas and any(not np.allclose(b, 1.0) for b in betas)  # trained β, not the init
    inputs = _inputs(model)
    expected = np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))
    np.savez(tmp_path / "inputs.npz", **{f"x{i}": x for i, x in enumerate(inputs)})
    for backend in ("jax", "torch"):
        out = tmp_path / f"{backend}.npy"
        result = subprocess.run(
            [sys.executable, "-c", _PREDICT, str(run / "best.keras"), str(tmp_path / "inputs.npz")]
            + [str(out)],
            cwd=ROOT,
            env=dict(os.environ, KERAS_BACKEND=backend),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (backend, result.stderr[-3000:])
        assert f"backend {backend}" in result.stdout
        np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)
        with np.load(f"{out}.betas.npz") as loaded:
            assert len(loaded.files) == len(betas)
            for i, beta in enumerate(betas):
                np.testing.assert_array_equal(loaded[f"arr_{i}"], beta)
