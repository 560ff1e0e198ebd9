"""Activation names: the registry of trainable activations, and the hook.

Keras 3 resolves an `activation=` string with `keras.activations.get`, which
looks only at Keras's own stateless functions (a fixed module-level dict).
A trainable activation such as Swish with a learned β is a layer, and every
use needs a fresh one so that it owns its β. There is no public extension
point for that, so `install()` wraps `keras.activations.get` (the function
object that every Keras and keras-hub layer calls through its module) with
`get()` below:

- a name registered here (`"swish_beta"`) gives a new layer instance;
- `"expr:<formula>"` gives a new `ExpressionActivation(formula)`, as in
  `activation="expr:max(x, sigmoid(x))"`;
- a Layer class gives a new instance of it (plain Keras would return the
  class itself, which then breaks when called on a tensor);
- everything else goes to Keras's own `get` unchanged, so `"relu"`,
  `"swish"` (Keras's SiLU), dicts and callables resolve exactly as before;
- an unknown string still raises Keras's ValueError, with the closest valid
  names added when there are some ("swish_bta" → "swish_beta").

A trainable activation must also have its weights as soon as the layer that
owns it is built, so that `model.summary()`, `count_params()` and
`trainable_weights` count β before any data flows and a saved model holds β.
Keras layers with `activation=` (Dense, Conv, ...) work out their output
shape without calling the activation, so `install()` also extends
`Layer._post_build` (run by Keras right after every `build()`): an unbuilt
activation layer held in `activation` or `recurrent_activation` is built
there, in the owner's name scope, with the shape it will be called on (the
owner's output shape, or `(batch, units)` in a recurrent cell), for the
Keras layers known to call it there (`_eager_owners`); a channels-first
owner's β goes on its channel axis 1. `Activation` (built at init, without
`build()`) gets one that builds its activation from the input shape, and is
marked unbuilt, so that Keras builds both on the first (symbolic) call. Any
other layer's activation (a user's layer may call it on a wider hidden
tensor) is built by tracing the layer's call on its build shapes, or from its
output shape when that trace cannot run (`_trace_call`).

This is the only module of keras_swish that touches Keras internals
(`keras.src.activations`, `Layer._post_build`, — only when a recipe runs
under MultiWorkerMirroredStrategy — two functions of Keras's TensorFlow
trainer, see `patch_multi_worker_fit`, the attention dropout of a built
MultiHeadAttention, see `set_attention_dropout`, and the validation writer of
Keras's TensorBoard callback, see `tensorboard_validation_writer`).
Serialization needs no hook: Keras serializes a Layer-valued activation as a
full config and deserializes it through the registered name
`keras_swish>SwishBeta`.
"""

import difflib
import inspect
import sys

import keras
from keras.src import activations as _keras_activations
from keras.src.layers.layer import Layer as _KerasLayer

from keras_swish.expressions.layer import ExpressionActivation
from keras_swish.layers.swish_beta import SwishBeta

EXPRESSION_PREFIX = "expr:"
_KERAS_GET = _keras_activations.get
_KERAS_POST_BUILD = _KerasLayer._post_build
_ACTIVATION_ATTRIBUTES = ("activation", "recurrent_activation")
_REGISTRY = {}


def register_activation(name, layer_class):
    """Registers a trainable activation under a name usable as `activation=`.

    Every layer that resolves `name` gets its own, new
    `layer_class(name=name)`, so each use owns separate weights.

    Args:
        name: The string users write, such as `"swish_beta"`. Names that
            Keras already defines (`"relu"`, `"swish"`, ...) are refused:
            they keep their Keras meaning.
        layer_class: A `keras.layers.Layer` subclass constructible with only
            Keras's base keyword arguments (`name`, `dtype`): an `__init__`
            that takes `**kwargs` and passes them to `super().__init__`.

    Example:

    >>> class MyAct(keras.layers.Layer):
    ...     def call(self, x):
    ...         return x
    >>> keras_swish.register_activation("my_act", MyAct)
    >>> isinstance(keras.activations.get("my_act"), MyAct)
    True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")
    if name in _keras_activations.ALL_OBJECTS_DICT:
        raise ValueError(
            f"'{name}' is a Keras activation and keeps its Keras meaning; "
            "register the trainable one under another name. "
            f"Received: name={name!r}"
        )
    if not (inspect.isclass(layer_class) and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(
            "`layer_class` must be a keras.layers.Layer subclass. "
            f"Received: layer_class={layer_class!r}"
        )
    _REGISTRY[name] = layer_class


def registered_names():
    """The names `keras_swish` adds to `activation=`, sorted."""
    return sorted(_REGISTRY)


def get(identifier):
    """`keras.activations.get`, extended with the registered names.

    Args:
        identifier: What a layer's `activation=` argument received: None, a
            string, a serialized dict, a callable or a Layer class.

    Returns:
        The activation callable; a new layer for a registered name, an
        `"expr:<formula>"` string or a Layer class.
    """
    if isinstance(identifier, str) and identifier.startswith(EXPRESSION_PREFIX):
        formula = identifier[len(EXPRESSION_PREFIX) :]
        return ExpressionActivation(formula, name="expression_activation")
    if isinstance(identifier, str) and identifier in _REGISTRY:
        # A fixed name: the owner's name scope makes the weight path unique
        # ("dense_1/swish_beta/beta") and stable across clones and reloads.
        return _REGISTRY[identifier](name=identifier)
    if inspect.isclass(identifier) and issubclass(identifier, keras.layers.Layer):
        return identifier()
    saved = isinstance(identifier, dict) and "build_config" in identifier
    if saved:
        # A saved activation layer: left unbuilt here so that its owner builds
        # it in the owner's name scope (see `_post_build`), as when first made.
        identifier = {k: v for k, v in identifier.items() if k != "build_config"}
    try:
        activation = _KERAS_GET(identifier)
        if saved and isinstance(activation, _KerasLayer):
            # Its β axes are the saved ones (`shared_axes: null` saved before
            # channels-first owners put β on axis 1 meant the last axis).
            activation._keras_swish_saved = True
        return activation
    except ValueError as error:
        if not isinstance(identifier, str):
            raise
        valid = sorted(set(_keras_activations.ALL_OBJECTS_DICT) | set(_REGISTRY))
        close = difflib.get_close_matches(identifier, valid, n=3, cutoff=0.75)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"{error}.{hint} Valid names: {', '.join(valid)}.") from None


def _is_shape(shape):
    return isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in shape)


def _eager_owners():
    """Layers whose activation is called on their output (or, for the
    recurrent cells, on `(batch, units)`): these build it right after their
    own `build()`. Any other layer holding an activation (a user's layer may
    call it on a wider hidden tensor) is traced first (`_trace_call`)."""
    from keras.src.layers.rnn.conv_lstm import ConvLSTMCell

    L = keras.layers
    return (
        L.Dense,
        L.EinsumDense,
        L.Conv1D,
        L.Conv2D,
        L.Conv3D,
        L.Conv1DTranspose,
        L.Conv2DTranspose,
        L.Conv3DTranspose,
        L.SeparableConv1D,
        L.SeparableConv2D,
        L.DepthwiseConv1D,
        L.DepthwiseConv2D,
        L.SimpleRNNCell,
        L.GRUCell,
        L.LSTMCell,
        ConvLSTMCell,
    )


def _activation_input_shape(owner):
    """The shape an owner layer's activation is called on, or None."""
    shapes = list((owner._build_shapes_dict or {}).values())
    if not shapes:
        return None
    if hasattr(owner, "state_size") and isinstance(getattr(owner, "units", None), int):
        return (shapes[0][0], owner.units)  # SimpleRNNCell, GRUCell, LSTMCell
    try:
        shape = owner.compute_output_shape(*shapes)
    except Exception:  # Owners whose output shape needs more than a build.
        return None
    if isinstance(shape, (tuple, list)) and shape and _is_shape(shape[0]):
        shape = shape[0]  # ConvLSTMCell: (output shape, [state shapes])
    return tuple(shape) if _is_shape(shape) else None


def _channels_first(owner, activation, shape):
    """A channels-first owner's β goes on axis 1, its channel axis: the
    activation (whose default is the last axis) shares every other axis."""
    if (
        getattr(owner, "data_format", None) == "channels_first"
        and len(shape) >= 3
        and isinstance(activation, (SwishBeta, ExpressionActivation))
        and activation.shared_axes is None
        and not getattr(activation, "_keras_swish_saved", False)
    ):
        activation.shared_axes = list(range(2, len(shape)))


def _trace_call(owner):
    """Runs another layer's `call` symbolically on its build shape, so that
    the activation it holds is built where, and on what, it is called (a
    layer that defines `compute_output_shape` is not traced by Keras when a
    model is made, and its activation would wait for the first real call)."""
    from keras.src.backend import KerasTensor, compute_output_spec

    shapes = owner._build_shapes_dict
    if not all(_is_shape(s) for s in shapes.values()):
        return

    def tensor(shape):
        return KerasTensor(tuple(shape), dtype=owner.compute_dtype)

    if len(shapes) == 1:
        args, kwargs = [tensor(next(iter(shapes.values())))], {}
    else:  # build(inputs_shape, mask_shape) ↔ call(inputs, mask), as Keras maps them
        args = []
        kwargs = {name.removesuffix("_shape"): tensor(s) for name, s in shapes.items()}
    try:
        with owner._open_name_scope():
            compute_output_spec(owner.call, *args, **kwargs)
    except Exception:  # a call the build shapes cannot drive: the output shape decides
        return


def _own_attribute(layer, name):
    """`layer.<name>` when set on the layer itself, not a class property
    (the LSTM layer's `activation` is its cell's)."""
    if isinstance(getattr(type(layer), name, None), property):
        return None
    return getattr(layer, name, None)


def _build_on_first_call(owner, activation):
    """Makes an owner built at init (`Activation`) build `activation` on its
    first call, from the input shape, as Keras builds layers with `build()`."""
    keras_build = owner.build

    def build(input_shape):
        with owner._open_name_scope():
            activation.build(input_shape)
        keras_build(input_shape)

    owner.build = build
    owner.built = False


def _post_build(self):
    """Keras's `Layer._post_build`, after building unbuilt activation layers."""
    for attribute in _ACTIVATION_ATTRIBUTES:
        activation = _own_attribute(self, attribute)
        if isinstance(activation, _KerasLayer) and not activation.built:
            shape = _activation_input_shape(self)
            other = _own_attribute(self, "activation")
            if (
                attribute == "recurrent_activation"
                and isinstance(other, _KerasLayer)
                and other.name == activation.name
            ):
                activation.name = f"recurrent_{activation.name}"  # a path of its own
            if not self._build_shapes_dict:
                if isinstance(self, keras.layers.Activation):
                    _build_on_first_call(self, activation)
                continue
            if not isinstance(self, _eager_owners()):
                _trace_call(self)  # built where its call calls it, if the trace can run
                if activation.built:
                    continue
            if shape is not None:
                _channels_first(self, activation, shape)
                with self._open_name_scope():
                    activation.build(shape)
    _KERAS_POST_BUILD(self)


def install():
    """Installs the hooks into Keras (see the module docstring). Idempotent."""
    _KerasLayer._post_build = _post_build
    for module_name in (
        "keras.src.activations",
        "keras.activations",
        "keras._tf_keras.keras.activations",
    ):
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, "get", None) is _KERAS_GET:
            module.get = get


register_activation("swish_beta", SwishBeta)


# --- MultiWorkerMirroredStrategy and Keras's fit ------------------------------------
#
# Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy on the TensorFlow
# backend (keras-team/keras#20585; upstream master has the same code), in two
# places of keras/src/backend/tensorflow/trainer.py:
#
# 1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first batch with
#    `strategy.reduce("MEAN", batch, axis=None)` only to learn its shapes.
#    MirroredStrategy maps that over the nest; the collective strategy's
#    `_reduce_to` does not: "ValueError: Attempt to convert a value (PerReplica...)".
#    Fix: build from one replica's local batch (shapes and dtypes, no collective).
# 2. `reduce_per_replica(..., "mean")` reduces every step log with
#    `strategy.reduce("MEAN", v, axis=0)` under the collective strategy; the
#    logs are scalars: "Invalid reduction dimension 0 for input with 0
#    dimensions". Fix: a scalar is reduced as a mean over replicas (axis=None).
#
# Both replacements act only when the strategy is a multi-worker collective one
# and otherwise call Keras's own function. tests/test_multi_worker.py pins the
# source of the patched functions, so a Keras upgrade that changes them fails
# loudly (and the patch can be dropped once upstream is fixed).

_MULTI_WORKER_PATCHED = "_keras_swish_multi_worker_patch"


def patch_multi_worker_fit():
    """Makes `Model.fit` work under MultiWorkerMirroredStrategy (TensorFlow backend).

    Idempotent; without a multi-worker collective strategy the patched
    functions behave exactly as Keras's own.

    Returns:
        The patched trainer module (`keras.src.backend.tensorflow.trainer`).
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, _MULTI_WORKER_PATCHED, False):
        return tf_trainer
    trainer_class = tf_trainer.TensorFlowTrainer
    keras_build = trainer_class._maybe_symbolic_build
    keras_reduce = tf_trainer.reduce_per_replica
    multi_worker = tf_trainer._collective_all_reduce_multi_worker

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda x: (
                    strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues)
                    else x
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("mean", "auto") or not multi_worker(strategy):
            return keras_reduce(values, strategy, reduction)

        def reduce(value):
            local = strategy.experimental_local_results(value)
            if all(getattr(t, "shape", None) is not None and t.shape.rank == 0 for t in local):
                return strategy.reduce("MEAN", value, axis=None)
            return keras_reduce(value, strategy, reduction)

        return tree.map_structure(reduce, values)

    trainer_class._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    setattr(tf_trainer, _MULTI_WORKER_PATCHED, True)
    return tf_trainer


# --- Attention-probability dropout of a built MultiHeadAttention ---------------------
#
# keras-hub's TransformerEncoder/Decoder pass their one `dropout` to the residual
# dropouts and to their MultiHeadAttention's dropout on the attention
# probabilities; Vaswani et al.'s base model (the translation recipe's
# reference, section 5.4) drops out the residuals and embeddings only. Keras's
# MultiHeadAttention keeps its rate in `_dropout` (which also picks its fused
# `dot_product_attention` path when 0) and applies it with `_dropout_layer`, both
# set in `__init__`/`build` with no setter. tests/recipes/test_transformer_nmt.py
# checks the attention of a layer changed here draws no mask in training, so a
# Keras that renames them fails that test.


def set_attention_dropout(attention, rate):
    """Sets the attention-probability dropout of a built `keras.layers.MultiHeadAttention`.

    Only the training-time computation changes (a saved model keeps its
    owner's configured rate: `get_config` is the owner's).

    Args:
        attention: A built `keras.layers.MultiHeadAttention`.
        rate: The new dropout rate, in [0, 1).
    """
    if not isinstance(attention, keras.layers.MultiHeadAttention) or not attention.built:
        raise TypeError(f"Expected a built MultiHeadAttention. Received: {attention!r}")
    attention._dropout = float(rate)
    attention._dropout_layer.rate = float(rate)


# --- The validation writer of Keras's TensorBoard callback ---------------------------
#
# The runner writes TensorBoard's `evaluation_*_vs_iterations` points after an
# epoch's commit instead of when validation ends (see `runner._tensorboard`),
# into the same event file as Keras's other validation points: a second writer
# in that folder would make TensorBoard, which follows only the newest event file
# of a folder while a run is live, stop showing the other one's points. Keras
# keeps that writer in `_val_writer` (made on first use) with no public accessor.
# tests/recipes/test_runner.py checks a point written through it lands in
# `<log_dir>/validation`, so a Keras that renames it fails that test.


def tensorboard_validation_writer(callback):
    """The `tf.summary` writer of a `keras.callbacks.TensorBoard`'s `validation` folder.

    Args:
        callback: A `keras.callbacks.TensorBoard` whose model is set.

    Returns:
        The writer Keras itself writes the validation points with.
    """
    if not isinstance(callback, keras.callbacks.TensorBoard):
        raise TypeError(f"Expected a keras.callbacks.TensorBoard. Received: {callback!r}")
    writer = getattr(callback, "_val_writer", None)
    if writer is None:  # never silently: the points would go nowhere
        raise RuntimeError(
            "keras.callbacks.TensorBoard has no `_val_writer` in this Keras version: "
            "keras_swish.activations.tensorboard_validation_writer needs updating."
        )
    return writer
