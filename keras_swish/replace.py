"""`replace_activations`: swap a model's activations by name (the paper's one-line swap)."""

import inspect

import keras

from keras_swish import activations as swish_activations

# Layers that are an activation and the name each stands for.
_RELU_LIKE = {None: "relu", 6.0: "relu6"}
# A key that also matches a more specific name ("relu" also replaces ReLU6).
_FALLBACK = {"relu6": "relu"}


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
    `activation=` argument of another layer (Dense, Conv, recurrent, ...).
    Nested Functional and Sequential models are handled too. Every replaced
    activation gets its own new weights (its own β for `"swish_beta"`);
    all other weights are copied from `model`, which is left unchanged.

    Args:
        model: A Functional or Sequential Keras model.
        mapping: Dict from activation names to replacements. Keys: names
            such as `"relu"`, `"relu6"`, `"gelu"`, `"swish_beta"`,
            `"leaky_relu"`, `"prelu"`, `"elu"`. Values: any name
            `activation=` accepts, a serialized activation, or a Layer class.

    Returns:
        A new `keras.Model` of the same kind.

    Example:

    >>> base = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3))
    >>> swished = keras_swish.replace_activations(base, {"relu": "swish_beta"})
    >>> sum(isinstance(l, keras_swish.SwishBeta) for l in swished.layers)
    27
    """
    if not isinstance(model, (keras.Sequential, keras.Model)) or not hasattr(model, "_operations"):
        raise ValueError(
            f"`model` must be a Functional or Sequential keras.Model. Received: model={model!r}"
        )
    _check_mapping(mapping)

    def clone_layer(layer):
        target = _lookup(mapping, _name_of_layer(layer))
        if target is not None:
            return _activation_layer(target, layer)
        config = layer.get_config()
        if "activation" in config:
            target = _lookup(mapping, _name_of_identifier(config["activation"]))
            if target is not None:
                config["activation"] = target
        return layer.__class__.from_config(config)

    try:
        new_model = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    except ValueError as error:
        raise ValueError(
            f"Could not rebuild model '{model.name}' with new activations: {error}"
        ) from error
    values = {v.path: v for v in model.weights}
    for variable in new_model.weights:
        old = values.get(variable.path)
        if old is not None and tuple(old.shape) == tuple(variable.shape):
            variable.assign(old)
    return new_model
