"""MobileNet training-step time with relu, swish and swish_beta (TensorFlow CPU).

MobileNet v1 (`keras.applications.MobileNet`, α = 1.0, 128×128×3 inputs,
1000 classes, batch 32, RMSprop, sparse cross-entropy) with its activations
swapped by `keras_swish.replace_activations`: `relu` (the paper's baseline in
place of ReLU6), Keras's `swish` (SiLU: Swish with β = 1 fixed) and
`swish_beta` (SwishBeta, one trainable β per channel). Each step is one
`train_on_batch` on the same random batch; the models take turns so that
noise from other processes hits all of them alike. Prints the median step time
and its ratio to relu and to swish.

By default the step is not XLA-compiled, as Keras does on a CPU-only machine
(`jit_compile="auto"`); `--jit-compile true` (or `both`) adds XLA, under which
the whole step ran about 8× slower on a 2-core CPU.

Usage (from the repository root; about 2 minutes on 2 CPU cores, 1 with
`--quick`, 10 with `--jit-compile both`):

    python benchmarks/train_step.py
    python benchmarks/train_step.py --quick
    python benchmarks/train_step.py --jit-compile both
"""

import argparse
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_swish  # noqa: E402

ACTIVATIONS = ("relu", "swish", "swish_beta")


def build(activation, jit_compile, image_size):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--steps", type=int, help="timed steps per model (default 12, quick 4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--jit-compile",
        choices=["false", "true", "both"],
        default="false",
        help="XLA for the train step (default: false, as Keras on CPU)",
    )
    args = parser.parse_args()
    steps = args.steps or (4 if args.quick else 12)
    modes = {"false": [False], "true": [True], "both": [False, True]}[args.jit_compile]

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, args.image_size, args.image_size, 3))
    x = x.astype("float32")
    y = rng.integers(0, 1000, (args.batch_size,))
    load_before = os.getloadavg()[0]
    table = []
    for jit_compile in modes:
        models = {a: build(a, jit_compile, args.image_size) for a in ACTIVATIONS}
        for model in models.values():  # trace, compile, warm up
            for _ in range(2):
                model.train_on_batch(x, y)
        times = {a: [] for a in ACTIVATIONS}
        for _ in range(steps):
            for activation, model in models.items():
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[activation].append(time.perf_counter() - start)
        medians = {a: 1e3 * statistics.median(t) for a, t in times.items()}
        for activation in ACTIVATIONS:
            table.append((jit_compile, activation, medians, models[activation].count_params()))
        del models
        keras.backend.clear_session()
    load_after = os.getloadavg()[0]

    import tensorflow as tf

    print(
        f"MobileNet α=1.0, {args.image_size}×{args.image_size}, batch "
        f"{args.batch_size}, TensorFlow {tf.__version__} CPU, {os.cpu_count()} cores; "
        f"median of {steps} steps; load average {load_before:.2f} before, "
        f"{load_after:.2f} after"
    )
    header = (
        f"{'jit_compile':<13}{'activation':<12}{'step ms':>9}{'× relu':>8}"
        f"{'× swish':>9}{'params':>10}"
    )
    print(header)
    print("-" * len(header))
    for jit_compile, activation, medians, params in table:
        ms = medians[activation]
        print(
            f"{str(jit_compile):<13}{activation:<12}{ms:>9.0f}"
            f"{ms / medians['relu']:>8.2f}{ms / medians['swish']:>9.2f}"
            f"{params:>10}"
        )


if __name__ == "__main__":
    main()
