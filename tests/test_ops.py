"""`keras_swish.ops.swish`: values, gradients, stability, what backward keeps.

Gradients are checked against the formulas of the paper (PAPER.md),
f'(x) = β·f(x) + σ(βx)·(1 − β·f(x)) and ∂f/∂β = x²·σ(βx)·(1 − σ(βx)) summed
over every axis that shares a β, and against central finite differences of
the op itself in float64.
"""

import contextlib

import keras
import numpy as np
import pytest

import keras_swish
from keras_swish import ops as swish_ops
from tests.backend_utils import to_numpy, value_and_grads

all_backends = pytest.mark.all_backends
tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow only"
)

# (x shape, beta shape, axis, beta's shape once lined up with x)
CASES = {
    "per_channel_last": ((3, 4, 5, 6), (6,), -1, (1, 1, 1, 6)),
    "per_channel_axis1": ((3, 4, 5, 6), (4,), 1, (1, 4, 1, 1)),
    "dense": ((7, 5), (5,), -1, (1, 5)),
    "shared_scalar": ((3, 4, 5), (), -1, ()),
    "one_value_1d": ((3, 4), (1,), -1, (1, 1)),
    "broadcast_rank2": ((3, 4, 5, 6), (5, 6), -1, (1, 1, 5, 6)),
    "broadcast_rank3": ((3, 4, 5, 6), (4, 1, 6), -1, (1, 4, 1, 6)),
}


def np_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def paper_reference(x, beta, view_shape, upstream):
    """f, df/dx and dβ from the paper's formulas, in float64."""
    x = x.astype("float64")
    b = np.reshape(beta.astype("float64"), view_shape)
    s = np_sigmoid(b * x)
    f = x * s
    dfdx = b * f + s * (1.0 - b * f)
    dfdb = x**2 * s * (1.0 - s)
    dbeta = upstream * dfdb
    reduce_axes = tuple(i for i in range(x.ndim) if len(view_shape) == 0 or view_shape[i] == 1)
    dbeta = np.sum(dbeta, axis=reduce_axes).reshape(beta.shape)
    return f, upstream * dfdx, dbeta


def make_inputs(x_shape, beta_shape, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal(x_shape)).astype(dtype)
    beta = np.asarray(rng.uniform(-0.5, 2.0, size=beta_shape), dtype)
    upstream = rng.standard_normal(x_shape).astype(dtype)
    return x, beta, upstream


def weighted_swish(upstream, axis):
    """`fn(x, beta)` whose summed output has the vector-Jacobian product with
    `upstream` as its gradient."""

    def fn(x, beta):
        w = keras.ops.cast(keras.ops.convert_to_tensor(upstream), x.dtype)
        return swish_ops.swish(x, beta, axis=axis) * w

    return fn


@contextlib.contextmanager
def float64_enabled():
    """JAX computes in float32 unless 64-bit types are switched on."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


@all_backends
@pytest.mark.parametrize("case", list(CASES))
def test_values_match_numpy(case):
    x_shape, beta_shape, axis, view_shape = CASES[case]
    x, beta, upstream = make_inputs(x_shape, beta_shape)
    y = to_numpy(swish_ops.swish(x, beta, axis=axis))
    expected, _, _ = paper_reference(x, beta, view_shape, upstream)
    assert y.shape == x.shape
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@all_backends
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_match_paper_formulas(case):
    x_shape, beta_shape, axis, view_shape = CASES[case]
    x, beta, upstream = make_inputs(x_shape, beta_shape, seed=1)
    y, (dx, dbeta) = value_and_grads(weighted_swish(upstream, axis), x, beta)
    f, expected_dx, expected_dbeta = paper_reference(x, beta, view_shape, upstream)
    np.testing.assert_allclose(y, f * upstream, rtol=1e-5, atol=1e-5)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert dbeta.shape == beta.shape and dbeta.dtype == np.float32
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=1e-5)
    scale = np.abs(expected_dbeta).max()
    np.testing.assert_allclose(dbeta, expected_dbeta, rtol=1e-5, atol=1e-5 * scale)


@all_backends
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_match_finite_differences(case):
    """Central differences of the op's own float64 forward pass."""
    x_shape, beta_shape, axis, _ = CASES[case]
    x, beta, upstream = make_inputs(x_shape, beta_shape, seed=2, dtype="float64")
    fn = weighted_swish(upstream, axis)
    with float64_enabled():

        def loss(x, beta):
            return float(np.sum(to_numpy(fn(x, beta)), dtype="float64"))

        _, (dx, dbeta) = value_and_grads(fn, x, beta)
        assert dx.dtype == np.float64 and dbeta.dtype == np.float64
        h = 1e-6
        rng = np.random.default_rng(3)
        for _ in range(3):  # directional derivatives along random directions
            v = rng.standard_normal(x.shape)
            fd = (loss(x + h * v, beta) - loss(x - h * v, beta)) / (2 * h)
            np.testing.assert_allclose(np.sum(dx * v), fd, rtol=1e-6, atol=1e-6)
        flat = beta.reshape(-1)
        for i in range(flat.size):  # every β entry
            e = np.zeros_like(flat)
            e[i] = h
            e = e.reshape(beta.shape)  # 0-d arrays stay arrays: float64 kept
            fd = (loss(x, np.asarray(beta + e)) - loss(x, np.asarray(beta - e))) / (2 * h)
            np.testing.assert_allclose(dbeta.reshape(-1)[i], fd, rtol=1e-6, atol=1e-6)


def check_stable(dtype, traced):
    """|βx| far beyond exp's range (and beyond float32's for the last value):
    f is x or -0, df/dx is 1 or 0, df/dβ is 0 — never inf or NaN."""
    big = {"float16": 6e4, "bfloat16": 3e38, "float32": 3e38}[dtype]
    # 5 rows: PyTorch's backward takes rows in groups of 4 (and the rest alone).
    x = np.tile(np.array([[-big, -300.0, -1.0, 0.0, 1.0, 300.0, big]], "float32"), (5, 1))
    beta = np.full((7,), 1e3, "float32")
    beta[2:5] = 1.0  # the middle values stay in the ordinary range

    def fn(x, beta):
        return swish_ops.swish(keras.ops.cast(x, dtype), beta)

    if traced:
        import tensorflow as tf

        fn = tf.function(fn)

    assert keras.backend.standardize_dtype(fn(x, beta).dtype) == dtype
    y, (dx, dbeta) = value_and_grads(
        lambda x, beta: keras.ops.cast(fn(x, beta), "float32"), x, beta
    )
    x_rounded = to_numpy(keras.ops.cast(keras.ops.cast(x, dtype), "float32"))
    f, _, dfdb = paper_reference(x_rounded, beta, (1, 7), np.ones_like(x))
    # The paper's β·f + σ·(1 − β·f) cancels catastrophically at |βx| ~ 1e41;
    # the same derivative written as σ·(1 + βx·(1 − σ)) does not.
    z = beta.astype("float64") * x_rounded
    dfdx = np_sigmoid(z) * (1.0 + z * np_sigmoid(-z))
    for got in (y, dx, dbeta):
        assert np.all(np.isfinite(np.asarray(got, "float32")))
    tol = {"float16": 1e-3, "bfloat16": 1e-2, "float32": 1e-6}[dtype]
    np.testing.assert_allclose(np.asarray(y, "float64"), f, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(dx, "float64"), dfdx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dbeta, dfdb, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dx[:, [0, 1, 5, 6]], [[0.0, 0.0, 1.0, 1.0]] * 5)
    np.testing.assert_array_equal(dbeta[[0, 1, 5, 6]], [0.0, 0.0, 0.0, 0.0])


@all_backends
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_stable_for_large_beta_times_x(dtype):
    check_stable(dtype, traced=False)


@tensorflow_only
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_tf_xla_kernels_stable(dtype):
    check_stable(dtype, traced=True)


@all_backends
def test_half_x_with_float32_beta():
    """Mixed precision: float16 x, float32 β (the layer's variable)."""
    x, beta, upstream = make_inputs((4, 5, 6), (6,), seed=4)
    x16 = x.astype("float16")
    y, (dx, dbeta) = value_and_grads(weighted_swish(upstream, -1), x16, beta)
    assert y.dtype == np.float16 and dx.dtype == np.float16
    assert dbeta.dtype == np.float32 and dbeta.shape == (6,)
    f, expected_dx, expected_dbeta = paper_reference(
        x16.astype("float32"), beta, (1, 1, 6), upstream.astype("float16")
    )
    np.testing.assert_allclose(y, f * upstream.astype("float16"), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(dx, expected_dx, rtol=2e-3, atol=2e-3)
    # dβ is summed in float32, so only the inputs' rounding to float16 shows.
    np.testing.assert_allclose(dbeta, expected_dbeta, rtol=2e-3, atol=1e-2)


@all_backends
def test_python_number_and_integer_inputs():
    y = to_numpy(swish_ops.swish(np.array([-1, 0, 2]), 1))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [-1.0 / (1 + np.e), 0.0, 2.0 * np_sigmoid(2.0)], rtol=1e-6)
    y = to_numpy(keras_swish.swish(np.array([[-1.0, 0.0, 2.0]], "float32")))
    np.testing.assert_allclose(y[0], [-1.0 / (1 + np.e), 0.0, 2.0 * np_sigmoid(2.0)], rtol=1e-6)


@all_backends
def test_symbolic_inputs():
    inputs = keras.Input((5, 6))
    outputs = swish_ops.swish(inputs, np.ones(6, "float32"))
    assert isinstance(outputs, keras.KerasTensor)
    assert tuple(outputs.shape) == (None, 5, 6)


@all_backends
@pytest.mark.parametrize(
    "x_shape, beta_shape, axis, message",
    [
        ((2, 3), (3,), 2, "`axis` must be in"),
        ((2, 3), (4,), -1, "one value per channel"),
        ((2, 3), (2, 2, 3), -1, "must broadcast"),
        ((2, 3), (2, 4), -1, "must broadcast"),
    ],
)
def test_errors_name_what_was_received(x_shape, beta_shape, axis, message):
    with pytest.raises(ValueError, match=message):
        swish_ops.swish(np.ones(x_shape, "float32"), np.ones(beta_shape, "float32"), axis)


# What the backward pass keeps ------------------------------------------------


def saved_for_backward(fn, x, beta):
    """Shapes of the distinct tensors that `fn`'s backward pass holds on to.

    TensorFlow: the forward-graph tensors that the gradient ops read (the
    upstream gradient aside). JAX: the residuals of `jax.vjp`. PyTorch: what
    autograd's saved-tensor hooks see, one entry per storage.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        found = []

        @tf.function
        def step(x, beta, dy):
            with tf.GradientTape() as tape:
                tape.watch([x, beta])
                y = fn(x, beta)
            graph = tf.compat.v1.get_default_graph()
            n_forward = len(graph.get_operations())
            tape.gradient(y, [x, beta], output_gradients=dy)
            operations = graph.get_operations()
            forward = {t.ref() for op in operations[:n_forward] for t in op.outputs}
            kept = {
                t.ref(): t
                for op in operations[n_forward:]
                for t in op.inputs
                if t.ref() in forward and t is not dy
            }
            found.extend(tuple(t.shape) for t in kept.values())
            return y

        step(tf.constant(x), tf.constant(beta), tf.ones(x.shape))
        return found
    if backend == "jax":
        import jax

        _, vjp_fn = jax.vjp(fn, x, beta)
        return [tuple(r.shape) for r in jax.tree_util.tree_leaves(vjp_fn)]
    if backend == "torch":
        import torch

        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = tuple(t.shape)
            return t

        xt = torch.tensor(x, requires_grad=True)
        bt = torch.tensor(beta, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(xt, bt)
        return list(storages.values())
    raise ValueError(f"Unsupported Keras backend: {backend}")


@all_backends
@pytest.mark.parametrize("case", ["per_channel_last", "shared_scalar", "broadcast_rank3"])
def test_backward_keeps_only_x_and_beta(case):
    x_shape, beta_shape, axis, _ = CASES[case]
    x, beta, _ = make_inputs(x_shape, beta_shape)
    kept = saved_for_backward(lambda x, b: swish_ops.swish(x, b, axis=axis), x, beta)
    # x itself, and at most β (JAX keeps a 0-d β inside the vjp's jaxpr).
    assert [shape for shape in kept if shape != beta_shape] == [x_shape]


@all_backends
def test_plain_formula_keeps_more():
    """The measurement sees the sigmoid that the unfused formula keeps."""
    x, beta, _ = make_inputs((3, 4, 6), (6,))

    def plain(x, b):
        x = keras.ops.convert_to_tensor(x)
        return x * keras.ops.sigmoid(keras.ops.convert_to_tensor(b) * x)

    kept = saved_for_backward(plain, x, beta)
    assert sum(shape == x.shape for shape in kept) >= 2


# TensorFlow graph modes and distribution -------------------------------------


@tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_tf_xla_kernels_match_formulas(case, jit_compile):
    """Inside a tf.function the op runs its XLA kernels (eagerly, op by op)."""
    import tensorflow as tf

    x_shape, beta_shape, axis, view_shape = CASES[case]
    x, beta, upstream = make_inputs(x_shape, beta_shape, seed=7)

    @tf.function(jit_compile=jit_compile)
    def step(x, beta, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, beta])
            y = swish_ops.swish(x, beta, axis=axis)
        return (y, *tape.gradient(y, [x, beta], output_gradients=dy))

    y, dx, dbeta = step(tf.constant(x), tf.constant(beta), tf.constant(upstream))
    f, expected_dx, expected_dbeta = paper_reference(x, beta, view_shape, upstream)
    np.testing.assert_allclose(y, f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=1e-5)
    scale = np.abs(expected_dbeta).max()
    np.testing.assert_allclose(dbeta, expected_dbeta, rtol=1e-5, atol=1e-5 * scale)


@tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_with_unknown_batch(jit_compile):
    import tensorflow as tf

    x, beta, upstream = make_inputs((4, 3, 5), (5,), seed=5)

    @tf.function(
        jit_compile=jit_compile,
        input_signature=[
            tf.TensorSpec((None, 3, 5)),
            tf.TensorSpec((5,)),
            tf.TensorSpec((None, 3, 5)),
        ],
    )
    def step(x, beta, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, beta])
            y = swish_ops.swish(x, beta)
        return (y, *tape.gradient(y, [x, beta], output_gradients=dy))

    for batch in (4, 2):
        y, dx, dbeta = step(x[:batch], beta, upstream[:batch])
        f, expected_dx, expected_dbeta = paper_reference(
            x[:batch], beta, (1, 1, 5), upstream[:batch]
        )
        np.testing.assert_allclose(y, f, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dbeta, expected_dbeta, rtol=1e-5, atol=1e-4)


@tensorflow_only
def test_tf_mirrored_strategy_sums_beta_gradients():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    x, beta, upstream = make_inputs((4, 3, 5), (5,), seed=6)
    with strategy.scope():
        variable = tf.Variable(beta)

    def replica_step(x, dy):
        with tf.GradientTape() as tape:
            y = swish_ops.swish(x, variable)
        return tape.gradient(y, variable, output_gradients=dy)

    @tf.function
    def step(x, dy):
        per_replica = strategy.run(replica_step, args=(x, dy))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    dataset = tf.data.Dataset.from_tensor_slices((x, upstream)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    dbeta = step(*batch)
    _, _, expected_dbeta = paper_reference(x, beta, (1, 1, 5), upstream)
    np.testing.assert_allclose(dbeta, expected_dbeta, rtol=1e-5, atol=1e-4)
