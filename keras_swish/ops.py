"""The Swish op: `swish(x, beta, axis=-1)` = x * sigmoid(beta * x)."""

from keras import ops


def _broadcast_beta(x, beta, axis):
    """Reshapes a 1-D `beta` so that it lines up with `axis` of `x`."""
    if len(beta.shape) != 1 or len(x.shape) <= 1:
        return beta
    rank = len(x.shape)
    if not -rank <= axis < rank:
        raise ValueError(
            f"`axis` must be in [{-rank}, {rank}) for an input of rank {rank}. "
            f"Received: axis={axis}"
        )
    axis = axis % rank
    shape = [1] * rank
    shape[axis] = beta.shape[0]
    return ops.reshape(beta, shape)


def swish(x, beta=1.0, axis=-1):
    """Swish with a (trainable) β: `x * sigmoid(beta * x)`.

    Formula:
    ```
    f(x) = x * sigmoid(beta * x)
    ```

    `beta` is a scalar, a 1-D tensor with one value per channel along
    `axis`, or any tensor that broadcasts against `x`. β = 1 gives SiLU
    (`keras.activations.silu`), β = 0 gives `x / 2`, and a large β
    approaches ReLU. The sigmoid is the backend's stable one, so the output
    is finite for every finite `x` and `beta`.

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
    x = ops.convert_to_tensor(x)
    beta = ops.cast(ops.convert_to_tensor(beta), x.dtype)
    beta = _broadcast_beta(x, beta, axis)
    return x * ops.sigmoid(beta * x)
