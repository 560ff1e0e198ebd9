"""What each β layer receives on a fixed probe batch (the paper's Fig. 6)."""

import contextlib

import numpy as np

from keras_swish.callbacks.betas import to_numpy

BUMP_RANGE = (-5.0, 0.0)


@contextlib.contextmanager
def _recording(named_layers, records):
    """Makes each layer's `call` append its (eager) inputs to `records[name]`."""
    patched = []
    try:
        for name, layer in named_layers:
            records[name] = []

            def call(inputs, *args, _original=layer.call, _out=records[name], **kw):
                _out.append(inputs)
                return _original(inputs, *args, **kw)

            # Set on the instance without Keras's attribute tracking.
            patched.append((layer, layer.__dict__.get("call")))
            object.__setattr__(layer, "call", call)
        yield
    finally:
        for layer, previous in patched:
            if previous is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", previous)


def _as_numpy(tensor):
    try:
        return to_numpy(tensor).astype(np.float32)
    except Exception:  # A symbolic tensor from a traced function: no values.
        return None


def capture_inputs(model, named_layers, probe):
    """Runs `model(probe)` once and returns every input of the named layers.

    Args:
        model: The model.
        named_layers: `(name, layer)` pairs, as from `find_beta_layers`.
        probe: One batch of model inputs.

    Returns:
        A dict from name to a flat float32 array of every value the layer
        received (all calls together: shared layers, recurrent time steps).
        A layer that was not called eagerly (inside a traced function) gets
        an empty array.
    """
    records = {}
    with _recording(named_layers, records):
        model(probe, training=False)
    captured = {}
    for name, _ in named_layers:
        arrays = [_as_numpy(t) for t in records[name]]
        arrays = [a.reshape(-1) for a in arrays if a is not None]
        captured[name] = np.concatenate(arrays) if arrays else np.zeros((0,), np.float32)
    return captured


def bump_share(values, bump_range=BUMP_RANGE):
    """The share of `values` in the negative bump, −5 ≤ x ≤ 0 (NaN if empty)."""
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return float("nan")
    low, high = bump_range
    return float(np.mean((values >= low) & (values <= high)))
