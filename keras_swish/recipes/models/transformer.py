"""The Transformer of the translation recipe, its loss and learning-rate schedule.

The network is the base model of Vaswani et al. (2017) built from keras-hub's
`TransformerEncoder` / `TransformerDecoder` layers: one embedding shared by
source and target and tied with the output projection, sinusoidal (or
learned) positions, and the activation given by name in every feed-forward
network (each gets its own activation layer, so a trainable β or α is per
FFN). Inputs are `{"source": (batch, S), "target_in": (batch, T)}` int32 ids
with 0 as padding; the output is float32 logits `(batch, T, vocab)`.
"""

import math

import keras
from keras import ops

from keras_swish.activations import set_attention_dropout
from keras_swish.recipes.models.activations import activation_layer, activation_slug


@keras.saving.register_keras_serializable(package="keras_swish")
class PaddingMask(keras.layers.Layer):
    """True where a token id is not the padding id."""

    def __init__(self, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = pad_id

    def call(self, tokens):
        return ops.not_equal(tokens, self.pad_id)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, tokens):
        return keras.KerasTensor(tokens.shape, dtype="bool")

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="keras_swish")
class TokenEmbedding(keras.layers.Layer):
    """Token embedding × √d_model plus positions; reversed, the tied output layer.

    Args:
        vocab_size: Number of token ids.
        d_model: Embedding width.
        positions: "sinusoidal" (no weights) or "learned" (needs `max_length`).
        max_length: Longest sequence, for learned positions.

    Call arguments:
        inputs: int token ids `(batch, length)`, or with `reverse=True` hidden
            states `(batch, length, d_model)`.
        reverse: Project hidden states onto the vocabulary with the
            transposed embedding matrix (the tied output projection).
        start_index: Position of the first token (for step-by-step decoding).
    """

    def __init__(self, vocab_size, d_model, positions="sinusoidal", max_length=None, **kwargs):
        import keras_hub  # imported on use: loading a model needs only keras_swish

        super().__init__(**kwargs)
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(
                f"`positions` must be 'sinusoidal' or 'learned'. Received: positions={positions!r}"
            )
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.positions = positions
        self.max_length = max_length
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            vocab_size,
            d_model,
            tie_weights=True,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=d_model**-0.5),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        if positions == "learned":
            self.position_embedding = keras_hub.layers.PositionEmbedding(
                max_length, dtype=self.dtype_policy, name="position_embedding"
            )
        else:
            self.position_embedding = keras_hub.layers.SinePositionEncoding(
                dtype=self.dtype_policy, name="position_encoding"
            )

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build((*tuple(input_shape)[:2], self.d_model))

    def call(self, inputs, reverse=False, start_index=0):
        if reverse:
            return self.token_embedding(inputs, reverse=True)
        x = self.token_embedding(inputs) * ops.cast(math.sqrt(self.d_model), self.compute_dtype)
        return x + self.position_embedding(x, start_index=start_index)

    def compute_output_spec(self, inputs, reverse=False, start_index=0):
        if reverse:
            shape = (*inputs.shape[:-1], self.vocab_size)
        else:
            shape = (*inputs.shape, self.d_model)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "positions": self.positions,
            "max_length": self.max_length,
        }


def build_transformer(config, vocab_size, max_length):
    """The encoder–decoder Transformer with the configured FFN activation.

    Args:
        config: A `TransformerConfig` (d_model, heads, FFN width, layers,
            dropout, positions, normalize_first, activation).
        vocab_size: Size of the shared vocabulary.
        max_length: Longest sequence (learned positions only).

    Returns:
        A functional `keras.Model` named `transformer_<activation>` with
        layers `embedding`, `encoder_<i>`, `decoder_<i>` (and `encoder_norm`,
        `decoder_norm` with `normalize_first`).
    """
    import keras_hub  # imported on use: loading a model needs only keras_swish

    c = config
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target_in")
    embedding = TokenEmbedding(
        vocab_size, c.d_model, positions=c.positions, max_length=max_length, name="embedding"
    )
    source_mask = PaddingMask(name="source_mask")(source)

    def block(layer_class, name):
        """A keras-hub encoder or decoder layer, its FFN with its own activation."""
        blocks.append(
            layer_class(
                intermediate_dim=c.ffn_dim,
                num_heads=c.num_heads,
                dropout=c.dropout,
                activation=activation_layer(
                    c.activation, rank=3, layer_name=activation_slug(c.activation)
                ),
                normalize_first=c.normalize_first,
                name=name,
            )
        )
        return blocks[-1]

    blocks = []
    x = keras.layers.Dropout(c.dropout, name="encoder_dropout")(embedding(source))
    for i in range(c.encoder_layers):
        x = block(keras_hub.layers.TransformerEncoder, f"encoder_{i}")(x, padding_mask=source_mask)
    if c.normalize_first:
        x = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)

    y = keras.layers.Dropout(c.dropout, name="decoder_dropout")(embedding(target))
    for i in range(c.decoder_layers):
        # Causal self-attention: a real target position never sees later
        # padding, so only the source needs a padding mask.
        decoder = block(keras_hub.layers.TransformerDecoder, f"decoder_{i}")
        y = decoder(y, x, encoder_padding_mask=source_mask)
    if c.normalize_first:
        y = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")(y)
    logits = embedding(y, reverse=True)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    model = keras.Model(
        {"source": source, "target_in": target},
        logits,
        name=f"transformer_{activation_slug(c.activation)}",
    )
    set_transformer_attention_dropout(model, c.attention_dropout)  # blocks built above
    return model


def set_transformer_attention_dropout(model, rate):
    """Sets the attention-probability dropout of every Transformer block in `model`.

    keras-hub's `TransformerEncoder` and `TransformerDecoder` apply their one
    `dropout` to the residuals and to the attention probabilities; the
    translation recipe drops out the residuals only (Vaswani et al., section
    5.4: `model.attention_dropout` 0). A `.keras` file keeps each block's
    keras-hub config, so a run's model loaded with `keras.models.load_model`
    drops out its attention probabilities at `dropout` in training: call this
    with the run's `model.attention_dropout` before training it further
    (`keras-swish train` does so for the models it builds and resumes).
    Inference is the same either way.

    Args:
        model: A built `keras.Model` with keras-hub Transformer blocks as layers.
        rate: The dropout rate on the attention probabilities, in [0, 1).

    Returns:
        The number of attention layers set (encoder: 1 per block, decoder: 2).

    Example:

    >>> from keras_swish.recipes.models.transformer import (
    ...     build_transformer, set_transformer_attention_dropout)
    >>> from keras_swish.recipes.tasks.translation import TransformerConfig
    >>> config = TransformerConfig(d_model=16, num_heads=2, ffn_dim=32,
    ...     encoder_layers=1, decoder_layers=1)
    >>> model = build_transformer(config, vocab_size=40, max_length=16)
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = folder.name + "/model.keras"
    >>> model.save(path)
    >>> loaded = keras.models.load_model(path)
    >>> set_transformer_attention_dropout(loaded, config.attention_dropout)
    3
    """
    import keras_hub  # imported on use: loading a model needs only keras_swish

    if not 0 <= rate < 1:
        raise ValueError(f"`rate` must be in [0, 1). Received: rate={rate}")
    kinds = (keras_hub.layers.TransformerEncoder, keras_hub.layers.TransformerDecoder)

    def blocks(outer):
        for layer in outer.layers:
            if isinstance(layer, kinds):
                yield layer
            elif isinstance(layer, keras.Model):  # a nested model's blocks too
                yield from blocks(layer)

    attentions = [attention for block in blocks(model) for attention in attention_layers(block)]
    for attention in attentions:
        set_attention_dropout(attention, rate)
    return len(attentions)


def attention_layers(block):
    """The MultiHeadAttention layers of a built keras-hub Transformer encoder or decoder."""
    names = ("_self_attention_layer", "_cross_attention_layer")  # keras-hub's, as below
    found = [getattr(block, n) for n in names if getattr(block, n, None) is not None]
    if not found:  # never silently: the recipe would train with keras-hub's rate there
        raise RuntimeError(
            f"{type(block).__name__} has no `_self_attention_layer`: this keras-hub "
            "version builds its attention otherwise, and its attention dropout cannot be set."
        )
    return found


def feedforward_activations(model):
    """The activation of every FFN in `model`, encoder layers first."""
    import keras_hub  # imported on use: loading a model needs only keras_swish

    return [
        layer._feedforward_intermediate_dense.activation
        for layer in model.layers
        if isinstance(
            layer, (keras_hub.layers.TransformerEncoder, keras_hub.layers.TransformerDecoder)
        )
    ]


@keras.saving.register_keras_serializable(package="keras_swish")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr = scale · d_model^−0.5 · min(step^−0.5, step · warmup^−1.5).

    The schedule of Vaswani et al. (2017), Eq. 3: linear warm-up for
    `warmup_steps`, then decay with the inverse square root of the step.
    `step` counts from 1 (the optimizer's iterations + 1).

    Args:
        d_model: Model width.
        warmup_steps: Steps of warm-up (4000 in the paper).
        scale: A constant factor (1 in the paper).
    """

    def __init__(self, d_model, warmup_steps=4000, scale=1.0):
        self.d_model = int(d_model)
        self.warmup_steps = int(warmup_steps)
        self.scale = float(scale)

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        rate = ops.minimum(ops.power(step, -0.5), step * self.warmup_steps**-1.5)
        return self.scale * self.d_model**-0.5 * rate

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_swish")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against logits, with label smoothing.

    The target distribution puts `1 − label_smoothing` on the label plus
    `label_smoothing / vocab` on every class, as
    `keras.losses.CategoricalCrossentropy(label_smoothing=...)` does with
    one-hot labels, without building the one-hot tensor. The default
    reduction `"mean_with_sample_weight"` averages over the tokens whose
    sample weight is 1, so padding (weight 0) changes neither the loss nor
    its gradient.

    Args:
        label_smoothing: In [0, 1).
    """

    def __init__(
        self,
        label_smoothing=0.0,
        name="smoothed_sparse_crossentropy",
        reduction="mean_with_sample_weight",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        labels = ops.expand_dims(ops.cast(y_true, "int32"), -1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)
        if not self.label_smoothing:
            return nll
        uniform = -ops.mean(log_probs, axis=-1)
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
