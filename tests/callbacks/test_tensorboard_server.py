"""A real `tensorboard` server shows BetaMonitor's β histograms and curves."""

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.callbacks.helpers import EXPECTED_LAYERS

TIMEOUT_S = 90


def _tensorboard_command():
    script = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    return [script] if os.path.exists(script) else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base, path, **query):
    url = f"{base}{path}?{urllib.parse.urlencode(query)}" if query else base + path
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _poll(fetch, ready, process, log):
    """Calls `fetch()` until `ready(result)`, within TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"tensorboard exited ({process.returncode}): {log.read()[-2000:]}")
        try:
            result = fetch()
            if ready(result):
                return result
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    log.seek(0)
    pytest.fail(f"tensorboard did not serve the data in {TIMEOUT_S} s: {log.read()[-2000:]}")


@pytest.fixture
def server(trained_run, tmp_path):
    command = _tensorboard_command()
    # tensorboard is a dependency of keras-swish: its command must be there.
    assert command is not None, "the tensorboard command is not installed beside this Python"
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    with open(tmp_path / "tensorboard.log", "w+") as log:
        process = subprocess.Popen(
            command
            + [
                "--logdir",
                trained_run.log_dir,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--load_fast",
                "false",
                "--reload_interval",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            yield f"http://127.0.0.1:{port}", process, log
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_histograms_and_curves_through_the_http_api(server, trained_run):
    base, process, log = server
    tags = _poll(
        lambda: json.loads(_get(base, "/data/plugin/histograms/tags")),
        lambda t: "beta/all" in t.get("beta", {}),
        process,
        log,
    )
    assert {f"beta_layer/{name}" for name in EXPECTED_LAYERS} <= set(tags["beta"])

    every = np.concatenate([b.reshape(-1) for b in trained_run.betas.values()])
    series = json.loads(
        _get(base, "/data/plugin/histograms/histograms", run="beta", tag="beta/all")
    )
    assert [step for _, step, _ in series] == [0, 1]
    buckets = np.asarray(series[-1][2])  # [[left, right, count], ...]
    assert buckets[:, 2].sum() == every.size
    np.testing.assert_allclose([buckets[0, 0], buckets[-1, 1]], [every.min(), every.max()])
    layer = json.loads(
        _get(
            base,
            "/data/plugin/histograms/histograms",
            run="beta",
            tag="beta_layer/dense/swish_beta",
        )
    )
    assert np.asarray(layer[-1][2])[:, 2].sum() == EXPECTED_LAYERS["dense/swish_beta"]

    image_tags = json.loads(_get(base, "/data/plugin/images/tags"))
    assert "beta/curves" in image_tags["beta"]
    images = json.loads(
        _get(base, "/data/plugin/images/images", run="beta", tag="beta/curves", sample=0)
    )
    assert [entry["step"] for entry in images] == [0, 1]
    png = _get(base, "/data/plugin/images/individualImage?" + images[-1]["query"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape == (500, 800, 3) and pixels.std() > 0
