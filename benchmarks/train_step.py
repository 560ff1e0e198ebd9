"""MobileNet training-step time with relu, swish and swish_beta, on every backend.

MobileNet v1 (`keras.applications.MobileNet`, α = 1.0, 128×128×3 inputs,
1000 classes, batch 32, RMSprop, sparse cross-entropy) with its activations
swapped by `keras_swish.replace_activations`: `relu` (the paper's baseline in
place of ReLU6), Keras's `swish` (SiLU: Swish with β = 1 fixed) and
`swish_beta` (SwishBeta, one trainable β per channel). Each step is one
`train_on_batch` on the same random batch; the models take turns so that
noise from other processes hits all of them alike. Prints the median step time
and its ratio to relu and to swish, one row per backend, `jit_compile` and
activation.

Each backend runs in its own subprocess (Keras fixes its backend per process):
TensorFlow, JAX and PyTorch (`--backends`). `--jit-compile auto` (the
default) is Keras's own choice on the machine: on a CPU-only machine
TensorFlow and PyTorch run without compiling and JAX jit-compiles (it always
does); on a GPU TensorFlow and JAX XLA-compile. `true` forces it (XLA, or
`torch.compile` on PyTorch), `both` runs `auto` and `true`. On PyTorch the
first `swish_beta` step also builds the op's Inductor kernels (seconds to a
minute, not timed; see `cold s`).

Usage (from the repository root; about 2 minutes per backend on 2 CPU cores,
1 with `--quick`):

    python benchmarks/train_step.py
    python benchmarks/train_step.py --quick --backends jax,torch
    python benchmarks/train_step.py --jit-compile both
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTIVATIONS = ("relu", "swish", "swish_beta")
BACKENDS = ("tensorflow", "jax", "torch")


def build(activation, jit_compile, image_size):
    import keras

    import keras_swish

    base = keras.applications.MobileNet(
        input_shape=(image_size, image_size, 3), alpha=1.0, weights=None
    )
    model = keras_swish.replace_activations(base, {"relu": activation})
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    return model


def backend_version(backend):
    module = __import__(backend)
    version = f"{backend} {module.__version__}"
    if backend == "torch":
        version += f" ({module.get_num_threads()} threads)"
    return version


def device_name():
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        if backend == "jax":
            import jax

            return jax.devices()[0].platform.upper()
        if backend == "torch":
            import torch

            return "GPU" if torch.cuda.is_available() else "CPU"
    except Exception:  # noqa: BLE001 (only a label)
        pass
    return "?"


def worker(args):
    """One backend: time every (jit_compile, activation); prints a RESULT line."""
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np

    steps = args.steps or (4 if args.quick else 12)
    modes = {"auto": ["auto"], "false": [False], "true": [True], "both": ["auto", True]}
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, args.image_size, args.image_size, 3))
    x = x.astype("float32")
    y = rng.integers(0, 1000, (args.batch_size,))
    rows = []
    for jit_compile in modes[args.jit_compile]:
        models = {a: build(a, jit_compile, args.image_size) for a in ACTIVATIONS}
        cold = {}
        for activation, model in models.items():  # trace, compile, warm up
            start = time.perf_counter()
            model.train_on_batch(x, y)
            cold[activation] = time.perf_counter() - start
            model.train_on_batch(x, y)
        times = {a: [] for a in ACTIVATIONS}
        for _ in range(steps):
            for activation, model in models.items():
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[activation].append(time.perf_counter() - start)
        for activation in ACTIVATIONS:
            rows.append(
                {
                    "jit_compile": str(jit_compile),
                    "activation": activation,
                    "ms": 1e3 * statistics.median(times[activation]),
                    "cold_s": cold[activation],
                    "params": models[activation].count_params(),
                }
            )
        del models
        keras.backend.clear_session()
    result = {
        "backend": keras.backend.backend(),
        "version": backend_version(keras.backend.backend()),
        "device": device_name(),
        "steps": steps,
        "rows": rows,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_backend(backend, argv):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, os.path.abspath(__file__), "--worker", *argv]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{backend} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--steps", type=int, help="timed steps per model (default 12, quick 4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated, from {', '.join(BACKENDS)} (default: all)",
    )
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "false", "true", "both"],
        default="auto",
        help="compile the train step: auto (Keras's choice, default), false, true, "
        "both (auto and true)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {list(BACKENDS)}")
    argv = [
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--jit-compile",
        args.jit_compile,
    ]
    if args.steps:
        argv += ["--steps", str(args.steps)]
    if args.quick:
        argv.append("--quick")
    load_before = os.getloadavg()[0]
    results = []
    for backend in backends:
        print(f"running {backend} ...", file=sys.stderr)
        results.append(run_backend(backend, argv))
    load_after = os.getloadavg()[0]

    print(
        f"MobileNet α=1.0, {args.image_size}×{args.image_size}, batch "
        f"{args.batch_size}, {os.cpu_count()} CPU cores; median of "
        f"{results[0]['steps']} steps per model, models taking turns; load average "
        f"{load_before:.2f} before, {load_after:.2f} after"
    )
    for result in results:
        print(f"  {result['backend']}: {result['version']} on {result['device']}")
    header = (
        f"{'backend':<12}{'jit_compile':<13}{'activation':<12}{'step ms':>9}"
        f"{'× relu':>8}{'× swish':>9}{'cold s':>8}{'params':>10}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for row in result["rows"]:
            same = {
                r["activation"]: r["ms"]
                for r in result["rows"]
                if r["jit_compile"] == row["jit_compile"]
            }
            print(
                f"{result['backend']:<12}{row['jit_compile']:<13}{row['activation']:<12}"
                f"{row['ms']:>9.0f}{row['ms'] / same['relu']:>8.2f}"
                f"{row['ms'] / same['swish']:>9.2f}{row['cold_s']:>8.1f}{row['params']:>10}"
            )


if __name__ == "__main__":
    main()
