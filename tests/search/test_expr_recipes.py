"""Every recipe takes a searched function: `--activation "expr:<formula>"`."""

import json
import subprocess
import sys

import pytest

from tests.recipes.run_checks import fresh_process_result

_CHECK = r"""
import json, sys
import keras
import keras_swish

model = keras.models.load_model(sys.argv[1], safe_mode=True)
found = [x for x in model._flatten_layers() if isinstance(x, keras_swish.ExpressionActivation)]
betas = sum(1 for x in found if getattr(x, "beta", None) is not None)
formulas = sorted({x.formula for x in found})
print("RESULT " + json.dumps({"count": len(found), "formulas": formulas, "betas": betas}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["mobilenet", "transformer_nmt"])
def test_recipe_trains_and_saves_a_formula_activation(recipe, tmp_path):
    output = tmp_path / "run"
    formula = "max(x, sigmoid(beta * x))"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_swish_cli",
            "train",
            recipe,
            "--activation",
            f"expr:{formula}",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "8",
            "--output",
            str(output),
            "--verbose",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["completed"] and metrics["activation"] == f"expr:{formula}"
    found = fresh_process_result(_CHECK, output / "best.keras")
    assert found["formulas"] == [formula]
    assert found["count"] >= 2 and found["betas"] == found["count"]  # each use owns its β
