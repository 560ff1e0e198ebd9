"""Speed and memory of Swish with a trainable β against ReLU and Keras's SiLU.

Rows: `relu`, Keras `silu`, the plain formula `x * sigmoid(beta * x)` built
from `keras.ops`, and `SwishBeta` (`keras_swish.ops.swish`, the fused op the
layer calls), both with one β per channel (last axis). Columns: medians of the
forward pass and of forward + backward (the output, dx and, where there is a
β, dβ for a given upstream gradient), their ratios to Keras's silu and to the
memory-bandwidth floor, and the bytes the backward pass keeps per element of x.

Modes, each in its own subprocess (Keras fixes its backend per process):
TensorFlow (`tf.function`), TensorFlow + XLA (`jit_compile=True`), JAX
(`jax.jit`) and PyTorch (eager); on request also PyTorch with `torch.compile`
(`--modes torch-compile`, minutes of compiling). Sizes: an early MobileNet
feature map (32×56×56×64) and a Transformer-base FFN activation (4096 tokens ×
2048). `--dtype float32,bfloat16` times each dtype (x and the upstream
gradient in that dtype, β in float32 as under mixed precision). `--runs N`
repeats each mode and keeps each cell's lowest median, for a machine that other
work shares. `cold s` is the first forward+backward call of the mode (tracing,
compiling: on PyTorch the op's own Inductor kernels are built on that call).
`faults` counts page faults per forward+backward call: with glibc's default
settings a freed output can go back to the OS, so that a later call faults in
and zeroes fresh pages (milliseconds at these sizes); which row pays depends
on the order of all allocations. `--heap kept` keeps freed memory in the
process (glibc's MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_), which
times the ops alone. On a GPU or TPU each timing sample is 25 calls back to
back and one wait for the device (`--calls-per-sample`): one call there takes
about as long as launching it and waiting for it.

The floor: each worker times a copy-like `x + 1` at the size (read once, write
once) and the fastest one gives the machine's bandwidth; forward then moves at
least 2 tensors' bytes (read x, write f) and forward + backward 5 (and read x,
read the upstream gradient, write dx).

Usage (from the repository root; about 2 minutes on 2 CPU cores, 1 with
`--quick`, 4–7 with `--runs 3`):

    python benchmarks/activation_speed.py
    python benchmarks/activation_speed.py --quick --modes jax,torch
    python benchmarks/activation_speed.py --runs 3
    python benchmarks/activation_speed.py --modes torch --runs 3 --heap kept
    python benchmarks/activation_speed.py --quick --modes jax,torch,torch-compile \
        --dtype float32,bfloat16
"""

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODES = {  # name: (Keras backend, label)
    "tensorflow": ("tensorflow", "TensorFlow (tf.function)"),
    "tensorflow-xla": ("tensorflow", "TensorFlow + XLA"),
    "jax": ("jax", "JAX (jit)"),
    "torch": ("torch", "PyTorch (eager)"),
    "torch-compile": ("torch", "PyTorch (torch.compile)"),  # not in the default run
}
DEFAULT_MODES = ("tensorflow", "tensorflow-xla", "jax", "torch")
SIZES = {  # name: (label, full shape, --quick shape)
    "mobilenet": ("MobileNet feature map", (32, 56, 56, 64), (8, 56, 56, 64)),
    "ffn": ("Transformer FFN activation", (4096, 2048), (1024, 2048)),
}
ROWS = ("relu", "silu", "plain", "swish_beta")
ROW_LABELS = {
    "relu": "relu",
    "silu": "Keras silu",
    "plain": "plain x·σ(βx)",
    "swish_beta": "SwishBeta",
}


# Worker: one backend, one process ----------------------------------------------


def activations():
    """Each row as `fn(x, beta)`, and whether it has a β to differentiate."""
    import keras

    import keras_swish

    return {
        "relu": (lambda x, beta: keras.activations.relu(x), False),
        "silu": (lambda x, beta: keras.activations.silu(x), False),
        "plain": (
            lambda x, beta: x * keras.ops.sigmoid(keras.ops.cast(beta, x.dtype) * x),
            True,
        ),
        "swish_beta": (lambda x, beta: keras_swish.ops.swish(x, beta), True),
    }


def tensorflow_runner(jit_compile):
    import tensorflow as tf

    def build(fn, has_beta):
        @tf.function(jit_compile=jit_compile)
        def forward(x, beta):
            return fn(x, beta)

        @tf.function(jit_compile=jit_compile)
        def forward_backward(x, beta, dy):
            sources = [x, beta] if has_beta else [x]
            with tf.GradientTape() as tape:
                tape.watch(sources)
                y = fn(x, beta)
            return y, tape.gradient(y, sources, output_gradients=dy)

        return forward, forward_backward

    def kept_bytes(fn, has_beta, x, beta):
        """Bytes of the forward tensors that the gradient ops read."""
        found = []

        @tf.function
        def step(x, beta, dy):
            sources = [x, beta] if has_beta else [x]
            with tf.GradientTape() as tape:
                tape.watch(sources)
                y = fn(x, beta)
            graph = tf.compat.v1.get_default_graph()
            n_forward = len(graph.get_operations())
            tape.gradient(y, sources, output_gradients=dy)
            operations = graph.get_operations()
            forward = {t.ref() for op in operations[:n_forward] for t in op.outputs}
            kept = {
                t.ref(): t
                for op in operations[n_forward:]
                for t in op.inputs
                if t.ref() in forward and t is not dy
            }
            found.extend(t.shape.num_elements() * t.dtype.size for t in kept.values())
            return y

        step(x, beta, tf.ones_like(x))
        return sum(found)

    @tf.function(jit_compile=True)
    def copy(x):
        return x + 1.0

    def tensors(shape, seed, dtype="float32"):  # on the GPU where there is one
        tf.random.set_seed(seed)
        return (
            tf.cast(tf.random.normal(shape), dtype),
            tf.random.uniform(shape[-1:], 0.5, 1.5),
            tf.cast(tf.random.normal(shape), dtype),
        )

    on_gpu = bool(tf.config.list_logical_devices("GPU"))  # asked once, not per call

    def sync(out):  # GPU kernels run asynchronously: wait for them
        if on_gpu:
            tf.test.experimental.sync_devices()
        return out

    return build, kept_bytes, copy, tensors, sync


def jax_runner():
    import jax

    def build(fn, has_beta):
        forward = jax.jit(fn)

        @jax.jit
        def forward_backward(x, beta, dy):
            if has_beta:
                y, vjp = jax.vjp(fn, x, beta)
            else:
                y, vjp = jax.vjp(lambda x: fn(x, beta), x)
            return y, vjp(dy)

        return forward, forward_backward

    def kept_bytes(fn, has_beta, x, beta):
        """Bytes of the residuals that `jax.vjp` keeps."""
        if has_beta:
            _, vjp = jax.vjp(fn, x, beta)
        else:
            _, vjp = jax.vjp(lambda x: fn(x, beta), x)
        return sum(r.nbytes for r in jax.tree_util.tree_leaves(vjp))

    copy = jax.jit(lambda x: x + 1.0)

    def tensors(shape, seed, dtype="float32"):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
        return (
            jax.random.normal(k1, shape).astype(dtype),
            jax.random.uniform(k2, shape[-1:], minval=0.5, maxval=1.5),
            jax.random.normal(k3, shape).astype(dtype),
        )

    return build, kept_bytes, copy, tensors, jax.block_until_ready


def torch_runner(compile_fn=False):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def build(fn, has_beta):
        if compile_fn:  # what Keras's jit_compile=True does on this backend
            fn = torch.compile(fn)

        def forward(x, beta):
            with torch.no_grad():
                return fn(x, beta)

        def forward_backward(x, beta, dy):
            sources = [x, beta] if has_beta else [x]
            y = fn(x, beta)
            return y, torch.autograd.grad(y, sources, dy)

        return forward, forward_backward

    def kept_bytes(fn, has_beta, x, beta):
        """Bytes of the distinct storages that autograd's hooks see saved."""
        storages = {}

        def pack(t):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x, beta)
        return sum(storages.values())

    def copy(x, out={}):  # noqa: B006 (the output buffer is reused on purpose)
        key = (tuple(x.shape), x.dtype)
        if key not in out:
            out[key] = torch.empty_like(x)
        with torch.no_grad():
            return torch.add(x, 1.0, out=out[key])

    def tensors(shape, seed, dtype="float32"):
        generator = torch.Generator().manual_seed(seed)
        dtype = getattr(torch, dtype)
        x = torch.randn(shape, generator=generator).to(device, dtype).requires_grad_()
        beta = (torch.rand(shape[-1:], generator=generator) + 0.5).to(device).requires_grad_()
        return x, beta, torch.randn(shape, generator=generator).to(device, dtype)

    def sync(out):
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return build, kept_bytes, copy, tensors, sync


def minor_faults():
    """Page faults so far (memory the OS hands the process, zeroed), or 0."""
    try:
        import resource
    except ImportError:  # Windows has no `resource`
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_calls(calls, sync, rounds, per_round, per_sample=1):
    """Median ms of each call (the calls take turns, so noise hits all alike),
    seconds of each first call (tracing, compiling) and page faults per call.

    A sample is `per_sample` calls back to back and one wait for the device,
    divided by `per_sample`: on a GPU one call of these sizes takes tens of
    microseconds, about what launching it and waiting for it cost, so timing
    calls one by one would time the overhead (on a CPU `per_sample` is 1).
    """
    samples = {name: [] for name in calls}
    faults = dict.fromkeys(calls, 0)
    cold = {}
    for name, call in calls.items():  # compile and warm up
        start = time.perf_counter()
        sync(call())
        cold[name] = time.perf_counter() - start
        sync(call())
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_round):
                before = minor_faults()
                start = time.perf_counter()
                for _ in range(per_sample):
                    out = call()
                sync(out)
                samples[name].append((time.perf_counter() - start) / per_sample)
                faults[name] += minor_faults() - before
    ms = {name: 1e3 * statistics.median(s) for name, s in samples.items()}
    calls_made = rounds * per_round * per_sample
    return ms, cold, {name: n / calls_made for name, n in faults.items()}


def accelerator(mode):
    """The name of the GPU (or TPU) the mode's backend computes on, or None."""
    backend = MODES[mode][0]
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return None if device.platform == "cpu" else device.device_kind
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


# Calls per timing sample on a GPU or TPU (see `time_calls`).
ACCELERATOR_CALLS_PER_SAMPLE = 25


def worker(mode, quick, rounds, per_round, dtype="float32", per_sample=0):
    os.environ["KERAS_BACKEND"] = MODES[mode][0]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, ROOT)
    import keras

    if mode.startswith("tensorflow"):
        runner = tensorflow_runner(jit_compile=mode == "tensorflow-xla")
    elif mode == "jax":
        runner = jax_runner()
    else:
        runner = torch_runner(compile_fn=mode == "torch-compile")
    build, kept_bytes, copy, make_tensors, sync = runner
    device = accelerator(mode)
    if not per_sample:
        per_sample = ACCELERATOR_CALLS_PER_SAMPLE if device else 1
    rows = activations()

    small_x, small_beta, _ = make_tensors((4, 8, 8, 16), seed=0)
    kept = {
        name: kept_bytes(fn, has_beta, small_x, small_beta) / (4 * 8 * 8 * 16)
        for name, (fn, has_beta) in rows.items()
    }
    results = {
        "mode": mode,
        "dtype": dtype,
        "device": device or "CPU",
        "calls_per_sample": per_sample,
        "kept_bytes_per_element": kept,
        "sizes": {},
    }
    for size, (_, full_shape, quick_shape) in SIZES.items():
        shape = quick_shape if quick else full_shape
        x, beta, dy = make_tensors(shape, seed=1, dtype=dtype)
        calls = {"copy": lambda x=x: copy(x)}
        for name, (fn, has_beta) in rows.items():
            forward, forward_backward = build(fn, has_beta)
            calls[f"{name}/fwd"] = lambda f=forward, a=(x, beta): f(*a)
            calls[f"{name}/fb"] = lambda f=forward_backward, a=(x, beta, dy): f(*a)
        ms, cold, faults = time_calls(calls, sync, rounds, per_round, per_sample)
        results["sizes"][size] = {
            "shape": list(shape),
            "ms": ms,
            "cold_s": cold,
            "faults": faults,
        }
    results["version"] = f"keras {keras.__version__}, {backend_version(mode)}"
    print("RESULT " + json.dumps(results), flush=True)


def backend_version(mode):
    if mode.startswith("tensorflow"):
        import tensorflow as tf

        return f"tensorflow {tf.__version__}"
    if mode == "jax":
        import jax

        return f"jax {jax.__version__}"
    import torch

    return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"


# Driver: one subprocess per mode, then the tables ------------------------------


# glibc returns a freed block above these sizes to the OS (and maps the next
# one afresh): each later call then faults in and zeroes its output's pages,
# and which call pays depends on the order of every allocation before it.
# `--heap kept` raises both thresholds so freed memory stays in the process.
KEPT_HEAP = {"MALLOC_TRIM_THRESHOLD_": str(1 << 31), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}


def run_mode(mode, quick, rounds, per_round, dtype="float32", heap="default", per_sample=0):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        mode,
        "--dtype",
        dtype,
        "--rounds",
        str(rounds),
        "--per-round",
        str(per_round),
        "--calls-per-sample",
        str(per_sample),
    ] + (["--quick"] if quick else [])
    env = dict(os.environ, KERAS_BACKEND=MODES[mode][0], TF_CPP_MIN_LOG_LEVEL="2")
    if heap == "kept":
        env.update(KEPT_HEAP)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{mode} failed:\n{done.stdout}\n{done.stderr[-3000:]}")


def lowest_medians(runs):
    """One result whose every timing (and page-fault count) is the lowest
    over `runs`."""
    result = runs[0]
    for other in runs[1:]:
        for size, entry in other["sizes"].items():
            ms = result["sizes"][size]["ms"]
            for name, value in entry["ms"].items():
                ms[name] = min(ms[name], value)
            faults = result["sizes"][size].get("faults", {})
            for name, value in entry.get("faults", {}).items():
                faults[name] = min(faults.get(name, value), value)
    return result


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}


def ms_text(ms, width):
    """`ms` right-aligned in `width` with three significant digits or more
    (a GPU's 0.012 ms must not print as 0.0)."""
    decimals = 1 if ms >= 10 else 2 if ms >= 1 else 3
    return f"{ms:>{width}.{decimals}f}"


def print_tables(results, bandwidth):
    dtypes = list(dict.fromkeys(r.get("dtype", "float32") for r in results))
    for dtype, (size, (label, _, _)) in itertools.product(dtypes, SIZES.items()):
        of_dtype = [r for r in results if r.get("dtype", "float32") == dtype]
        shape = of_dtype[0]["sizes"][size]["shape"]
        n_bytes = ITEMSIZE[dtype] * math.prod(shape)
        floor_fwd = 1e3 * 2 * n_bytes / bandwidth
        floor_fb = 1e3 * 5 * n_bytes / bandwidth
        print(
            f"\n{label}, {'×'.join(map(str, shape))} {dtype} ({n_bytes / 1e6:.1f} MB): "
            f"floor {ms_text(floor_fwd, 0)} ms forward, {ms_text(floor_fb, 0)} ms "
            "forward+backward"
        )
        header = (
            f"{'mode':<25}{'activation':<15}{'fwd ms':>8}{'fwd+bwd ms':>12}"
            f"{'fwd/silu':>10}{'f+b/silu':>10}{'f+b/floor':>11}{'kept B/elem':>13}"
            f"{'cold s':>8}{'faults':>8}"
        )
        print(header)
        print("-" * len(header))
        for result in of_dtype:
            ms = result["sizes"][size]["ms"]
            cold = result["sizes"][size].get("cold_s", {})
            faults = result["sizes"][size].get("faults", {})
            for row in ROWS:
                fwd, fb = ms[f"{row}/fwd"], ms[f"{row}/fb"]
                print(
                    f"{MODES[result['mode']][1]:<25}{ROW_LABELS[row]:<15}"
                    f"{ms_text(fwd, 8)}{ms_text(fb, 12)}"
                    f"{fwd / ms['silu/fwd']:>10.2f}{fb / ms['silu/fb']:>10.2f}"
                    f"{fb / floor_fb:>11.2f}"
                    f"{result['kept_bytes_per_element'][row]:>13.1f}"
                    f"{cold.get(f'{row}/fb', float('nan')):>8.1f}"
                    f"{faults.get(f'{row}/fb', float('nan')):>8.0f}"
                )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller tensors, fewer runs")
    parser.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated, from {', '.join(MODES)} (default: all but "
        "torch-compile, which compiles for minutes)",
    )
    parser.add_argument("--rounds", type=int, help="rounds of timing (default 5, quick 3)")
    parser.add_argument("--per-round", type=int, default=4, help="timing samples per round")
    parser.add_argument(
        "--calls-per-sample",
        type=int,
        default=0,
        help="calls back to back per timing sample, then one wait for the device "
        f"(default: 1 on a CPU, {ACCELERATOR_CALLS_PER_SAMPLE} on a GPU or TPU, where "
        "one call is about as short as launching it)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="run each mode this many times and keep each cell's lowest median "
        "(for a machine shared with other work)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        help="comma-separated dtypes of x and the upstream gradient, from "
        f"{', '.join(ITEMSIZE)} (default float32; β stays float32)",
    )
    parser.add_argument(
        "--heap",
        choices=("default", "kept"),
        default="default",
        help="default: the C library's own settings, as a user runs; kept: "
        "glibc keeps freed memory (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_) "
        "so that no call pays page faults for another's frees",
    )
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    if args.calls_per_sample < 0:
        parser.error(
            f"--calls-per-sample must be 0 (automatic) or more, not {args.calls_per_sample}"
        )
    if args.worker:
        worker(args.worker, args.quick, rounds, args.per_round, args.dtype, args.calls_per_sample)
        return
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if any(d not in ITEMSIZE for d in dtypes):
        parser.error(f"unknown dtypes {dtypes}; choose from {list(ITEMSIZE)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {list(MODES)}")
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = []
    for dtype, mode in itertools.product(dtypes, modes):
        runs = []
        for run in range(args.runs):
            print(f"running {mode} {dtype} ({run + 1}/{args.runs}) ...", file=sys.stderr)
            runs.append(
                run_mode(
                    mode,
                    args.quick,
                    rounds,
                    args.per_round,
                    dtype,
                    args.heap,
                    args.calls_per_sample,
                )
            )
        results.append(lowest_medians(runs))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    # The fastest copy of the larger tensor, over every backend, sets the bandwidth.
    bandwidth = 0.0
    for result in results:
        for size in SIZES:
            entry = result["sizes"][size]
            n_bytes = ITEMSIZE[result.get("dtype", "float32")] * math.prod(entry["shape"])
            bandwidth = max(bandwidth, 2 * n_bytes / (entry["ms"]["copy"] / 1e3))
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; copy bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s (fastest `x + 1`); load average "
        f"{load_before:.2f} before, {load_after:.2f} after"
    )
    for result in results[: len(modes)]:
        device = result.get("device", "CPU")
        print(f"  {MODES[result['mode']][1]}: {result['version']}; on {device}")
    runs = f", lowest of {args.runs} runs" if args.runs > 1 else ""
    per_sample = sorted({r.get("calls_per_sample", 1) for r in results})
    if per_sample == [1]:
        samples = "calls"
    else:
        counts = "/".join(map(str, per_sample))
        samples = f"samples of {counts} calls back to back (ms per call)"
    print(
        f"Medians of {rounds} rounds × {args.per_round} {samples}{runs}; β per "
        "channel; kept B/elem: bytes the backward pass holds per element of x; "
        "cold s: the first forward+backward call (tracing, compiling); faults: "
        "page faults per forward+backward call."
    )
    if args.heap == "kept":
        print("Heap kept: " + ", ".join(f"{k}={v}" for k, v in KEPT_HEAP.items()))
    else:
        print("Heap: the C library's defaults (see --heap).")
    print_tables(results, bandwidth)


if __name__ == "__main__":
    main()
