"""The Swish op: `swish(x, beta, axis=-1)` = x * sigmoid(beta * x), fused.

Each backend gets its forward and backward written by hand, so that the
backward pass keeps only `x` and `beta` (not sigmoid(βx) nor βx: it recomputes
them) and returns dβ already summed over every axis that shares a β:

- TensorFlow: `tf.custom_gradient`. Inside a `tf.function` (fit, predict,
  export) forward and backward are each a `tf.function(jit_compile=True)`
  kernel, so XLA fuses each (the forward into one loop, the backward into a dx
  loop and a two-stage dβ sum) also where the model is not XLA-compiled
  (inside an XLA-compiled function they are inlined); eagerly
  the same code runs op by op. Not `tf.nn.silu(x, beta)`: its β gradient is a
  scalar even for a vector β (tensorflow issue 127690).
- JAX: `jax.custom_vjp` with residuals `(x, beta)`. The forward is XLA's own
  loop; on CPU the backward calls the C++ kernel of `_cpu_kernel.py` (dx and
  dβ in one multi-threaded pass) as an XLA FFI custom call, where β varies
  along the last axis only (scalar or per channel) and x is float32 or 16-bit
  with known shapes; otherwise, on other platforms and for higher-order
  gradients, XLA's formulas.
- PyTorch: `torch.autograd.Function` with `save_for_backward(x, beta)`. On
  CPU, for the layouts and dtypes above, forward and backward call the same
  C++ kernel (ctypes; under an outer torch.compile the backward is the custom
  op `keras_swish::swish_backward_cpu` and the forward Inductor's loop). The
  kernel is built with the C++ compiler on first use and cached; where that
  fails (warned once) or it is switched off (`KERAS_SWISH_CPU_KERNEL=0` or
  `CPU_KERNEL = False`), and for other tensors: for
  tensors of at least `TORCH_COMPILE_MIN_SIZE` elements forward and backward
  are `torch.compile`d (Inductor: C++/OpenMP on CPU, Triton on GPU) on first
  use, one compiled copy per dtype, device and kind of input (rank, β layout
  and, for the backward, how the rows split into groups of 4: `_torch_kind`);
  shapes are dynamic, so other sizes of one kind reuse it. Inside an outer torch.compile
  the same formulas are traced into the model's graph. Otherwise, or where
  compiling fails (warned once) or is switched off (`KERAS_SWISH_TORCH_COMPILE=0`
  or `TORCH_COMPILE = False`), ATen's fused elementwise kernels
  (`silu_backward`, `softplus_backward`).

16-bit inputs are computed in float32 and the output is cast back, so that
βx, x² and the products in the gradient cannot overflow; σ is computed
stably (the backend's sigmoid, or from exp(−|βx|)) and βx is clipped to the
finite range before it meets a 0. The output and dx have the dtype of `x`; dβ
has the dtype and shape of `beta` (a float32 β with float16 `x` under mixed
precision gets a float32 gradient). Benchmarks: `benchmarks/README.md`.
"""

import functools

import keras
from keras import ops

from keras_swish import _cpu_kernel

_HALF_DTYPES = ("float16", "bfloat16")


def _compute_dtype(dtype):
    """float32 for 16-bit floats (no overflow in βx or x²), else `dtype`."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in _HALF_DTYPES else dtype


def _layout(x_shape, beta_shape, axis):
    """How `beta` lines up with `x`.

    Returns `(view_shape, reduce_axes)`: the shape that broadcasts `beta`
    against `x`, and the axes of `x` that dβ is summed over (then reshaped to
    `beta_shape`).
    """
    rank = len(x_shape)
    beta_shape = tuple(beta_shape)
    if len(beta_shape) == 0:
        return (), tuple(range(rank))
    if len(beta_shape) == 1 and rank > 1:
        if not -rank <= axis < rank:
            raise ValueError(
                f"`axis` must be in [{-rank}, {rank}) for an input of rank "
                f"{rank}. Received: axis={axis}"
            )
        axis = axis % rank
        if beta_shape[0] not in (1, x_shape[axis]) and x_shape[axis] is not None:
            raise ValueError(
                f"A 1-D `beta` needs one value per channel on axis {axis} "
                f"(size {x_shape[axis]}) or a single value. Received: "
                f"beta.shape={beta_shape} for x.shape={tuple(x_shape)}"
            )
        view_shape = [1] * rank
        view_shape[axis] = beta_shape[0]
    else:
        if len(beta_shape) > rank:
            raise ValueError(
                f"`beta` must broadcast to the shape of `x`. Received: "
                f"beta.shape={beta_shape} for x.shape={tuple(x_shape)}"
            )
        view_shape = [1] * (rank - len(beta_shape)) + list(beta_shape)
        for b, d in zip(view_shape, x_shape, strict=True):
            if b != 1 and d is not None and b != d:
                raise ValueError(
                    f"`beta` must broadcast to the shape of `x`. Received: "
                    f"beta.shape={beta_shape} for x.shape={tuple(x_shape)}"
                )
    reduce_axes = tuple(i for i, b in enumerate(view_shape) if b == 1)
    return tuple(view_shape), reduce_axes


def swish(x, beta=1.0, axis=-1):
    """Swish with a (trainable) β: `x * sigmoid(beta * x)`.

    Formula:
    ```
    f(x) = x * sigmoid(beta * x)
    ```

    `beta` is a scalar, a 1-D tensor with one value per channel along
    `axis`, or any tensor that broadcasts to the shape of `x`. β = 1 gives
    SiLU (`keras.activations.silu`), β = 0 gives `x / 2`, and a large β
    approaches ReLU. The sigmoid is the backend's stable one, so the output
    is finite for every finite `x` and `beta`.

    The forward and backward passes are written by hand for each backend
    (`tf.custom_gradient`, `jax.custom_vjp`, `torch.autograd.Function`): the
    backward pass keeps only `x` and `beta`, recomputes the sigmoid, and
    returns dβ summed over every axis that shares a β, in β's dtype and
    shape. float16 and bfloat16 inputs are computed in float32 inside the op.
    Symbolic inputs (`keras.Input`) get the same function from `keras.ops`.

    Args:
        x: Input tensor.
        beta: Scalar, per-channel 1-D tensor, or tensor broadcastable to `x`.
        axis: The channel axis of `x` that a 1-D `beta` runs along.
            Defaults to `-1`.

    Returns:
        A tensor with the shape and dtype of `x`.

    Example:

    >>> x = keras.ops.convert_to_tensor([[-1.0, 0.0, 2.0]])
    >>> y = keras_swish.ops.swish(x, keras.ops.convert_to_tensor([1.0, 1.0, 0.0]))
    >>> [round(float(v), 4) for v in keras.ops.convert_to_numpy(y)[0]]
    [-0.2689, 0.0, 1.0]

    Reference:
    - [Ramachandran et al., 2017](https://arxiv.org/abs/1710.05941)
    """
    if isinstance(x, keras.KerasTensor) or isinstance(beta, keras.KerasTensor):
        return _swish_symbolic(x, beta, axis)
    x = ops.convert_to_tensor(x)
    if not keras.backend.is_float_dtype(x.dtype):
        x = ops.cast(x, keras.config.floatx())
    beta = ops.convert_to_tensor(beta)
    if not keras.backend.is_float_dtype(beta.dtype):
        beta = ops.cast(beta, _compute_dtype(x.dtype))
    view_shape, reduce_axes = _layout(tuple(x.shape), tuple(beta.shape), axis)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _swish_tf(x, beta, view_shape, reduce_axes)
    if backend == "jax":
        return _jax_swish()(x, beta, view_shape, reduce_axes)
    if backend == "torch":
        return _torch_swish().apply(x, beta, view_shape, reduce_axes)
    raise NotImplementedError(
        f"keras_swish.ops.swish supports the TensorFlow, JAX and PyTorch "
        f"backends. Received: backend={backend}"
    )


def _swish_symbolic(x, beta, axis):
    """The plain formula from `keras.ops`, for symbolic (KerasTensor) inputs."""
    if not isinstance(x, keras.KerasTensor):
        x = ops.convert_to_tensor(x)
    if not isinstance(beta, keras.KerasTensor):
        beta = ops.convert_to_tensor(beta)
    beta = ops.cast(beta, x.dtype)
    view_shape, _ = _layout(tuple(x.shape), tuple(beta.shape), axis)
    beta = ops.reshape(beta, view_shape)
    return ops.multiply(x, ops.sigmoid(ops.multiply(beta, x)))


# TensorFlow ----------------------------------------------------------------


def _swish_tf(x, beta, view_shape, reduce_axes):
    import tensorflow as tf

    forward, backward = _tf_kernels(view_shape, reduce_axes)
    if tf.executing_eagerly():
        # Eagerly, the same code op by op: no tracing and XLA compiling for
        # each new shape. Inside a tf.function (fit, predict, export), XLA.
        forward = forward.python_function
        backward = backward.python_function
    # Keras's convert_to_tensor leaves a variable as it is; read it here, so
    # that its gradient flows through the read and not into the function.
    x = tf.convert_to_tensor(x)
    beta = tf.convert_to_tensor(beta)

    @tf.custom_gradient
    def fused(x, beta):
        def grad(dy):
            return backward(x, beta, dy)

        return forward(x, beta), grad

    return fused(x, beta)


@functools.cache
def _tf_kernels(view_shape, reduce_axes):
    """The forward and backward XLA kernels for one layout of β.

    One pair per layout (not one for all, with the layout as an argument), so
    that TensorFlow traces each only for new shapes and dtypes.
    """
    import tensorflow as tf

    def cast_inputs(x, beta):
        dtype = _compute_dtype(x.dtype)
        xc = tf.cast(x, dtype)
        b = tf.reshape(tf.cast(beta, dtype), view_shape)
        return xc, b, tf.as_dtype(dtype)

    def sum_over(p):
        """`reduce_sum`; channels-last in two steps, as XLA's CPU reduction is
        single-threaded: a parallel loop adds groups of 4 rows, then a reduce."""
        rank = len(view_shape)
        if rank < 2 or reduce_axes != tuple(range(rank - 1)):
            return tf.reduce_sum(p, axis=reduce_axes)
        channels = view_shape[-1]
        rows = tf.reshape(p, [-1, channels])
        n = tf.shape(rows)[0] // 4 * 4
        groups = tf.reshape(rows[:n], [-1, 4, channels])
        partial = groups[:, 0] + groups[:, 1] + groups[:, 2] + groups[:, 3]
        return tf.reduce_sum(partial, axis=0) + tf.reduce_sum(rows[n:], axis=0)

    @tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
    def forward(x, beta):
        xc, b, _ = cast_inputs(x, beta)
        return tf.cast(xc * tf.sigmoid(b * xc), x.dtype)

    @tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
    def backward(x, beta, dy):
        xc, b, dtype = cast_inputs(x, beta)
        g = tf.cast(dy, dtype)
        # dx = dy·(σ(z) + z·σ(z)(1 − σ(z))), z = βx, both from e = exp(−|z|):
        # exact in both tails, and (unlike the forward's sigmoid) nothing that
        # XLA could share with the forward pass and keep alive until now.
        z = tf.clip_by_value(b * xc, -dtype.max, dtype.max)  # no inf·0
        e = tf.exp(-tf.abs(z))
        d = 1.0 + e
        sigmoid = tf.where(z >= 0, tf.ones_like(e), e) / d
        dx = g * (sigmoid + z * (e / (d * d)))
        # dβ = Σ dy·x²·σ(1 − σ): e written as exp(−|x|·|β|), a different
        # expression from dx's, so that XLA does not share (and store) it.
        e = tf.exp(-(tf.abs(xc) * tf.abs(b)))
        dbeta = sum_over(xc * (xc * (g * (e / ((1.0 + e) * (1.0 + e))))))
        dbeta = tf.cast(tf.reshape(dbeta, tf.shape(beta)), beta.dtype)
        return tf.cast(dx, x.dtype), dbeta

    return forward, backward


# JAX -----------------------------------------------------------------------


@functools.cache
def _jax_swish():
    import jax
    import jax.numpy as jnp

    def cast_inputs(x, beta, view_shape):
        dtype = _compute_dtype(x.dtype)
        return x.astype(dtype), beta.astype(dtype).reshape(view_shape), dtype

    def xla_forward(x, beta, view_shape):
        xc, b, _ = cast_inputs(x, beta, view_shape)
        return (xc * jax.nn.sigmoid(b * xc)).astype(x.dtype)

    def xla_backward(x, beta, dy, view_shape, reduce_axes):
        # Barriers, as in jax.checkpoint: XLA recomputes σ(βx) here instead
        # of keeping the forward's, and dx and dβ stay two separate loops.
        x, beta = jax.lax.optimization_barrier((x, beta))
        xc, b, dtype = cast_inputs(x, beta, view_shape)
        g = dy.astype(dtype)
        big = jnp.finfo(dtype).max
        z = jnp.clip(b * xc, -big, big)  # no ±inf, so no inf·0 below
        e = jnp.exp(-jnp.abs(z))  # σ and σ(1 − σ) exact in both tails
        d = 1.0 + e
        sigmoid = jnp.where(z >= 0, 1.0, e) / d
        dx = g * (sigmoid + z * (e / (d * d)))
        # The barrier on x and dy as they came (not their float32 casts): with
        # 16-bit inputs XLA then casts inside the dβ reduction instead of
        # writing float32 copies of x and dy for it (2.9× → 1.4× SiLU, bfloat16).
        x, b, dy = jax.lax.optimization_barrier((x, b, dy))
        xc, g = x.astype(dtype), dy.astype(dtype)
        # x²·σ(1 − σ) = (x·t)², t = (2 + 2·cosh βx)^(−1/2), 0 where cosh = inf.
        xt = xc * jax.lax.rsqrt(2.0 + 2.0 * jnp.cosh(b * xc))
        dbeta = jnp.sum(xt * xt * g, axis=reduce_axes)
        return dx.astype(x.dtype), dbeta.reshape(beta.shape).astype(beta.dtype)

    def on_cpu(kernel, xla, *args):
        """The CPU kernel on CPU, XLA's own code on other platforms."""
        return jax.lax.platform_dependent(*args, cpu=kernel, default=xla)

    @functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def kernel_backward(x, beta, dy, view_shape, reduce_axes):
        channels = _cpu_kernel.channels(x.shape, view_shape)
        tiled = _cpu_kernel.jax_tiled_beta(beta, channels)

        def kernel(x, beta, tiled, dy):
            dx, partial = _cpu_kernel.jax_backward(x, tiled, dy)
            dbeta = partial.reshape(-1, channels).sum(0)
            return dx, dbeta.reshape(beta.shape).astype(beta.dtype)

        def xla(x, beta, tiled, dy):
            return xla_backward(x, beta, dy, view_shape, reduce_axes)

        return on_cpu(kernel, xla, x, beta, tiled, dy)

    # The kernel's backward has a gradient of its own (second-order
    # derivatives): that of the XLA formulas, which compute the same values.
    def kernel_backward_fwd(x, beta, dy, view_shape, reduce_axes):
        return kernel_backward(x, beta, dy, view_shape, reduce_axes), (x, beta, dy)

    def kernel_backward_bwd(view_shape, reduce_axes, residuals, cotangents):
        _, vjp = jax.vjp(lambda *a: xla_backward(*a, view_shape, reduce_axes), *residuals)
        return vjp(cotangents)

    kernel_backward.defvjp(kernel_backward_fwd, kernel_backward_bwd)

    def use_kernel(x, view_shape):
        """Whether the backward pass calls the CPU kernel: where it is on, the
        layout and dtype fit and shapes are known (a symbolic shape means
        `jax.export`, which cannot serialize the kernel's custom call)."""
        return CPU_KERNEL and _cpu_kernel.jax_supports(x.dtype, x.shape, view_shape)

    # The forward pass stays XLA's: one loop, as fast as SiLU's, which XLA can
    # fuse with what comes before it, and which `jax.export` (Keras's
    # `model.export` on JAX) can serialize — a custom call it cannot.
    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def fused(x, beta, view_shape, reduce_axes):
        return xla_forward(x, beta, view_shape)

    def forward(x, beta, view_shape, reduce_axes):
        return fused(x, beta, view_shape, reduce_axes), (x, beta)

    def backward(view_shape, reduce_axes, residuals, dy):
        x, beta = residuals
        if use_kernel(x, view_shape):
            return kernel_backward(x, beta, dy, view_shape, reduce_axes)
        return xla_backward(x, beta, dy, view_shape, reduce_axes)

    fused.defvjp(forward, backward)
    return fused


# PyTorch -------------------------------------------------------------------


# The compiled path (see `_torch_kernel`): off with KERAS_SWISH_TORCH_COMPILE=0,
# or `keras_swish.ops.TORCH_COMPILE = False`; tensors with fewer elements than
# TORCH_COMPILE_MIN_SIZE take the ATen path (a kernel launch there costs less
# than the guards of a compiled function, and small shapes compile for nothing).
TORCH_COMPILE = _cpu_kernel.env_switch("KERAS_SWISH_TORCH_COMPILE")
TORCH_COMPILE_MIN_SIZE = 1 << 16

# The C++ CPU kernel (`keras_swish/_cpu_kernel.py`): first choice for CPU
# tensors whose β varies along the last axis only (scalar or per channel),
# float32 or 16-bit; off with KERAS_SWISH_CPU_KERNEL=0 or `CPU_KERNEL = False`.
CPU_KERNEL = _cpu_kernel.env_switch("KERAS_SWISH_CPU_KERNEL")

_TORCH_FUNCTION = []
_TORCH_KERNELS = {}  # (0 forward or 1 backward, dtype, device type, kind) -> compiled
# Device type -> the first failure to compile there: a GPU without Triton
# does not send CPU tensors to ATen, nor the other way round.
_TORCH_COMPILE_FAILED = {}


def _torch_swish():
    # A plain list, not functools.cache: torch.compile traces through this.
    if not _TORCH_FUNCTION:
        _TORCH_FUNCTION.append(_make_torch_function())
    return _TORCH_FUNCTION[0]


def _torch_compute_dtype(dtype):
    import torch

    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _torch_forward_formula(x, b):
    """x·σ(βx) in the compute dtype, cast back: one loop once compiled."""
    xc = x.to(_torch_compute_dtype(x.dtype))
    return (xc * (b.to(xc.dtype) * xc).sigmoid()).to(x.dtype)


def _torch_backward_formula(x, b, dy, reduce_axes):
    """dx, dβ (summed over `reduce_axes`, in the compute dtype) and a third
    value that callers ignore (see `_torch_backward_rows`).

    Written so that every exp-like op has one use per loop: Inductor keeps an
    exp that two loops read (dx's and the dβ reduction's) in a float32 buffer
    of its own on CPU (a pass over memory more, and a fresh allocation).

    One β per channel on the last axis (what `SwishBeta` uses): x is seen as
    groups of `_TORCH_ROWS_PER_GROUP` rows × channels, and each group's dx
    rows and its partial dβ row (the sum of the group's rows of
    dy·x²·σ(1 − σ)) are written by one loop over (group, channel) that
    computes e = exp(−|βx|) once per element for both; a small reduction then
    adds the partial rows. (The TensorFlow kernel sums groups of rows for the
    same reason; Inductor cannot fuse a pointwise loop into a reduction that
    runs down the columns, so the group is spelled out row by row.) About 2×
    faster than a dx loop and a dβ loop on CPU, bfloat16 most.

    Other layouts: dx from σ(z) and σ(−z), dβ from cosh(z):
    x²·σ(1 − σ) = x·(x / (2 + 2·cosh z)), exact in both tails and 0 (not
    inf·0) where cosh overflows.
    """
    import torch

    dtype = _torch_compute_dtype(x.dtype)
    big = torch.finfo(dtype).max
    channels_last = x.dim() >= 2 and reduce_axes == tuple(range(x.dim() - 1))
    if channels_last and x.numel() >= _TORCH_ROWS_PER_GROUP * x.shape[-1]:
        return _torch_backward_rows(x, b.reshape(-1).to(dtype), dy, dtype, big)
    xc = x.to(dtype)
    g = dy.to(dtype)
    z = (b.to(dtype) * xc).clamp(-big, big)  # no ±inf, so no inf·0
    dx = g * torch.sigmoid(z) * (1.0 + z * torch.sigmoid(-z))
    p = g * xc * (xc / (2.0 + 2.0 * torch.cosh(z)))
    dbeta = p.sum(dim=reduce_axes) if reduce_axes else p
    return dx.to(x.dtype), dbeta, None


# Rows per group in `_torch_backward_rows` (4: ~2× faster than one dx loop and
# one dβ loop, bfloat16 and float32; 8 was no faster on a 2-core AVX-512 CPU).
_TORCH_ROWS_PER_GROUP = 4


def _torch_backward_rows(x, b, dy, dtype, big):
    """dx, dβ and the groups' partial dβ rows, for one β per channel on the
    last axis (see above).

    The partial rows are returned (and ignored by the caller) so that Inductor
    writes them in the loop that computes e: left to itself it folds their
    sum into the final reduction and keeps each row's e in a float32 buffer
    for it (float32 inputs; a full tensor written and read again).
    """
    import torch

    def both(x_rows, dy_rows):
        xc = x_rows.to(dtype)
        g = dy_rows.to(dtype)
        z = (b * xc).clamp(-big, big)  # no ±inf, so no inf·0
        e = torch.exp(-z.abs())  # σ and σ(1 − σ) exact in both tails
        r = 1.0 / (1.0 + e)
        slope = e * r * r  # σ(1 − σ)
        sigmoid = torch.where(z >= 0, r, e * r)
        # x·slope first: slope is 0 where |x| is huge, and x·x there is inf (inf·0).
        return (g * (sigmoid + z * slope)).to(x.dtype), g * (xc * slope) * xc

    group = _TORCH_ROWS_PER_GROUP
    channels = x.shape[-1]
    x2 = x.reshape(-1, channels)
    dy2 = dy.reshape(-1, channels)
    rows = x2.shape[0] // group * group
    x3 = x2[:rows].reshape(-1, group, channels)
    dy3 = dy2[:rows].reshape(-1, group, channels)
    dx_rows, partial = [], None
    for i in range(group):
        dx_row, p = both(x3[:, i], dy3[:, i])
        dx_rows.append(dx_row)
        partial = p if partial is None else partial + p
    dx_rest, p_rest = both(x2[rows:], dy2[rows:])
    dx = torch.cat([torch.stack(dx_rows, 1).reshape(-1, channels), dx_rest])
    return dx.reshape(x.shape), partial.sum(0) + p_rest.sum(0), partial


def _torch_kernel(which, x, b):
    """The compiled forward (`which` 0) or backward (1) for `x` and the β
    lined up with it (`b`).

    Built on first use with `torch.compile` (Inductor: C++/OpenMP on CPU,
    Triton on GPU), never at install time. Shapes are dynamic, so one compile
    serves every size of one kind (`_torch_kind`); each kind gets its own copy
    of the formula's code, so that the kinds' compiled variants do not share
    (and exhaust) Dynamo's recompile limit of one function.
    """
    key = (which, x.dtype, x.device.type, *_torch_kind(x, b, which))
    if key not in _TORCH_KERNELS:
        import types

        import torch

        fn = (_torch_forward_formula, _torch_backward_formula)[which]
        code = fn.__code__.replace()
        fresh = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__)
        # cpp.dynamic_threads: with dynamic shapes Inductor may judge a loop
        # too small to parallelize from its size hints and emit a serial one
        # (the forward over 4096 × 2048 bfloat16 ran on one core, 3.5× slower);
        # this keeps one parallel loop per kernel and lets OpenMP decide.
        _TORCH_KERNELS[key] = torch.compile(
            fresh, dynamic=True, options={"cpp.dynamic_threads": True}
        )
    return _TORCH_KERNELS[key]


def _torch_kind(x, b, which):
    """What a compiled kernel specializes on: the rank, the axes β runs along
    and, for the backward pass, how the rows split into groups of
    `_TORCH_ROWS_PER_GROUP` (none, all, one left over, more left over)."""
    kind = (x.dim(), tuple(n != 1 for n in b.shape))
    if which == 0 or x.dim() == 0:
        return kind
    rows = x.numel() // max(x.shape[-1], 1)
    if rows < _TORCH_ROWS_PER_GROUP:
        return (*kind, "rows")
    return (*kind, min(rows % _TORCH_ROWS_PER_GROUP, 2))


def _torch_cpu_kernel(x, b):
    """The loaded CPU kernel library where it applies to `x` and the β lined
    up with it (`b`), else None. Not inside an outer torch.compile: there the
    forward's formula is traced into the model's graph and the backward calls
    the kernel's custom op (`_torch_kernel_in_graph`)."""
    import torch

    if not CPU_KERNEL or torch.compiler.is_compiling() or not _cpu_kernel.torch_supports(x, b):
        return None
    lib = _cpu_kernel.library("plain")
    return lib if lib is not None and _cpu_kernel.torch_dtype_taken(lib, x) else None


_TORCH_BACKWARD_OP = []


def _torch_backward_op():
    """`torch.ops.keras_swish.swish_backward_cpu(x, b, dy) -> (dx, dβ)`: the
    CPU kernel's backward as a PyTorch custom op, which an outer
    `torch.compile` (Keras's `jit_compile=True`) calls as it is instead of
    tracing into it (Inductor compiles the formulas to 1.4–1.5× SiLU on CPU,
    `benchmarks/README.md`). Where the library cannot be built it runs the
    formulas eagerly. dβ comes in float32 with the shape of `b`. Registered
    for CPU tensors only: the kernel reads raw pointers, so a graph traced on
    a CPU and run on a GPU gets PyTorch's "no kernel for CUDA" error, never
    GPU memory handed to C++ (fake and meta tensors use `register_fake`)."""
    if not _TORCH_BACKWARD_OP:
        import torch

        @torch.library.custom_op(
            "keras_swish::swish_backward_cpu", mutates_args=(), device_types="cpu"
        )
        def swish_backward_cpu(
            x: torch.Tensor, b: torch.Tensor, dy: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            lib = _cpu_kernel.library("plain")
            if lib is not None and _cpu_kernel.torch_dtype_taken(lib, x):
                return _cpu_kernel.torch_backward(lib, x, b, dy)
            axes = tuple(i for i in range(x.dim()) if b.dim() == 0 or b.shape[i] == 1)
            dx, dbeta, _ = _torch_backward_formula(x, b, dy, axes)
            return dx.contiguous(), dbeta.reshape(b.shape).to(torch.float32)

        @swish_backward_cpu.register_fake
        def _(x, b, dy):
            # Contiguous, as the kernel returns dx whatever x's strides.
            return x.new_empty(x.shape), b.new_empty(b.shape, dtype=torch.float32)

        _TORCH_BACKWARD_OP.append(swish_backward_cpu)
    return _TORCH_BACKWARD_OP[0]


def _torch_kernel_in_graph(x, b):
    """Inside an outer torch.compile: whether the backward pass calls the
    kernel's custom op (CPU, a layout and dtype it takes) instead of the
    formulas."""
    import torch

    return (
        CPU_KERNEL
        and torch.compiler.is_compiling()
        and _cpu_kernel.torch_supports(x, b)
        and not _cpu_kernel.FAILURES
    )


def _torch_use_compiled(x):
    import torch

    if not TORCH_COMPILE or x.device.type in _TORCH_COMPILE_FAILED:
        return False
    if torch.compiler.is_compiling():
        return False  # inside torch.compile already: the formulas, inlined
    return x.numel() >= TORCH_COMPILE_MIN_SIZE


def _torch_compiled_call(which, x, *args):
    """Runs the compiled kernel, or returns None after a failure to compile
    (warned once per device type; from then on every call on that device
    type takes the ATen path)."""
    try:
        return _torch_kernel(which, x, args[0])(x, *args)
    except Exception as error:  # no C++ compiler, no Triton, an Inductor bug
        import warnings

        device = x.device.type
        _TORCH_COMPILE_FAILED[device] = f"{type(error).__name__}: {error}"[:500]
        warnings.warn(
            f"keras_swish: torch.compile of the fused Swish kernels failed on "
            f"{device}; falling back to ATen kernels there (slower; set "
            "KERAS_SWISH_TORCH_COMPILE=0 to skip the attempt). Error: "
            f"{_TORCH_COMPILE_FAILED[device]}",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _make_torch_function():
    import torch

    _torch_backward_op()  # registered now, never while torch.compile traces

    aten = torch.ops.aten

    def cast_inputs(x, beta, view_shape):
        dtype = _torch_compute_dtype(x.dtype)
        return x.to(dtype), beta.to(dtype).reshape(view_shape)

    def aten_forward(x, beta, view_shape):
        """Eager ATen kernels, fused where ATen has one, in place where it can:
        a fresh buffer only for βx and the results (allocations of large CPU
        tensors cost as much as a kernel)."""
        xc, b = cast_inputs(x, beta, view_shape)
        y = torch.mul(xc, b)
        # x·σ(βx) in one kernel; above the threshold σ is 1 to the last bit.
        threshold = 40.0 if y.dtype == torch.float64 else 20.0
        aten.softplus_backward.grad_input(xc, y, 1.0, threshold, grad_input=y)
        return y.to(x.dtype)

    def aten_backward(x, beta, dy, view_shape, reduce_axes, needs_dx, needs_dbeta):
        xc, b = cast_inputs(x, beta, view_shape)
        g = dy.to(xc.dtype)
        big = torch.finfo(xc.dtype).max
        z = torch.mul(xc, b).clamp_(-big, big)  # no ±inf, so no inf·0
        dx = dbeta = None
        if needs_dx:
            dx = aten.silu_backward(g, z).to(x.dtype)  # dy·silu'(βx)
        if needs_dbeta:
            z.sigmoid_()
            aten.sigmoid_backward.grad_input(g, z, grad_input=z)  # dy·σ(1−σ)
            p = z.mul_(xc).mul_(xc)
            if reduce_axes:
                p = p.sum(dim=reduce_axes)
            dbeta = p
        return dx, dbeta

    class SwishFunction(torch.autograd.Function):
        """The C++ CPU kernel where it applies (`_torch_cpu_kernel`; under an
        outer torch.compile the backward's custom op, `_torch_kernel_in_graph`),
        else Inductor-compiled kernels (`_torch_use_compiled`), the formulas
        themselves inside an outer torch.compile, else ATen. A gradient of the
        gradient (create_graph=True) differentiates the formulas."""

        @staticmethod
        def forward(ctx, x, beta, view_shape, reduce_axes):
            ctx.save_for_backward(x, beta)
            ctx.view_shape = view_shape
            ctx.reduce_axes = reduce_axes
            if torch.compiler.is_compiling():
                return _torch_forward_formula(x, beta.reshape(view_shape))
            lib = _torch_cpu_kernel(x, beta.reshape(view_shape))
            if lib is not None:
                return _cpu_kernel.torch_forward(lib, x, beta.reshape(view_shape))
            if _torch_use_compiled(x):
                y = _torch_compiled_call(0, x, beta.reshape(view_shape))
                if y is not None:
                    return y
            return aten_forward(x, beta, view_shape)

        @staticmethod
        def backward(ctx, dy):
            x, beta = ctx.saved_tensors
            view_shape, reduce_axes = ctx.view_shape, ctx.reduce_axes
            needs_dx, needs_dbeta = ctx.needs_input_grad[:2]
            out = None
            lib = _torch_cpu_kernel(x, beta.reshape(view_shape))
            if torch.is_grad_enabled():
                # create_graph=True (a gradient of this gradient): the
                # formulas in differentiable ops; the kernels have no graph.
                out = _torch_backward_formula(x, beta.reshape(view_shape), dy, reduce_axes)
            elif lib is not None:
                out = _cpu_kernel.torch_backward(lib, x, beta.reshape(view_shape), dy)
            elif _torch_kernel_in_graph(x, beta.reshape(view_shape)):
                out = _torch_backward_op()(x, beta.reshape(view_shape), dy)
            elif torch.compiler.is_compiling():
                out = _torch_backward_formula(x, beta.reshape(view_shape), dy, reduce_axes)
            elif _torch_use_compiled(x):
                out = _torch_compiled_call(1, x, beta.reshape(view_shape), dy, reduce_axes)
            if out is None:
                out = aten_backward(x, beta, dy, view_shape, reduce_axes, needs_dx, needs_dbeta)
            dx, dbeta = out[:2]
            if dbeta is not None:
                dbeta = dbeta.reshape(beta.shape).to(beta.dtype)
            return (dx if needs_dx else None), (dbeta if needs_dbeta else None), None, None

    return SwishFunction


# On the torch backend the autograd Function and the kernel's custom op are
# made now, at import. Made lazily by a first call inside torch.compile (a
# function or module compiled before it ever ran eagerly), the custom op's
# registration was traced: Dynamo stops at it (`torch.library.infer_schema`
# is on its skip list) and that graph break stayed in the compiled frame, so
# every later call ran three compiled regions instead of one, and
# fullgraph=True failed (tests/test_cpu_kernel.py).
if keras.backend.backend() == "torch":
    _torch_swish()
