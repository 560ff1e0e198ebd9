"""Small per-backend helpers for tests (gradients, conversion)."""

import keras
import numpy as np


def to_numpy(x):
    """Any backend tensor or variable → a NumPy copy (never a view)."""
    if isinstance(x, keras.Variable):
        x = x.value
        if keras.backend.backend() == "tensorflow":
            x = x.numpy()
    if keras.backend.backend() == "torch":
        return x.detach().cpu().numpy().copy()
    return np.array(keras.ops.convert_to_numpy(x), copy=True)


def value_and_grads(fn, *args):
    """Returns `fn(*args)` and the gradients of `sum(fn(*args))`.

    Both as NumPy arrays: the output, and one gradient per argument.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            out = fn(*tensors)
            total = tf.reduce_sum(out)
        grads = tape.gradient(total, tensors)
        return out.numpy(), [g.numpy() for g in grads]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        tensors = [jnp.asarray(a) for a in args]
        out = fn(*tensors)
        argnums = tuple(range(len(tensors)))
        grads = jax.grad(lambda *t: jnp.sum(fn(*t)), argnums=argnums)(*tensors)
        return np.asarray(out), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in args]
        out = fn(*tensors)
        out.sum().backward()
        return out.detach().numpy(), [t.grad.numpy() for t in tensors]
    raise ValueError(f"Unsupported Keras backend: {backend}")


def swish_betas(model):
    """The β variables of every SwishBeta in `model`, in weight order.

    Found by layer type: BatchNormalization also has a weight named "beta".
    """
    from keras_swish import SwishBeta

    owned = {
        id(layer.beta)
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, SwishBeta) and layer.built
    }
    return [w for w in model.weights if id(w) in owned]
