"""Translating with a trained Transformer: cached beam search, greedy, BLEU.

`CachedDecoder` runs the layers of a model built by
`nmt_model.build_transformer` one target position at a time. The encoder
runs once; each decoder layer keeps the keys and values of its
self-attention for the positions decoded so far, and of its
cross-attention for the whole source (computed at the first step), so a
step costs one position's work instead of re-running the whole prefix.

`beam_search` keeps `beam_size` hypotheses a sentence. A candidate that
ends the sentence among the best `beam_size` of a step is finished with
the score log P / lp, lp = ((5 + length) / 6)^α (Wu et al., 2016, the
length penalty of the Transformer paper); a sentence is done when it has
`beam_size` finished hypotheses, and the best score wins. With one beam
this is exactly greedy decoding.
"""

import warnings
import weakref

import numpy as np

from keras_swish.recipes.data.text import BOS_ID, EOS_ID, PAD_ID


class CachedDecoder:
    """Step-by-step decoding with key/value caches for a trained model.

    Args:
        model: A model from `build_transformer` (or loaded from its file).
    """

    def __init__(self, model):
        import keras_hub
        import tensorflow as tf

        self.embedding = model.get_layer("embedding")
        self.encoders = [
            layer
            for layer in model.layers
            if isinstance(layer, keras_hub.layers.TransformerEncoder)
        ]
        self.decoders = [
            layer
            for layer in model.layers
            if isinstance(layer, keras_hub.layers.TransformerDecoder)
        ]
        names = {layer.name for layer in model.layers}
        self.encoder_norm = model.get_layer("encoder_norm") if "encoder_norm" in names else None
        self.decoder_norm = model.get_layer("decoder_norm") if "decoder_norm" in names else None
        self.num_heads = self.decoders[0].num_heads
        self.head_dim = self.embedding.d_model // self.num_heads
        self.dtype = self.embedding.compute_dtype
        self._encode = tf.function(self._encode_eager, reduce_retracing=True)
        self._step = tf.function(self._step_eager, reduce_retracing=True)

    def _encode_eager(self, source):
        from keras import ops

        mask = ops.not_equal(source, PAD_ID)
        x = self.embedding(source)
        for layer in self.encoders:
            x = layer(x, padding_mask=mask)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x, mask

    def _step_eager(self, tokens, index, order, encoded, mask, self_caches, cross_caches, first):
        """One position for every row: log-probabilities and the new caches.

        `order` reorders the rows of the self-attention caches first (the
        beam each row continues); `first` fills the cross-attention caches.
        """
        import tensorflow as tf
        from keras import ops

        x = self.embedding(tokens[:, None], start_index=index)
        new_self, new_cross = [], []
        for layer, self_cache, cross_cache in zip(
            self.decoders, self_caches, cross_caches, strict=True
        ):
            self_cache = tf.gather(self_cache, order)
            x, self_cache, cross_cache = layer(
                x,
                encoded,
                encoder_padding_mask=mask,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=0 if first else None,
            )
            new_self.append(self_cache)
            new_cross.append(cross_cache)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        logits = ops.cast(self.embedding(x, reverse=True)[:, 0, :], "float32")
        return ops.log_softmax(logits, axis=-1), new_self, new_cross

    def start(self, source, rows_per_sentence, max_length):
        """Encodes `source` and returns the decoding state for its rows."""
        import tensorflow as tf

        encoded, mask = self._encode(tf.constant(source, tf.int32))
        encoded = tf.repeat(encoded, rows_per_sentence, axis=0)
        mask = tf.repeat(mask, rows_per_sentence, axis=0)
        rows, source_length = int(encoded.shape[0]), int(encoded.shape[1])
        self_caches = [
            tf.zeros((rows, 2, max_length, self.num_heads, self.head_dim), self.dtype)
            for _ in self.decoders
        ]
        cross_caches = [
            tf.zeros((rows, 2, source_length, self.num_heads, self.head_dim), self.dtype)
            for _ in self.decoders
        ]
        return {"encoded": encoded, "mask": mask, "self": self_caches, "cross": cross_caches}

    def step(self, state, tokens, index, order):
        """Log-probabilities `(rows, vocab)` of the token after `tokens` at `index`."""
        import tensorflow as tf

        log_probs, state["self"], state["cross"] = self._step(
            tf.constant(tokens, tf.int32),
            tf.constant(index, tf.int32),
            tf.constant(order, tf.int32),
            state["encoded"],
            state["mask"],
            state["self"],
            state["cross"],
            index == 0,
        )
        return log_probs.numpy()


_DECODERS = weakref.WeakKeyDictionary()


def length_penalty(length, alpha):
    """((5 + length) / 6)^α."""
    return ((5.0 + length) / 6.0) ** alpha


def _decode_lengths(source, max_length, extra):
    real = int((np.asarray(source) != PAD_ID).sum(axis=1).max())
    return max(1, min(max_length, real + extra))


def beam_search(decoder, source, beam_size=4, alpha=0.6, max_length=256, extra_length=50):
    """Best translations of a batch of token-id sentences, by cached beam search.

    Args:
        decoder: A `CachedDecoder`.
        source: int array `(batch, S)`, padded with 0, each ending in EOS.
        beam_size: Hypotheses kept per sentence (1: greedy).
        alpha: Length penalty exponent.
        max_length: Most tokens of a translation, EOS included.
        extra_length: A translation has at most (source length + this) tokens.

    Returns:
        One list of token ids per sentence, without EOS.
    """
    source = np.asarray(source, np.int32)
    batch, k = len(source), beam_size
    steps = _decode_lengths(source, max_length, extra_length)
    state = decoder.start(source, k, steps)
    alive = [[[] for _ in range(k)] for _ in range(batch)]
    scores = np.full((batch, k), -np.inf, np.float64)
    scores[:, 0] = 0.0  # at first every beam is the same: expand one
    finished = [[] for _ in range(batch)]  # (normalized score, tokens)
    done = np.zeros(batch, bool)
    tokens = np.full(batch * k, BOS_ID, np.int32)
    order = np.arange(batch * k, dtype=np.int32)
    for index in range(steps):
        log_probs = decoder.step(state, tokens, index, order)
        vocab = log_probs.shape[-1]
        candidates = (scores[:, :, None] + log_probs.reshape(batch, k, vocab)).reshape(batch, -1)
        top = np.argsort(-candidates, axis=1, kind="stable")[:, : 2 * k]
        for b in range(batch):
            if done[b]:
                continue
            kept = []
            for rank, flat in enumerate(top[b]):
                score = candidates[b, flat]
                if score == -np.inf:
                    break
                beam, token = divmod(int(flat), vocab)
                if token == EOS_ID:
                    if rank < k:
                        normalized = score / length_penalty(index + 1, alpha)
                        finished[b].append((normalized, alive[b][beam]))
                elif len(kept) < k:
                    kept.append((score, beam, token))
            if len(finished[b]) >= k or not kept:
                done[b] = True
                continue
            new_alive = []
            for j in range(k):
                score, beam, token = kept[j] if j < len(kept) else (-np.inf, 0, PAD_ID)
                new_alive.append(alive[b][beam] + [token])
                scores[b, j] = score
                order[b * k + j] = b * k + beam
                tokens[b * k + j] = token
            alive[b] = new_alive
        if done.all():
            break
    for b in range(batch):
        if not done[b]:  # out of steps: the live hypotheses compete too
            for j in range(k):
                if scores[b, j] > -np.inf:
                    length = len(alive[b][j])
                    finished[b].append((scores[b, j] / length_penalty(length, alpha), alive[b][j]))
    return [max(f, key=lambda item: item[0])[1] if f else [] for f in finished]


def greedy_decode(model, source, max_length=256, extra_length=50):
    """Greedy translations recomputed from scratch at each step (no cache).

    The slow reference that cached beam search with one beam must match.
    """
    source = np.asarray(source, np.int32)
    steps = _decode_lengths(source, max_length, extra_length)
    target = np.full((len(source), 1), BOS_ID, np.int32)
    ended = np.zeros(len(source), bool)
    outputs = [[] for _ in source]
    for _ in range(steps):
        with warnings.catch_warnings():
            # Keras warns of a softmax over one key at the first step (one target token).
            warnings.filterwarnings("ignore", message="You are using a softmax over axis")
            logits = np.asarray(model({"source": source, "target_in": target}, training=False))
        next_tokens = logits[:, -1, :].argmax(axis=-1).astype(np.int32)
        for b, token in enumerate(next_tokens):
            if not ended[b]:
                if token == EOS_ID:
                    ended[b] = True
                else:
                    outputs[b].append(int(token))
        if ended.all():
            break
        target = np.concatenate([target, next_tokens[:, None]], axis=1)
    return outputs


def translate_ids(model, sentences, beam_size=4, alpha=0.6, max_length=256, tokens_per_batch=8192):
    """Translates token-id sentences (lists, each ending in EOS) in batches.

    Sentences are sorted by length and batched so that a batch's beams hold
    about `tokens_per_batch` source tokens; results come back in input order.
    """
    decoder = _DECODERS.get(model)
    if decoder is None:  # one per model: its step function is traced once
        decoder = _DECODERS[model] = CachedDecoder(model)
    chunks, chunk = [], []
    for i in sorted(range(len(sentences)), key=lambda i: len(sentences[i])):
        if chunk and (len(chunk) + 1) * beam_size * len(sentences[i]) > tokens_per_batch:
            chunks.append(chunk)
            chunk = []
        chunk.append(i)
    if chunk:
        chunks.append(chunk)
    results = [None] * len(sentences)
    for chunk in chunks:
        source = np.zeros((len(chunk), max(len(sentences[i]) for i in chunk)), np.int32)
        for row, i in enumerate(chunk):
            source[row, : len(sentences[i])] = sentences[i]
        translations = beam_search(decoder, source, beam_size, alpha, max_length)
        for i, ids in zip(chunk, translations, strict=True):
            results[i] = ids
    return results


def translate_texts(model, processor, texts, beam_size=4, alpha=0.6, max_length=256):
    """Detokenized translations of `texts` with a SentencePiece `processor`."""
    ids = [processor.encode(text)[: max_length - 1] + [EOS_ID] for text in texts]
    outputs = translate_ids(model, ids, beam_size, alpha, max_length)
    return [processor.decode(tokens) for tokens in outputs]


def corpus_bleu(hypotheses, references, tokenize="13a"):
    """sacreBLEU's corpus BLEU (mixed case) and its signature.

    Args:
        hypotheses: Detokenized translations.
        references: One detokenized reference per hypothesis.
        tokenize: sacreBLEU's tokenizer: "13a" (its default, the standard
            for reporting) or "intl" (splits punctuation and symbols
            everywhere, like the tokenized BLEU of older papers).
    """
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    result = bleu.corpus_score(hypotheses, [references])
    return result.score, str(bleu.get_signature())
