"""Runs the backend-agnostic core tests again under JAX and PyTorch.

Keras fixes its backend when it is first imported, so each backend needs its
own process. The tests marked `all_backends` (layer, activation hook,
serialization, replace_activations, the op) run here with KERAS_BACKEND set.

The selected backends' runs start together, with the first of these tests:
most of a run is single-threaded Python (imports, collection, eager Keras
calls), so on a 2-core machine the two together take little longer than one
(3 min 13 s - 3 min 54 s for both against 6 min one after the other). Under
the README's `-n 2` they share the cores with the other pytest-xdist worker
(about 4 min).
"""

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "torch")

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="launched once, from the default (TensorFlow) run",
)


@pytest.fixture(scope="module")
def backend_runs(request):
    """backend -> (Popen, stdout file, stderr file), started together for the
    backends whose test was selected (`-k torch` starts PyTorch's only)."""
    selected = {
        item.callspec.params["backend"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    runs = {}
    for backend in BACKENDS:
        if backend not in selected or importlib.util.find_spec(backend) is None:
            continue
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-m", "all_backends", "-q"]
            + ["-p", "no:cacheprovider", "tests"],
            cwd=ROOT,
            env=dict(os.environ, KERAS_BACKEND=backend),
            stdout=out,
            stderr=err,
            text=True,
        )
        runs[backend] = (process, out, err)
    yield runs
    for process, out, err in runs.values():
        if process.poll() is None:
            process.kill()
            process.wait()
        out.close()
        err.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_core_tests_pass_on_backend(backend, backend_runs):
    if backend not in backend_runs:
        pytest.skip(f"{backend} is not installed")
    process, out, err = backend_runs[backend]
    returncode = process.wait(timeout=1200)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    summary = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    assert returncode == 0, (
        f"core tests failed under KERAS_BACKEND={backend}:\n" + stdout[-6000:] + stderr[-2000:]
    )
    assert " passed" in summary, summary
