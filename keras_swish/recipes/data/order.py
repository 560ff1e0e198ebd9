"""Orders of the training data that depend only on the seed and the pass.

A run resumed at step s must read what an uninterrupted run reads from step
s on, without reading (or decoding) what came before. So each pass over the
training data (a data epoch) p gets an order that is a function of the
seed and p alone, drawn with stateless random ops, and a pass can start at
any position:

- an indexable split (arrays in memory, a list of files) is permuted by
  sorting stateless uniform noise seeded by (seed, p): starting at position
  k costs one argsort of the split's indices, not k examples;
- a streamed split (TFDS records) is read in file order and shuffled in
  windows of `window` records, each window by its own stateless
  permutation; starting at position k reads (does not decode) the first k
  records of the pass. A pass that uses fewer examples than the split holds
  (whole batches) leaves out random ones of its last window(s).

`tf.data.Dataset.shuffle` cannot do this: its seed must be a Python number,
and its order at pass p depends on every pass before it.
"""

import dataclasses

SEED_STRIDE = 1_000_003  # mixes (seed, pass) into one stateless seed component


@dataclasses.dataclass
class Raw:
    """Undecoded examples of one split: indexable (a tensor) or a stream."""

    examples: object  # a tuple of tensors (indexable) or a tf.data.Dataset of examples
    count: int
    indexable: bool


def pass_order(raw, pass_index, seed, start, per_pass, window):
    """Pass `pass_index`'s examples from position `start` on, as `(position, example)`.

    Args:
        raw: A `Raw` split.
        pass_index: int64 scalar tensor, the pass (data epoch).
        seed: The run's seed (Python int).
        start: int64 scalar tensor, the first position to yield.
        per_pass: Examples used per pass (whole batches).
        window: Shuffle window of a streamed split.
    """
    import tensorflow as tf

    # Stateless seeds of two full int64 words: (seed, pass). Not
    # `tf.random.experimental.index_shuffle`, whose seed words keep only their
    # low 8 bits (TF 2.21): passes 256 apart, or seeds 0 and 1, would repeat.
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(pass_index, tf.int64)])
    if raw.indexable:
        order = tf.argsort(tf.random.stateless_uniform([raw.count], seed=key))[:per_pass]
        order = tf.cast(order, tf.int64)
        positions = tf.data.Dataset.range(start, per_pass)
        return positions.map(
            lambda position: (
                position,
                tuple(tf.gather(t, order[position]) for t in raw.examples),
            )
        )
    count = min(window, raw.count)

    def shuffle_window(window_index, block):
        n = tf.shape(block[0])[0]
        window_key = tf.stack([key[0] * SEED_STRIDE + key[1], window_index])
        noise = tf.random.stateless_uniform([n], seed=window_key)
        order = tf.argsort(noise)
        return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(t, order) for t in block))

    # The windows wholly before `start` are read and dropped unbatched; the
    # examples past `per_pass` are cut after the shuffle, so the ones a pass
    # leaves out are drawn from its last window(s), not always the same records
    # (the whole last window when it holds fewer than those left out).
    skipped = (start // count) * count
    stream = (
        raw.examples.skip(skipped)
        .batch(count)
        .enumerate(start // count)
        .flat_map(shuffle_window)
        .take(per_pass - skipped)
        .enumerate(skipped)
        .skip(start - skipped)  # reads, does not decode: examples are still encoded here
    )
    return stream
