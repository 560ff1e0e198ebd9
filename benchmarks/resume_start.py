"""Time to the first training batch of a resumed run: early vs late epochs.

A run resumed at epoch k must start reading where the interrupted run was.
The recipes' pipelines give each pass over the data its own order (a
function of the seed and the pass only), so epoch k's first batch is built
directly; the previous driver replayed the stream (`dataset.skip(k × steps)`),
decoding and augmenting every skipped example. This script times both, for
the image recipes' pipeline on the embedded digits (an indexable split) and
on a small prepared TFDS dataset (a streamed split), and prints medians.

    python benchmarks/resume_start.py            # ~2 min on 2 cores
    python benchmarks/resume_start.py --runs 3
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_swish.recipes.data.images import make_image_data, parse_data_spec  # noqa: E402

PIPELINE = dict(
    image_size=28,
    batch_size=64,
    seed=0,
    crop_area_min=0.5,
    random_flip=False,
    eval_crop=1.0,
    shuffle_buffer=4000,
)


def first_batch_seconds(make_dataset):
    start = time.perf_counter()
    next(iter(make_dataset()))
    return time.perf_counter() - start


def replay(data, epoch, steps):
    """The old driver: the stream from epoch 0, skipping what was trained."""
    return data.train(0, steps).skip(epoch * steps)


def tiny_tfds(directory):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(4000, 28, 28, 1), dtype=np.uint8)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
    )
    labels = np.arange(4000) % 10

    def split(n):
        return tf.data.Dataset.from_tensor_slices({"image": images[:n], "label": labels[:n]})

    tfds.dataset_builders.store_as_tfds_dataset(
        name="bench_digits",
        version="1.0.0",
        features=features,
        split_datasets={"train": split(4000), "validation": split(500)},
        data_dir=directory,
        config=None,
        description="benchmark data",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repeats per cell (median)")
    args = parser.parse_args()
    directory = tempfile.mkdtemp()
    tiny_tfds(directory)
    sources = {
        "embedded digits (indexable)": (None, None),
        "TFDS, 4,000 images (streamed)": ("tfds:bench_digits", directory),
    }
    print(f"Time to the first batch of epoch k (batch 64, 62-step epochs), median of {args.runs}")
    print(f"{'data':32} {'epoch k':>8} {'seeded (s)':>11} {'replay (s)':>11} {'replay/seeded':>14}")
    for label, (spec, data_dir) in sources.items():
        data = make_image_data(parse_data_spec(spec), data_dir, **PIPELINE)
        steps = data.steps_per_pass
        for epoch in (0, 10, 50):
            seeded = statistics.median(
                first_batch_seconds(lambda d=data, e=epoch, s=steps: d.train(e, s))
                for _ in range(args.runs)
            )
            replayed = statistics.median(
                first_batch_seconds(lambda d=data, e=epoch, s=steps: replay(d, e, s))
                for _ in range(args.runs if epoch <= 10 else 1)
            )
            print(
                f"{label:32} {epoch:>8} {seeded:>11.3f} {replayed:>11.3f} "
                f"{replayed / seeded:>13.1f}×"
            )


if __name__ == "__main__":
    main()
