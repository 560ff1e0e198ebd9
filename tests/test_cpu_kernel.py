"""The C++ CPU kernel (`keras_swish/_cpu_kernel.py`): values and gradients at
sizes that reach its threads, row blocks, tiles and short last row; the same
dβ run after run; its build cache; and the op's other paths when it cannot be
built. The small-size matrix (every dtype and β layout, against NumPy and the
ATen path) is in `tests/test_ops_fused.py`.
"""

import os
import platform
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from keras_swish import _cpu_kernel
from keras_swish import ops as swish_ops
from tests.test_ops import paper_reference
from tests.test_ops_fused import (
    LAYOUTS,
    MATRIX,
    TOLERANCE,
    check_against_reference,
    check_paths_agree,
    make_inputs,
    rounded,
    run_op,
    warned_once,
)

kernel_backends = pytest.mark.all_backends


def only_on(*backends):
    """Runs under these backends only (each in its own process, launched by
    `tests/test_backends.py`: the tests are marked `all_backends`)."""
    reason = " and ".join(backends) + " only"

    def mark(test):
        skip = pytest.mark.skipif(keras.backend.backend() not in backends, reason=reason)
        return kernel_backends(skip(test))

    return mark


# PyTorch and JAX use the kernel; TensorFlow does not.
needs_kernel_backend = only_on("torch", "jax")
torch_only = only_on("torch")
jax_only = only_on("jax")


# (x shape, β shape): more than one block of 256 rows and enough elements for
# two threads; a scalar β (tiled to 64 per row); 5 channels (tiled to 65, a
# short last row); one wide row (FFN-like).
SHAPES = {
    "blocks": ((3, 300, 64), (64,)),
    "scalar": ((70_001,), ()),
    "five_channels": ((20_003, 5), (5,)),
    "wide": ((40, 2048), (2048,)),
}


def inputs(shape, beta_shape, seed):
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal(shape)).astype("float32")
    beta = np.asarray(rng.uniform(-0.5, 2.0, size=beta_shape), "float32")
    dy = rng.standard_normal(shape).astype("float32")
    return x, beta, dy


@pytest.fixture
def kernel_on(monkeypatch):
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    monkeypatch.setattr(swish_ops, "TORCH_COMPILE", False)  # nothing else fast


@needs_kernel_backend
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_kernel_matches_numpy_at_size(name, dtype, kernel_on):
    shape, beta_shape = SHAPES[name]
    x, beta, dy = inputs(shape, beta_shape, seed=len(name))
    got = run_op(x, beta, dy, -1, dtype)
    assert not _cpu_kernel.FAILURES
    view = () if not beta_shape else (1,) * (len(shape) - 1) + beta_shape
    if keras.backend.backend() == "jax":  # taken (PyTorch: the next tests)
        assert _cpu_kernel.jax_supports(dtype, shape, view)
    f, dx, dbeta = paper_reference(rounded(x, dtype), beta, view, rounded(dy, dtype))
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got[0], f, rtol=tol, atol=tol)
    np.testing.assert_allclose(got[1], dx, rtol=tol, atol=tol)
    # dβ sums up to 70,001 terms: float32 sums of 256-row blocks, added in
    # float64 — float32 accuracy relative to the sum of magnitudes.
    _, _, magnitude = paper_reference(rounded(x, dtype), beta, view, np.abs(rounded(dy, dtype)))
    np.testing.assert_allclose(got[2], dbeta, rtol=0, atol=2e-6 * np.abs(magnitude).max())


@needs_kernel_backend
def test_kernel_is_deterministic(kernel_on):
    """The same dβ, to the bit, for the same input: run after run and, on
    PyTorch (whose thread count a user sets), for 1, 2 or 3 threads (dβ is
    summed per block of rows, blocks in order)."""
    x, beta, dy = inputs(*SHAPES["blocks"], seed=7)
    first = run_op(x, beta, dy, -1, "float32")
    runs = [run_op(x, beta, dy, -1, "float32") for _ in range(2)]
    if keras.backend.backend() == "torch":
        import torch

        threads = torch.get_num_threads()
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                runs.append(run_op(x, beta, dy, -1, "float32"))
        finally:
            torch.set_num_threads(threads)
    for again in runs:
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, b)


@torch_only
def test_bfloat16_results_are_float32_results_rounded_once(kernel_on):
    """bfloat16 f and dx are the kernel's own float32 results (the same
    values given as float32) rounded to nearest even, bit for bit — also
    where a result is subnormal (|v| < 2^-126), which the CPU's bfloat16
    conversion instruction, where the kernel uses it, would flush to 0 —
    and NaN stays NaN. Vectors of 16 with no subnormal lane, with one, and
    all subnormal; rows of 64 channels (whole vectors) and a short tail."""
    import torch

    lib = _cpu_kernel.library("plain")
    assert lib is not None and "bfloat16" in lib.dtypes, _cpu_kernel.FAILURES
    rng = np.random.default_rng(3)
    x = 3.0 * rng.standard_normal((40, 64))
    dy = rng.standard_normal((40, 64))
    tiny = np.float32(2.0**-126)  # the smallest normal float32
    x[0:4] = tiny * rng.uniform(-0.99, 0.99, (4, 64))  # whole rows subnormal
    x[4:8, 5] = tiny * rng.uniform(0.01, 3.0, 4)  # one lane in a vector
    dy[0:2] = tiny * rng.uniform(-0.5, 0.5, (2, 64))  # whole rows of dx too
    dy[8:12, 17] = tiny * rng.uniform(0.01, 0.5, 4)  # dx alone subnormal
    x[12, 0] = -tiny  # f subnormal, x normal
    x[12, 16:21] = [np.nan, np.inf, -np.inf, 0.0, -0.0]  # a vector with no subnormal
    beta = torch.tensor(rng.uniform(-0.5, 2.0, 64), dtype=torch.float32)

    def bf16(a):  # rounded to bfloat16: the float32 calls see the same values
        return torch.tensor(a, dtype=torch.float32).to(torch.bfloat16)

    cases = {  # β per channel (rows of 64); a scalar β and a short last row
        "per_channel": (bf16(x), beta, bf16(dy)),
        "scalar_short_row": (
            bf16(x).reshape(-1)[:-7],
            beta[0].clone().reshape(()),
            bf16(dy).reshape(-1)[:-7],
        ),
    }
    for name, (xb, b, dyb) in cases.items():
        want_f = _cpu_kernel.torch_forward(lib, xb.float(), b)
        want_dx, _ = _cpu_kernel.torch_backward(lib, xb.float(), b, dyb.float())
        got_f = _cpu_kernel.torch_forward(lib, xb, b)
        got_dx, _ = _cpu_kernel.torch_backward(lib, xb, b, dyb)
        for got, want in ((got_f, want_f), (got_dx, want_dx)):
            nan = torch.isnan(want)
            assert torch.equal(torch.isnan(got), nan)
            assert ((want.abs() < tiny) & (want != 0)).sum() >= 16  # subnormals met
            np.testing.assert_array_equal(
                got[~nan].view(torch.int16).numpy(),
                want[~nan].to(torch.bfloat16).view(torch.int16).numpy(),
                err_msg=name,
            )


@torch_only
def test_kernel_is_the_path_taken(kernel_on, monkeypatch):
    """PyTorch: forward and backward each call the library once where it
    applies, and never where it is switched off (JAX: see its FFI tests)."""
    lib = _cpu_kernel.library("plain")
    assert lib is not None, _cpu_kernel.FAILURES
    calls = []

    class Spy:
        def __getattr__(self, name):
            attr = getattr(lib, name)
            if name in ("ks_forward", "ks_backward"):
                return lambda *args: (calls.append(name), attr(*args))[1]
            return attr

    monkeypatch.setitem(_cpu_kernel._LIBRARIES, "plain", Spy())
    x, beta, dy = inputs(*SHAPES["blocks"], seed=1)
    run_op(x, beta, dy, -1, "float32")
    assert calls == ["ks_forward", "ks_backward"]
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    run_op(x, beta, dy, -1, "float32")
    assert calls == ["ks_forward", "ks_backward"]


@needs_kernel_backend
def test_no_compiler_warns_once_and_falls_back(tmp_path, monkeypatch):
    """A failed build: one warning, then the op's other paths, same values."""
    x, beta, dy = inputs(*SHAPES["five_channels"], seed=3)
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    monkeypatch.setattr(swish_ops, "TORCH_COMPILE", False)
    reference = run_op(x, beta, dy, -1, "float32")
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    monkeypatch.setenv("KERAS_SWISH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(_cpu_kernel, "_LIBRARIES", {})
    monkeypatch.setattr(_cpu_kernel, "_JAX_TARGETS", [])
    monkeypatch.setattr(_cpu_kernel, "FAILURES", [])
    got, again = warned_once(
        "could not build the fused CPU kernel", lambda: run_op(x, beta, dy, -1, "float32")
    )
    assert "no-such-compiler" in _cpu_kernel.FAILURES[0]
    for a, b, c in zip(reference, got, again, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * np.abs(a).max())
        np.testing.assert_array_equal(b, c)
    assert not any(p.name.endswith(".so") for p in tmp_path.rglob("*"))


@torch_only
def test_torch_compile_as_the_first_call_has_no_graph_break():
    """A fresh process whose first call of the op is inside torch.compile
    (a model compiled before it ever ran eagerly): one graph — the op's
    autograd Function and custom op are made at import, not traced (their
    registration would be a graph break left in every later call); with
    fullgraph=True a break is an error. Values and gradients as the formula."""
    script = (
        "import torch\n"
        "from keras_swish import ops\n"
        "torch.manual_seed(0)\n"
        "x = torch.randn(8, 64, requires_grad=True)\n"
        "b = (torch.rand(64) + 0.5).requires_grad_()\n"
        "f = torch.compile(lambda x, b: ops.swish(x, b), fullgraph=True)\n"
        "for _ in range(2):\n"
        "    y = f(x, b)\n"
        "    dx, db = torch.autograd.grad(y, [x, b], torch.ones_like(y))\n"
        "z = b.detach() * x.detach()\n"
        "s = torch.sigmoid(z)\n"
        "want = (x.detach() * s, s + z * s * (1 - s), (x.detach() ** 2 * s * (1 - s)).sum(0))\n"
        "for got, w in zip((y, dx, db), want):\n"
        "    torch.testing.assert_close(got.detach(), w, rtol=1e-5, atol=1e-5)\n"
        "c = torch._dynamo.utils.counters\n"
        "print(dict(c['graph_break']), c['stats']['unique_graphs'])\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2] == "{} 1", out.stdout


def test_build_is_cached_and_reused_by_a_fresh_process(tmp_path, monkeypatch):
    """Built once into the cache (no temporary file left); a second process
    with the same compiler loads that file without compiling."""
    monkeypatch.setenv("KERAS_SWISH_CACHE_DIR", str(tmp_path))
    path = _cpu_kernel._build("plain")
    assert path.startswith(str(tmp_path)) and os.path.isfile(path)
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []
    built = os.stat(path).st_mtime_ns
    script = (
        "import subprocess, sys\n"
        "from keras_swish import _cpu_kernel as k\n"
        "real = subprocess.run\n"
        "def run(cmd, *a, **kw):\n"
        "    assert '--version' in cmd, cmd  # no compile\n"
        "    return real(cmd, *a, **kw)\n"
        "subprocess.run = run\n"
        "lib = k.library('plain')\n"
        "print(lib._name, lib.ks_has_openmp())\n"
    )
    env = {**os.environ, "KERAS_SWISH_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[0] == path
    assert os.stat(path).st_mtime_ns == built


@pytest.mark.parametrize("name", ["KERAS_SWISH_CPU_KERNEL", "KERAS_SWISH_TORCH_COMPILE"])
@pytest.mark.parametrize(
    "value, expected",
    [("0", False), ("off", False), ("False", False), ("no", False), ("1", True), ("", True)],
)
def test_env_vars_switch_paths_off(name, value, expected, monkeypatch):
    """KERAS_SWISH_CPU_KERNEL and KERAS_SWISH_TORCH_COMPILE, read once at
    import into ops.CPU_KERNEL and ops.TORCH_COMPILE."""
    monkeypatch.setenv(name, value)
    assert _cpu_kernel.env_switch(name) is expected
    monkeypatch.delenv(name)
    assert _cpu_kernel.env_switch(name) is True


def jax_vjp_fn():
    import jax

    def fn(x, beta, dy):
        y, vjp = jax.vjp(lambda x, b: swish_ops.swish(x, b), x, beta)
        return (y, *vjp(dy))

    return jax.jit(fn)


@jax_only
def test_jax_compiled_code_calls_the_kernel(monkeypatch):
    """The jitted forward+backward calls the backward FFI target on CPU (the
    forward is XLA's loop), and only XLA's own loops where the kernel is off."""
    import jax.numpy as jnp

    x, beta, dy = (jnp.asarray(a) for a in inputs(*SHAPES["blocks"], seed=5))
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    hlo = jax_vjp_fn().lower(x, beta, dy).as_text()
    assert hlo.count("keras_swish_backward") == 1 and "keras_swish_forward" not in hlo
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    hlo = jax_vjp_fn().lower(x, beta, dy).as_text()
    assert "keras_swish_" not in hlo


@jax_only
def test_jax_kernel_second_order_and_vmap_match_xla(monkeypatch):
    """What XLA's formulas allow, the kernel path allows too, with the same
    numbers: a gradient of the gradient (a penalty on dβ) and per-example
    gradients under jax.vmap."""
    import jax
    import jax.numpy as jnp

    x, beta, dy = (jnp.asarray(a) for a in inputs((6, 40, 8), (8,), seed=6))

    def penalty(x, beta):
        _, vjp = jax.vjp(lambda x, b: swish_ops.swish(x, b), x, beta)
        dx, dbeta = vjp(dy)
        return jnp.sum(dbeta**2) + jnp.sum(dx**2)

    def per_example(x, dy):  # a gradient per example: the backward under vmap
        _, vjp = jax.vjp(lambda x, b: swish_ops.swish(x, b), x, beta)
        return vjp(dy)

    def both():
        second = jax.jit(jax.grad(penalty, argnums=(0, 1)))(x, beta)
        mapped = jax.jit(jax.vmap(per_example))(x, dy)
        return (*second, *mapped)

    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    got = both()
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    want = both()
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g, "float64"), np.asarray(w, "float64")
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max())


@jax_only
@pytest.mark.parametrize("layout, dtype", MATRIX)
def test_jax_kernel_matches_xla_path(layout, dtype, monkeypatch):
    """Every dtype and β layout: the kernel (where the layout allows it)
    against XLA's formulas, both against NumPy."""
    x, beta, dy = make_inputs(layout, dtype, seed=1)
    axis = LAYOUTS[layout][2]
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    kernel = run_op(x, beta, dy, axis, dtype)
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    xla = run_op(x, beta, dy, axis, dtype)
    check_against_reference(layout, dtype, kernel, seed=1)
    check_paths_agree(layout, dtype, kernel, xla, seed=1)


@jax_only
def test_jax_model_with_the_kernel_exports(tmp_path, monkeypatch):
    """Keras's `model.export` on JAX (jax2tf, symbolic batch size) works with
    the kernel on (the forward stays XLA's loop: a custom call would not
    serialize) and serves what `predict` gives."""
    import tensorflow as tf

    from keras_swish import SwishBeta

    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    model = keras.Sequential([keras.Input((300, 64)), keras.layers.Dense(64), SwishBeta()])
    x = np.random.default_rng(0).random((4, 300, 64)).astype("float32")
    model.export(str(tmp_path / "exported"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "exported"))  # kept: it owns the variables
    served = loaded.serve(x).numpy()
    np.testing.assert_allclose(served, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


@torch_only
@pytest.mark.slow
def test_torch_compile_calls_the_kernel_op(monkeypatch):
    """A model's forward under torch.compile (what Keras's jit_compile=True
    does; the backward then runs the graph AOTAutograd traced with it): the
    backward calls the kernel's custom op — never the eager ctypes path — with
    the eager op's numbers; with the kernel off, Inductor's formulas."""
    import torch

    x, beta, dy = inputs(*SHAPES["blocks"], seed=8)
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    eager = run_op(x, beta, dy, -1, "float32")
    kernel_calls, eager_path = [], []
    original = _cpu_kernel.torch_backward
    monkeypatch.setattr(
        _cpu_kernel, "torch_backward", lambda *a: (kernel_calls.append(1), original(*a))[1]
    )
    cpu_kernel = swish_ops._torch_cpu_kernel
    monkeypatch.setattr(
        swish_ops,
        "_torch_cpu_kernel",
        lambda *a: (lambda lib: (lib is not None and eager_path.append(1), lib)[1])(cpu_kernel(*a)),
    )

    def compiled_run():
        torch._dynamo.reset()
        xt, bt = torch.tensor(x, requires_grad=True), torch.tensor(beta, requires_grad=True)
        # fullgraph: no graph break, so the op runs inside the compiled graph.
        y = torch.compile(lambda x, b: swish_ops.swish(x, b), fullgraph=True)(xt, bt)
        out = (y, *torch.autograd.grad(y, [xt, bt], torch.tensor(dy)))
        return [t.detach().double().numpy() for t in out]

    got = compiled_run()
    assert kernel_calls == [1] and eager_path == []
    for g, e in zip(got, eager, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6 * np.abs(e).max())
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    formulas = compiled_run()
    assert kernel_calls == [1] and eager_path == []
    for g, e in zip(formulas, eager, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


@torch_only
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_kernel_op_registration_and_fallback(dtype, monkeypatch):
    """The custom op passes PyTorch's own checks (schema, fake tensor,
    autograd registration), and runs the formulas where the library cannot
    be built, with the same numbers."""
    import torch

    op = swish_ops._torch_backward_op()
    x, beta, dy = inputs((4, 70, 8), (8,), seed=9)
    args = (
        torch.tensor(x).to(getattr(torch, dtype)),
        torch.tensor(beta).reshape(1, 1, 8),
        torch.tensor(dy).to(getattr(torch, dtype)),
    )
    torch.library.opcheck(op, args)
    # x seen through a permutation (not contiguous): dx comes back contiguous.
    permuted = torch.tensor(x.transpose(2, 1, 0).copy()).to(args[0].dtype).permute(2, 1, 0)
    assert not permuted.is_contiguous()
    torch.library.opcheck(op, (permuted, *args[1:]))
    np.testing.assert_array_equal(op(permuted, *args[1:])[0].float(), op(*args)[0].float())
    kernel = op(*args)
    monkeypatch.setitem(_cpu_kernel._LIBRARIES, "plain", None)
    formulas = op(*args)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(formulas[0].float(), kernel[0].float(), rtol=tol, atol=tol)
    scale = float(formulas[1].abs().max())
    np.testing.assert_allclose(formulas[1], kernel[1], rtol=1e-5, atol=1e-5 * scale)
    assert kernel[1].dtype == formulas[1].dtype == torch.float32
    assert kernel[1].shape == formulas[1].shape == (1, 1, 8)


@torch_only
def test_torch_kernel_op_takes_cpu_tensors_only():
    """The custom op has a CPU kernel and no device-generic one, so a CUDA
    tensor can never reach the C++ kernel's raw pointers (no GPU here: the
    dispatcher's registrations are checked, through PyTorch's private
    `_dispatch_has_kernel_for_dispatch_key`); meta tensors get shapes."""
    import torch

    op = swish_ops._torch_backward_op()
    name = "keras_swish::swish_backward_cpu"
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    assert has_kernel(name, "CPU")
    assert not has_kernel(name, "CompositeExplicitAutograd")
    assert not has_kernel(name, "CUDA")
    x = torch.empty(6, 64, device="meta")
    dx, dbeta = op(x, torch.empty(1, 64, device="meta"), torch.empty_like(x))
    assert (dx.device.type, tuple(dx.shape)) == ("meta", (6, 64))
    assert (tuple(dbeta.shape), dbeta.dtype) == ((1, 64), torch.float32)


@torch_only
@pytest.mark.parametrize("path", ["kernel", "compiled", "aten"])
def test_torch_gradient_of_the_gradient(path, monkeypatch):
    """create_graph=True (a penalty on dx and dβ): every path gives the
    second-order gradients of x·σ(βx) differentiated by autograd in float64
    (the kernels have no graph, so the formulas run there)."""
    import torch

    monkeypatch.setattr(swish_ops, "TORCH_COMPILE_MIN_SIZE", 0)
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", path == "kernel")
    monkeypatch.setattr(swish_ops, "TORCH_COMPILE", path == "compiled")
    x0, b0, dy0 = (torch.tensor(a) for a in inputs((6, 40, 8), (8,), seed=10))

    def second_order(fn, dtype):
        x = x0.to(dtype).requires_grad_()
        b = b0.to(dtype).requires_grad_()
        dx, dbeta = torch.autograd.grad(fn(x, b), [x, b], dy0.to(dtype), create_graph=True)
        return torch.autograd.grad((dx**2).sum() + (dbeta**2).sum(), [x, b])

    got = second_order(swish_ops.swish, torch.float32)
    want = second_order(lambda x, b: x * torch.sigmoid(b * x), torch.float64)
    for g, w in zip(got, want, strict=True):
        w = w.numpy()
        np.testing.assert_allclose(g.double().numpy(), w, rtol=1e-5, atol=1e-5 * np.abs(w).max())


def _x86_cpu_flags():
    """The CPU's feature flags on x86-64 (what `-march=native` sees), else []."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    return _cpu_kernel._cpu_features().split()


def fresh_build(flag_sets, tmp_path, monkeypatch):
    """The kernel library built anew, with these flag sets, into an empty
    cache, and the op switched to it (nothing else fast)."""
    monkeypatch.setattr(_cpu_kernel, "_flag_sets", flag_sets)
    monkeypatch.setenv("KERAS_SWISH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_cpu_kernel, "_LIBRARIES", {})
    monkeypatch.setattr(_cpu_kernel, "FAILURES", [])
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    monkeypatch.setattr(swish_ops, "TORCH_COMPILE", False)
    return _cpu_kernel.library("plain")


# Builds for other targets than this CPU's best: the baseline (SSE2 on
# x86-64: no FMA, no float16) and AVX2 (the vector selects written as
# compares, not AVX-512 min/max; float16 through F16C).
TARGETS = {"baseline": [], "avx2": ["-mavx2", "-mfma", "-mf16c"]}


@torch_only
@pytest.mark.parametrize("target", list(TARGETS))
def test_kernel_built_for_another_target_matches_numpy(target, tmp_path, monkeypatch):
    if target != "baseline" and not {"avx2", "fma", "f16c"} <= set(_x86_cpu_flags()):
        pytest.skip("needs an x86-64 CPU with AVX2, FMA and F16C")
    best = next(_cpu_kernel._flag_sets("plain"))
    flags = [f for f in best if f != "-march=native"] + TARGETS[target]
    lib = fresh_build(lambda flavour: iter([flags]), tmp_path, monkeypatch)
    assert lib is not None, _cpu_kernel.FAILURES
    if _x86_cpu_flags():  # x86-64: float16 exactly where F16C converts it
        assert ("float16" in lib.dtypes) == ("-mf16c" in flags)
    for name, (shape, beta_shape) in SHAPES.items():
        x, beta, dy = inputs(shape, beta_shape, seed=len(name))
        x.reshape(-1)[:4] = [100.0, -100.0, 30.0, -30.0]  # both exp tails
        view = () if not beta_shape else (1,) * (len(shape) - 1) + beta_shape
        for dtype in sorted(lib.dtypes):
            got = run_op(x, beta, dy, -1, dtype)
            xr, dyr = rounded(x, dtype), rounded(dy, dtype)
            f, dx, dbeta = paper_reference(xr, beta, view, dyr)
            _, _, magnitude = paper_reference(xr, beta, view, np.abs(dyr))
            tol = TOLERANCE[dtype]
            np.testing.assert_allclose(got[0], f, rtol=tol, atol=tol)
            np.testing.assert_allclose(got[1], dx, rtol=tol, atol=tol)
            np.testing.assert_allclose(got[2], dbeta, rtol=0, atol=2e-6 * np.abs(magnitude).max())


@torch_only
def test_native_build_takes_float16_where_the_cpu_converts_it():
    """x86-64 with F16C: the kernel's own build takes float16 (without it
    float16 would take the slower paths)."""
    if "f16c" not in _x86_cpu_flags():
        pytest.skip("needs an x86-64 CPU with F16C")
    lib = _cpu_kernel.library("plain")
    assert lib is not None and "float16" in lib.dtypes


@torch_only
def test_torch_build_without_float16_falls_back_for_float16(tmp_path, monkeypatch):
    """A build without float16 (no F16C on x86-64, or no _Float16): it still
    works, takes float32 and bfloat16, and float16 inputs take the other
    paths, silently and with the right numbers."""
    original = _cpu_kernel._flag_sets
    lib = fresh_build(
        lambda f: (s + ["-DKS_NO_FLOAT16"] for s in original(f)), tmp_path, monkeypatch
    )
    assert lib.dtypes == {"float32", "bfloat16"}
    calls = []
    monkeypatch.setattr(lib, "ks_backward", lambda *a: calls.append(a[0]) or 0)
    x, beta, dy = inputs((4, 70, 8), (8,), seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = run_op(x, beta, dy, -1, "float16")
    assert calls == []
    f, dx, dbeta = paper_reference(rounded(x, "float16"), beta, (1, 1, 8), rounded(dy, "float16"))
    np.testing.assert_allclose(got[0], f, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(got[1], dx, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(got[2], dbeta, rtol=1e-5, atol=1e-5 * np.abs(dbeta).max())


@jax_only
def test_jax_export_of_a_gradient_with_symbolic_shapes(monkeypatch):
    """`jax.export` of a gradient with a symbolic batch size uses XLA's
    formulas (a custom call would not serialize), with the kernel's numbers."""
    import jax
    import jax.numpy as jnp

    monkeypatch.setattr(swish_ops, "CPU_KERNEL", True)
    x, beta, dy = (jnp.asarray(a) for a in inputs((5, 300, 64), (64,), seed=12))

    def grads(x, beta, dy):
        _, vjp = jax.vjp(lambda x, b: swish_ops.swish(x, b), x, beta)
        return vjp(dy)

    batch = jax.export.symbolic_shape("b, 300, 64")
    specs = (
        jax.ShapeDtypeStruct(batch, jnp.float32),
        jax.ShapeDtypeStruct((64,), jnp.float32),
        jax.ShapeDtypeStruct(batch, jnp.float32),
    )
    exported = jax.export.export(jax.jit(grads))(*specs)
    assert "keras_swish_backward" not in exported.mlir_module()
    restored = jax.export.deserialize(exported.serialize())
    for got, want in zip(restored.call(x, beta, dy), jax.jit(grads)(x, beta, dy), strict=True):
        want = np.asarray(want)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
