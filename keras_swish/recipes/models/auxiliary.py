"""A classifier trained with an auxiliary head's loss added to its own (Inception's AuxLogits).

TF-Slim's `train_image_classifier.py` and the TPU Inception scripts train
Inception networks with a second classifier on an intermediate grid and add
its cross-entropy, weighted 0.4 and with the same label smoothing, to the
loss; evaluation and inference use the main classifier alone.

Keras has no built-in form of a loss on an output that only training sees: a
two-output model would rename every metric after its output (`val_top1` →
`val_predictions_top1`) and need the labels twice. `AuxiliaryLossClassifier`
keeps one output for everything but the training step, through the two
methods Keras documents for overriding: `compute_loss` and `compute_metrics`.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_swish")
class AuxiliaryLossClassifier(keras.Model):
    """A classifier whose training loss adds its auxiliary head's, weighted.

    Wraps a functional `network` with two outputs: the predictions and an
    auxiliary head's predictions of the same classes. Called for inference
    (and in `evaluate` and `predict`) it returns the predictions alone; called
    with `training=True` it returns both, and `compute_loss` adds
    `auxiliary_weight` × the compiled loss of the auxiliary predictions to the
    usual loss (the compiled loss of the predictions, plus the regularizers').
    Metrics see the predictions alone. The compiled loss must be one
    `keras.losses.Loss` object (the same object is applied to both), without
    `loss_weights`; `compile` refuses anything else.

    Args:
        network: A functional `keras.Model` with two outputs, `(predictions,
            auxiliary_predictions)`, of the same shape.
        auxiliary_weight: The weight of the auxiliary loss (TF-Slim's 0.4).
        **kwargs: `keras.Model` arguments (`name`).

    Example:

    >>> import keras
    >>> from keras_swish.recipes.models.auxiliary import AuxiliaryLossClassifier
    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="swish_beta")(inputs)
    >>> network = keras.Model(
    ...     inputs,
    ...     [
    ...         keras.layers.Dense(3, activation="softmax")(hidden),
    ...         keras.layers.Dense(3, activation="softmax")(inputs),
    ...     ],
    ... )
    >>> model = AuxiliaryLossClassifier(network, auxiliary_weight=0.4)
    >>> model.compile(
    ...     "sgd", loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"]
    ... )
    >>> tuple(model(keras.ops.ones((2, 4))).shape)
    (2, 3)
    >>> history = model.fit(
    ...     keras.ops.ones((8, 4)), keras.ops.one_hot([0] * 8, 3), epochs=1, verbose=0
    ... )
    >>> sorted(history.history)
    ['accuracy', 'loss']
    """

    def __init__(self, network, auxiliary_weight=0.4, **kwargs):
        super().__init__(**kwargs)
        outputs = getattr(network, "outputs", None) or []
        if len(outputs) != 2:
            raise ValueError(
                "`network` must be a functional model with two outputs (predictions, "
                f"auxiliary predictions); {network.name} has {len(outputs)}."
            )
        if not auxiliary_weight > 0:
            raise ValueError(f"`auxiliary_weight` must be positive; got {auxiliary_weight}.")
        self.network = network
        self.auxiliary_weight = float(auxiliary_weight)
        self.built = True  # the network is

    def call(self, inputs, training=None):
        predictions, auxiliary = self.network(inputs, training=training)
        return (predictions, auxiliary) if training else predictions

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, **kwargs):
        # The auxiliary loss is this one object applied to the auxiliary head;
        # a name, a function, a structure or loss weights would each need
        # Keras's own handling of them repeated here.
        if not isinstance(loss, keras.losses.Loss) or loss_weights is not None:
            raise ValueError(
                f"{type(self).__name__} takes one `keras.losses.Loss` object as its loss "
                f"and no `loss_weights`; got loss={loss!r}, loss_weights={loss_weights!r}."
            )
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras's own (keras/src/trainers/trainer.py) skips a model whose
        # `compile` is overridden, with a warning: a loaded model would come
        # back uncompiled. This one's only checks its arguments first.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def compute_output_shape(self, input_shape):
        return self.network.compute_output_shape(input_shape)[0]

    @property
    def output_shape(self):
        """The predictions' shape, `(None, classes)` (as a functional model's)."""
        return tuple(self.network.outputs[0].shape)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        auxiliary = None
        if isinstance(y_pred, (tuple, list)):
            y_pred, auxiliary = y_pred
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        if auxiliary is None:
            return loss
        # A `keras.losses.Loss` called directly reduces over the batch and
        # scales for the distribution strategy, as the compiled loss does.
        auxiliary_loss = self.loss(y, auxiliary, sample_weight)
        return loss + self.auxiliary_weight * keras.ops.cast(auxiliary_loss, loss.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "auxiliary_weight": self.auxiliary_weight,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(
            config.pop("network"), custom_objects=custom_objects
        )
        return cls(network, **config)
