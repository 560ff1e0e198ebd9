"""The op's per-backend fast paths against NumPy and against the ATen/plain path.

On PyTorch the op runs Inductor-compiled kernels (`torch.compile`, built on
first use) for tensors of at least `TORCH_COMPILE_MIN_SIZE` elements and the
eager ATen kernels otherwise, or when compiling is switched off or failed.
These tests lower the threshold to 0 so that small tensors take the compiled
path, and check values and gradients (dx, dβ) of every path in float32,
float16 and bfloat16 for a scalar, a per-channel and a shared-axes β: against
the paper's formulas in float64 (NumPy) and against the ATen path. Each new
dtype and β layout compiles once (seconds); the full matrix is `slow`.

On TensorFlow and JAX the same checks run the op as it is (one path each),
so that every backend is held to the same 16-bit tolerances.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_swish import _cpu_kernel
from keras_swish import ops as swish_ops
from tests.test_ops import paper_reference

all_backends = pytest.mark.all_backends


def torch_only(test):
    """PyTorch's own paths: skipped elsewhere, run by `tests/test_backends.py`
    in its PyTorch process (marked `all_backends` for that)."""
    skip = pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch only")
    return all_backends(skip(test))


# (x shape, beta shape, axis, beta's shape once lined up with x)
LAYOUTS = {
    "scalar": ((4, 5, 6), (), -1, ()),
    "per_channel": ((3, 4, 5, 6), (6,), -1, (1, 1, 1, 6)),
    "shared_axes": ((3, 4, 5, 6), (4, 1, 6), -1, (1, 4, 1, 6)),
    # One β per channel, rows (all but the last axis) not a multiple of the
    # PyTorch backward's groups of 4: one row left over, and three.
    "per_channel_one_left": ((3, 7, 6), (6,), -1, (1, 1, 6)),
    "per_channel_rows_left": ((11, 6), (6,), -1, (1, 6)),
}
DTYPES = ("float32", "float16", "bfloat16")
# 16-bit: x and dy are rounded to the dtype (the reference gets the rounded
# values), the op computes in float32 and rounds f and dx once more.
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}

# Quick: every dtype per channel, every layout in float32. The rest is slow.
QUICK = {("per_channel", d) for d in DTYPES} | {(layout, "float32") for layout in LAYOUTS}
MATRIX = [
    pytest.param(layout, dtype, marks=() if (layout, dtype) in QUICK else pytest.mark.slow)
    for layout in LAYOUTS
    for dtype in DTYPES
]


def make_inputs(layout, dtype, seed=0):
    x_shape, beta_shape, _, _ = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal(x_shape)).astype("float32")
    beta = np.asarray(rng.uniform(-0.5, 2.0, size=beta_shape), "float32")
    dy = rng.standard_normal(x_shape).astype("float32")
    return x, beta, dy


def run_op(x, beta, dy, axis, dtype):
    """f, dx and dβ as float64 NumPy arrays; x and dy in `dtype`, β float32."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        xt = torch.tensor(x).to(getattr(torch, dtype)).requires_grad_()
        bt = torch.tensor(beta).requires_grad_()
        y = swish_ops.swish(xt, bt, axis=axis)
        dx, dbeta = torch.autograd.grad(y, [xt, bt], torch.tensor(dy).to(y.dtype))
        assert y.dtype == xt.dtype and dx.dtype == xt.dtype and dbeta.dtype == bt.dtype
        out = (y, dx, dbeta)
        return [t.detach().float().numpy().astype("float64") for t in out]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(x).astype(dtype)
        y, vjp = jax.vjp(lambda x, b: swish_ops.swish(x, b, axis=axis), xj, jnp.asarray(beta))
        dx, dbeta = vjp(jnp.asarray(dy).astype(dtype))
        assert y.dtype == xj.dtype and dx.dtype == xj.dtype and dbeta.dtype == jnp.float32
        return [np.asarray(t.astype("float32"), "float64") for t in (y, dx, dbeta)]
    import tensorflow as tf

    xt = tf.cast(tf.constant(x), dtype)
    bt = tf.constant(beta)
    with tf.GradientTape() as tape:
        tape.watch([xt, bt])
        y = swish_ops.swish(xt, bt, axis=axis)
    dx, dbeta = tape.gradient(y, [xt, bt], output_gradients=tf.cast(tf.constant(dy), dtype))
    return [tf.cast(t, "float64").numpy() for t in (y, dx, dbeta)]


def rounded(a, dtype):
    """`a` rounded to `dtype` and back, as the op sees it."""
    return keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(a, dtype), "float32")).astype(
        "float64"
    )


def check_against_reference(layout, dtype, got, seed=0):
    x, beta, dy = make_inputs(layout, dtype, seed)
    _, _, _, view_shape = LAYOUTS[layout]
    xr, dyr = rounded(x, dtype), rounded(dy, dtype)
    f, dx, dbeta = paper_reference(xr, beta, view_shape, dyr)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got[0], f, rtol=tol, atol=tol)
    np.testing.assert_allclose(got[1], dx, rtol=tol, atol=tol)
    # dβ is summed in float32 from the rounded inputs: float32 accuracy.
    scale = np.abs(dbeta).max()
    np.testing.assert_allclose(got[2], dbeta, rtol=1e-5, atol=1e-5 * scale)


TORCH_PATHS = ("kernel", "compiled", "aten")


@pytest.fixture
def torch_paths(monkeypatch):
    """Chooses the PyTorch path, also for small tensors: "kernel" (the C++
    CPU kernel, where β's layout allows; else as "compiled"), "compiled"
    (Inductor) or "aten" (the eager fallback)."""
    monkeypatch.setattr(swish_ops, "TORCH_COMPILE_MIN_SIZE", 0)

    def use(path):
        assert path in TORCH_PATHS, path
        monkeypatch.setattr(swish_ops, "CPU_KERNEL", path == "kernel")
        monkeypatch.setattr(swish_ops, "TORCH_COMPILE", path != "aten")

    return use


@all_backends
@pytest.mark.parametrize("layout, dtype", MATRIX)
def test_matches_numpy_reference(layout, dtype, request):
    if keras.backend.backend() == "torch":
        request.getfixturevalue("torch_paths")("kernel")
    x, beta, dy = make_inputs(layout, dtype)
    got = run_op(x, beta, dy, LAYOUTS[layout][2], dtype)
    check_against_reference(layout, dtype, got)


@torch_only
@pytest.mark.parametrize("path", ["kernel", "compiled"])
@pytest.mark.parametrize("layout, dtype", MATRIX)
def test_torch_fast_paths_match_aten_path(layout, dtype, path, torch_paths):
    x, beta, dy = make_inputs(layout, dtype, seed=1)
    axis = LAYOUTS[layout][2]
    torch_paths(path)
    compiled = run_op(x, beta, dy, axis, dtype)
    assert not swish_ops._TORCH_COMPILE_FAILED
    assert not _cpu_kernel.FAILURES
    torch_paths("aten")
    aten = run_op(x, beta, dy, axis, dtype)
    check_paths_agree(layout, dtype, compiled, aten, seed=1)


def check_paths_agree(layout, dtype, fast, fallback, seed):
    """The fallback path against NumPy, and a fast path against it: the same
    rounding of f and dx up to one step of the dtype; dβ in float32."""
    check_against_reference(layout, dtype, fallback, seed=seed)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(fast[0], fallback[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(fast[1], fallback[1], rtol=tol, atol=tol)
    scale = np.abs(fallback[2]).max()
    np.testing.assert_allclose(fast[2], fallback[2], rtol=1e-5, atol=1e-5 * scale)


@torch_only
def test_torch_paths_are_taken(torch_paths, monkeypatch):
    """The compiled kernels run when enabled, and never when switched off."""
    calls = []
    original = swish_ops._torch_compiled_call

    def spy(which, *args):
        calls.append(which)
        return original(which, *args)

    monkeypatch.setattr(swish_ops, "_torch_compiled_call", spy)
    x, beta, dy = make_inputs("per_channel", "float32", seed=2)
    torch_paths("aten")
    run_op(x, beta, dy, -1, "float32")
    assert calls == []
    torch_paths("kernel")  # the CPU kernel first where it applies
    run_op(x, beta, dy, -1, "float32")
    assert calls == []
    torch_paths("compiled")
    run_op(x, beta, dy, -1, "float32")
    assert calls == [0, 1]  # forward, backward


def warned_once(match, run):
    """`run()` twice: a RuntimeWarning matching `match` on the first call,
    none on the second; both results."""
    with pytest.warns(RuntimeWarning, match=match):
        first = run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = run()
    return first, second


@torch_only
def test_torch_falls_back_once_when_compiling_fails(torch_paths, monkeypatch):
    """No compiler: one warning, then the ATen path with the same results."""

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    x, beta, dy = make_inputs("per_channel", "float32", seed=3)
    torch_paths("aten")
    aten = run_op(x, beta, dy, -1, "float32")
    torch_paths("compiled")
    monkeypatch.setattr(swish_ops, "_TORCH_COMPILE_FAILED", {})
    monkeypatch.setattr(swish_ops, "_torch_kernel", lambda *a: broken)
    got, again = warned_once("falling back to ATen", lambda: run_op(x, beta, dy, -1, "float32"))
    assert list(swish_ops._TORCH_COMPILE_FAILED) == ["cpu"]
    assert "no C++ compiler" in swish_ops._TORCH_COMPILE_FAILED["cpu"]
    for a, b, c in zip(aten, got, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # Another device type still compiles (a GPU here, were there one).
    import torch

    size = swish_ops.TORCH_COMPILE_MIN_SIZE
    assert not swish_ops._torch_use_compiled(torch.empty(size))
    assert swish_ops._torch_use_compiled(torch.empty(size, device="meta"))


@torch_only
def test_torch_small_tensors_take_aten_path(monkeypatch):
    calls = []
    monkeypatch.setattr(swish_ops, "TORCH_COMPILE", True)
    monkeypatch.setattr(swish_ops, "CPU_KERNEL", False)
    monkeypatch.setattr(swish_ops, "_torch_compiled_call", lambda *a: calls.append(a))
    x, beta, dy = make_inputs("per_channel", "float32")
    assert x.size < swish_ops.TORCH_COMPILE_MIN_SIZE
    run_op(x, beta, dy, -1, "float32")
    assert calls == []


@torch_only
@pytest.mark.slow
def test_torch_inside_torch_compile(torch_paths):
    """Under an outer torch.compile: the forward's formula traced into the
    graph, the backward the kernel's custom op (see tests/test_cpu_kernel.py)."""
    import torch

    torch_paths("kernel")
    x, beta, dy = make_inputs("per_channel", "float32", seed=4)

    def step(x, beta, dy):
        y = swish_ops.swish(x, beta)
        return (y, *torch.autograd.grad(y, [x, beta], dy))

    xt = torch.tensor(x, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    got = torch.compile(step)(xt, bt, torch.tensor(dy))
    got = [t.detach().double().numpy() for t in got]
    check_against_reference("per_channel", "float32", got, seed=4)


@torch_only
@pytest.mark.parametrize("path", ["kernel", "compiled"])
@pytest.mark.parametrize(
    "dtype", ["float32", pytest.param("float16", marks=pytest.mark.slow), "bfloat16"]
)
def test_torch_fast_paths_stable_for_large_beta_times_x(dtype, path, torch_paths):
    """|βx| beyond exp's and float32's range on the fast paths too."""
    from tests.test_ops import check_stable

    torch_paths(path)
    check_stable(dtype, traced=False)
    assert not swish_ops._TORCH_COMPILE_FAILED


@torch_only
@pytest.mark.slow
def test_torch_many_shapes_stay_compiled(torch_paths):
    """Each kind of input (rank, β layout, rows left over from the backward's
    groups of 4) has its own compiled copy: sizes 1, few rows and every
    remainder recompile within a kind, never up to Dynamo's limit (which would
    fail here, and fall back with a warning in use)."""
    import torch

    torch_paths("compiled")
    shapes = [(2, 3), (1, 6), (3, 6), (4, 6), (8, 6), (12, 5), (16, 6), (5, 6), (9, 7)]
    shapes += [(13, 3), (17, 6), (6, 6), (11, 6), (15, 2), (3, 1, 6), (2, 5, 6), (7, 3, 6)]
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            for i, shape in enumerate(shapes):
                rng = np.random.default_rng(i)
                x = (3.0 * rng.standard_normal(shape)).astype("float32")
                dy = rng.standard_normal(shape).astype("float32")
                beta = rng.uniform(-0.5, 2.0, size=shape[-1]).astype("float32")
                got = run_op(x, beta, dy, -1, "float32")
                view = (1,) * (len(shape) - 1) + (shape[-1],)
                f, dx, dbeta = paper_reference(x, beta, view, dy)
                np.testing.assert_allclose(got[0], f, rtol=1e-5, atol=1e-5, err_msg=str(shape))
                np.testing.assert_allclose(got[1], dx, rtol=1e-5, atol=1e-5, err_msg=str(shape))
                scale = np.abs(dbeta).max()
                np.testing.assert_allclose(got[2], dbeta, rtol=1e-5, atol=1e-5 * scale)
    assert not swish_ops._TORCH_COMPILE_FAILED
