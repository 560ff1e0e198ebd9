"""Orders of the training data that depend only on the seed and the pass.

A run resumed at step s must read what an uninterrupted run reads from step
s on, without reading (or decoding) what came before. So each pass over the
training data (a data epoch) p gets an order that is a function of the
seed and p alone, drawn with stateless random ops, and a pass can start at
any position:

- an indexable split (arrays in memory, a list of files) is permuted with
  `tf.random.experimental.index_shuffle`: starting at position k costs
  nothing;
- a streamed split (TFDS records) is read in file order and shuffled in
  windows of `window` records, each window by its own stateless
  permutation; starting at position k reads (does not decode) the first k
  records of the pass.

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

    key = tf.cast(seed, tf.int64) * SEED_STRIDE + pass_index
    if raw.indexable:
        positions = tf.data.Dataset.range(start, per_pass)

        def pick(position):
            index = tf.random.experimental.index_shuffle(
                position, tf.stack([key, tf.constant(17, tf.int64)]), raw.count - 1
            )
            return position, tuple(tf.gather(t, index) for t in raw.examples)

        return positions.map(pick)
    count = min(window, raw.count)

    def shuffle_window(window_index, block):
        n = tf.shape(block[0])[0]
        noise = tf.random.stateless_uniform([n], seed=tf.stack([key, window_index]))
        order = tf.argsort(noise)
        return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(t, order) for t in block))

    stream = (
        raw.examples.take(per_pass)
        .batch(count)
        .enumerate()
        .flat_map(shuffle_window)
        .enumerate()
        .skip(start)  # reads, does not decode: examples are still encoded here
    )
    return stream
