"""Runs the backend-agnostic core tests again under JAX and PyTorch.

Keras fixes its backend when it is first imported, so each backend needs its
own process. The tests marked `all_backends` (layer, activation hook,
serialization, replace_activations, the op) run here with KERAS_BACKEND set.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="launched once, from the default (TensorFlow) run",
)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_core_tests_pass_on_backend(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "all_backends",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, (
        f"core tests failed under KERAS_BACKEND={backend}:\n"
        + result.stdout[-6000:]
        + result.stderr[-2000:]
    )
    assert " passed" in summary, summary
