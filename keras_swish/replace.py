"""`replace_activations`: swap a model's activations by name (the paper's one-line swap)."""

import inspect
import warnings

import keras

from keras_swish import activations as swish_activations

# Layers that are an activation and the name each stands for.
_RELU_LIKE = {None: "relu", 6.0: "relu6"}
# A key that also matches a more specific name ("relu" also replaces ReLU6).
_FALLBACK = {"relu6": "relu"}
# Layer-config keys holding an activation (the attributes the activation hook
# builds), and those holding a wrapped layer.
_ACTIVATION_KEYS = swish_activations._ACTIVATION_ATTRIBUTES
_WRAPPED_KEYS = ("layer", "backward_layer")


def _name_of_identifier(identifier):
    """The activation name behind an `activation=` config value, or None."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        config = identifier.get("config")
        if class_name == "function" and isinstance(config, str):
            return config
        registered = identifier.get("registered_name") or class_name
        for name, cls in swish_activations._REGISTRY.items():
            if registered in (
                keras.saving.get_registered_name(cls),
                cls.__name__,
            ):
                return name
    return None


def _name_of_layer(layer):
    """The activation name a standalone activation layer stands for, or None."""
    if isinstance(layer, keras.layers.ReLU):
        if layer.negative_slope == 0 and layer.threshold == 0:
            return _RELU_LIKE.get(None if layer.max_value is None else float(layer.max_value))
        return None
    if isinstance(layer, keras.layers.Activation):
        return _name_of_identifier(keras.activations.serialize(layer.activation))
    for name, cls in swish_activations._REGISTRY.items():
        if type(layer) is cls:
            return name
    simple = {
        keras.layers.LeakyReLU: "leaky_relu",
        keras.layers.PReLU: "prelu",
        keras.layers.ELU: "elu",
    }
    return simple.get(type(layer))


def _lookup(mapping, name):
    if name is None:
        return None
    if name in mapping:
        return mapping[name]
    return mapping.get(_FALLBACK.get(name))


def _activation_layer(target, like):
    """A new standalone activation layer for `target`, named like `like`."""
    kwargs = {"name": like.name, "dtype": like.dtype_policy}
    if isinstance(target, str) and target in swish_activations._REGISTRY:
        return swish_activations._REGISTRY[target](**kwargs)
    if inspect.isclass(target):
        return target(**kwargs)
    return keras.layers.Activation(target, **kwargs)


def _check_mapping(mapping):
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(
            "`mapping` must be a non-empty dict from activation names to "
            f"activations, such as {{'relu': 'swish_beta'}}. Received: "
            f"mapping={mapping!r}"
        )
    for key, target in mapping.items():
        if not isinstance(key, str):
            raise ValueError(
                f"`mapping` keys must be activation names (strings). Received: key={key!r}"
            )
        if inspect.isclass(target) and issubclass(target, keras.layers.Layer):
            continue
        if not isinstance(target, (str, dict)):
            raise ValueError(
                f"`mapping[{key!r}]` must be an activation name, a serialized "
                f"activation (dict) or a Layer class. Received: {target!r}"
            )
        # Resolves the name now, so that a typo fails before any cloning.
        keras.activations.get(target)


def replace_activations(model, mapping):
    """Returns a copy of `model` with its activations replaced by name.

    Every activation whose name is a key of `mapping` is replaced by the
    mapped one, wherever it appears: as a standalone `ReLU` layer (also
    `ReLU(max_value=6)`, which the key `"relu6"` matches too), an
    `Activation` layer, a `LeakyReLU`/`PReLU`/`ELU`/`SwishBeta` layer, or the
    `activation=` or `recurrent_activation=` argument of another layer
    (Dense, Conv, recurrent, ...), also inside `Bidirectional` and
    `TimeDistributed`. Nested Functional and Sequential models are handled
    too. Every replaced activation gets its own new weights (its own β for
    `"swish_beta"`); all other weights are copied from `model`, which is left
    unchanged. A key that matches nothing in `model` gives a warning.

    Args:
        model: A Functional or Sequential Keras model.
        mapping: Dict from activation names to replacements. Keys: names
            such as `"relu"`, `"relu6"`, `"gelu"`, `"swish_beta"`,
            `"leaky_relu"`, `"prelu"`, `"elu"`. Values: any name
            `activation=` accepts, a serialized activation, or a Layer class.

    Returns:
        A new `keras.Model`: Sequential for a Sequential `model`, Functional
        otherwise (keras-hub's `Backbone` and `Task` models also come back as
        plain Functional models, without their presets' preprocessing).

    Example:

    >>> base = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3))
    >>> swished = keras_swish.replace_activations(base, {"relu": "swish_beta"})
    >>> sum(isinstance(l, keras_swish.SwishBeta) for l in swished.layers)
    27
    """
    # Functional models have `_operations`; Sequential ones do not (they are
    # cloned layer by layer), subclassed models neither (their call is code).
    if not isinstance(model, keras.Sequential) and not (
        isinstance(model, keras.Model) and hasattr(model, "_operations")
    ):
        raise ValueError(
            f"`model` must be a Functional or Sequential keras.Model. Received: model={model!r}"
        )
    _check_mapping(mapping)
    pairs = []  # (old layer, its clone): not the new activation layers, all new
    replaced = set()  # the mapping keys that matched something

    def target_for(name):
        target = _lookup(mapping, name)
        if target is not None:
            replaced.add(name if name in mapping else _FALLBACK.get(name))
        return target

    def rewrite(config):
        """Replaces `activation=` / `recurrent_activation=` in a layer config,
        also inside a wrapper's layer (Bidirectional, TimeDistributed)."""
        for key in _ACTIVATION_KEYS:
            if key in config:
                target = target_for(_name_of_identifier(config[key]))
                if target is not None:
                    config[key] = target
        for key in _WRAPPED_KEYS:
            inner = config.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
                rewrite(inner["config"])
        return config

    def clone_layer(layer):
        target = target_for(_name_of_layer(layer))
        if target is not None:
            new = _activation_layer(target, layer)  # all its weights new
        else:
            new = layer.__class__.from_config(rewrite(layer.get_config()))
            pairs.append((layer, new))
        return new

    try:
        new_model = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    except ValueError as error:
        raise ValueError(
            f"Could not rebuild model '{model.name}' with new activations: {error}"
        ) from error
    for old, new in pairs:
        _carry_weights(old, new, mapping)
    _warn_about_batchnorm_without_scale(new_model, [mapping[k] for k in replaced if k])
    unused = sorted(set(mapping) - replaced)
    if unused:
        warnings.warn(
            f"replace_activations: no activation of model '{model.name}' is named "
            f"{', '.join(repr(k) for k in unused)}; nothing was replaced for "
            f"{'it' if len(unused) == 1 else 'them'}.",
            stacklevel=2,
        )
    return new_model


def _carry_weights(old, new, mapping):
    """Copies `old`'s weights into its clone `new`, in order.

    A layer and its clone from the same config create the same weights in
    the same order; their paths need not agree (a clone's wrapped layer is
    named outside its wrapper's scope) nor be unique in a model (two nested
    backbones of one architecture have the same inner names), hence one
    layer pair at a time and in order. The weights of an activation held by
    `new` (its β) are new where that activation was replaced, and carried
    over from the same activation of `old` otherwise.
    """
    old_held, new_held = _held_activations(old), _held_activations(new)
    old_activation = {id(w) for a in old_held for w in a.weights}
    new_activation = {id(w) for a in new_held for w in a.weights}
    pairs = [
        (
            [w for w in old.weights if id(w) not in old_activation],
            [w for w in new.weights if id(w) not in new_activation],
        )
    ]
    held = {id(a) for a in old_held + new_held}
    for old_act, new_act in _kept_activations(old, new, held, mapping):
        pairs.append((old_act.weights, new_act.weights))
    for sources, targets in pairs:
        shapes = [tuple(w.shape) for w in sources]
        if shapes != [tuple(w.shape) for w in targets]:
            raise ValueError(
                f"Could not carry the weights of layer '{old.name}' over to its copy: "
                f"{[(w.path, tuple(w.shape)) for w in sources]} against "
                f"{[(w.path, tuple(w.shape)) for w in targets]}."
            )
        for source, target in zip(sources, targets, strict=True):
            target.assign(source)


def _held_activations(layer):
    """The activation layers held by `layer` and its sublayers, in order."""
    held = []
    for owner in layer._flatten_layers(include_self=True):
        for key in _ACTIVATION_KEYS:
            activation = swish_activations._own_attribute(owner, key)
            if isinstance(activation, keras.layers.Layer):
                held.append(activation)
    return held


def _kept_activations(old, new, held, mapping):
    """(old, new) activation layers at the same place that `mapping` left alone.

    `held`: ids of the activation layers of both, left out of the owners paired.
    """

    def owners(layer):
        return [o for o in layer._flatten_layers(include_self=True) if id(o) not in held]

    kept = []
    for old_owner, new_owner in zip(owners(old), owners(new), strict=False):
        for key in _ACTIVATION_KEYS:
            old_act = swish_activations._own_attribute(old_owner, key)
            new_act = swish_activations._own_attribute(new_owner, key)
            if (
                type(old_owner) is type(new_owner)
                and isinstance(old_act, keras.layers.Layer)
                and isinstance(new_act, keras.layers.Layer)
                and _lookup(mapping, _name_of_layer(old_act)) is None
            ):
                kept.append((old_act, new_act))
    return kept


# Targets that are piecewise linear: a BatchNorm scale before them is redundant.
_PIECEWISE_LINEAR = {"relu", "relu6", "leaky_relu", "prelu", "linear"}


def _warn_about_batchnorm_without_scale(model, targets):
    """Warns when smooth activations went in after BatchNorm layers without γ.

    `keras.applications` builds InceptionResNetV2 and InceptionV3 with
    `BatchNormalization(scale=False)`, right for ReLU (the next layer absorbs
    a scale) but not for Swish, as the paper points out.
    """

    def piecewise_linear(target):
        if inspect.isclass(target):
            return target in (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU)
        return _name_of_identifier(target) in _PIECEWISE_LINEAR

    smooth = [t for t in targets if not piecewise_linear(t)]
    if not smooth:
        return
    without = [
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.scale
    ]
    if without:
        warnings.warn(
            f"replace_activations: model '{model.name}' has {len(without)} "
            f"BatchNormalization layer(s) with scale=False (no γ), such as '{without[0]}'. "
            "That suits ReLU only: the paper found Swish needs γ. Rebuild the model with "
            "BatchNormalization(scale=True) to train it with the new activations.",
            stacklevel=3,
        )
