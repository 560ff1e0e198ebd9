"""Checks of a finished run folder that every recipe's end-to-end test shares."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Loads both models in a process that has imported only keras and keras_swish,
# then (and only then) rebuilds the run's validation data and evaluates them.
_LOADER = r"""
import json, os, sys
import keras
import keras_swish

run = sys.argv[1]
recipe_modules = [m for m in sys.modules if m.startswith(("keras_swish.recipes.tasks",
                  "keras_swish.recipes.configs", "keras_swish.recipes.data", "keras_hub"))]
assert not recipe_modules, recipe_modules
models = {name: keras.models.load_model(f"{run}/{name}", safe_mode=True)
          for name in ("best.keras", "final.keras", "averaged.keras")
          if os.path.exists(f"{run}/{name}")}
assert "best.keras" in models

from keras_swish.recipes.core import runner

recipe, config = runner.load_run_config(run)
data = recipe.make_data(config)
out = {name: {"val_" + k: float(v) for k, v in
              model.evaluate(data.validation, return_dict=True, verbose=0).items()}
       for name, model in models.items()}
print("RESULT " + json.dumps(out))
"""


def fresh_process_result(script, *args, timeout=600):
    """Runs `python -c SCRIPT ARGS` in a fresh process; the JSON of its `RESULT ` line."""
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def assert_loads_anywhere(run, tolerance=1e-4):
    """best.keras (final.keras, averaged.keras if kept) load in safe mode in a fresh process.

    And predict the same: evaluated on the run's validation data there, they
    give the numbers metrics.json reports for them (best, averaged: their final
    evaluation; last: the validation of its epoch during training).
    """
    measured = fresh_process_result(_LOADER, run, timeout=900)
    metrics = json.loads((run / "metrics.json").read_text())
    assert ("averaged.keras" in measured) == ("averaged" in metrics)
    names = {"best.keras": "best", "final.keras": "last", "averaged.keras": "averaged"}
    for name, key in names.items():
        if name not in measured:  # a search child keeps only best.keras
            continue
        reported = metrics[key]["validation"]
        for metric, value in measured[name].items():
            if metric in reported:
                assert abs(value - reported[metric]) <= tolerance * max(1.0, abs(value)), (
                    name,
                    metric,
                    value,
                    reported[metric],
                )
    return measured


def train_process(args, run, *extra, kill_at=None):
    """`keras-swish ARGS --output RUN EXTRA` in a fresh process (umask 022).

    `kill_at`: a fault point (`faults.KILL_ENV`) where the process SIGKILLs itself.
    """
    from keras_swish.recipes.core import faults

    env = dict(os.environ, PYTHONUNBUFFERED="1")  # a killed process's output, whole
    env.pop(faults.KILL_ENV, None)
    if kill_at:
        env[faults.KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "keras_swish.recipes", *args, "--output", str(run), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
        preexec_fn=lambda: os.umask(0o022),
    )


def kept_weights(path):
    """The arrays of a run's `state/average-E.h5` (checkpoint averaging), read with h5py."""
    import h5py

    with h5py.File(path) as f:
        return [f[str(i)][()] for i in range(len(f))]


def assert_is_the_mean_of_kept_weights(run, epochs):
    """`<run>/averaged.keras`, loaded here, holds the mean of the kept weights of `epochs`."""
    import keras
    import numpy as np

    import keras_swish  # noqa: F401 (registers the classes the models hold)

    kept = [kept_weights(run / "state" / f"average-{e}.h5") for e in epochs]
    averaged = keras.models.load_model(run / "averaged.keras")
    assert len(averaged.weights) == len(kept[0])
    for index, variable in enumerate(averaged.weights):
        values = [k[index] for k in kept]
        if np.issubdtype(values[0].dtype, np.floating):
            expected = np.mean(np.stack(values).astype(np.float64), axis=0)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-7
            )


def alive(pid):
    """Whether process `pid` runs: one of its threads has not ended yet (its main
    thread, a zombie nobody has reaped yet, ends first; the others still hold
    its files, a run folder's lock among them)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/status") as f:
                if "\nState:\tZ" not in f.read():
                    return True
        except FileNotFoundError:
            pass
    return False


def record_disk_events(monkeypatch):
    """Every `os.fsync` (the path synced) and `os.replace` (its target), in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def strict_json(text):
    """`json.loads` that refuses bare NaN / Infinity (not JSON, though Python writes them)."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)
