"""What every recipe's data code shares: its error type and TFDS access."""

from keras_swish.errors import UsageError


class DataError(UsageError):
    """A data spec that cannot be read; the message says what to do."""


def training_split(spec):
    """The TFDS split `spec` trains on (`train` unless `tfds:NAME:SPLIT` names one).

    A run trained on (a slice of) `test` reports no test metrics (the callers
    drop the test split: a dataset with only a test split is still usable).

    Raises:
        DataError: the split is (a slice of) `validation`, which the run also
            uses to choose its best model: it would choose on its training data.
    """
    split = spec.split or "train"
    if split_base(split) == "validation":
        raise DataError(
            f"--data tfds:{spec.name}:{split} trains on the validation split, which the run "
            "also uses to choose its best model: train on another split (train, or a slice "
            "such as train[:50%])."
        )
    return split


def split_base(split):
    """`test` of `test[:50%]`: the TFDS split a split string reads from."""
    return split.split("[")[0].strip()


def tfds_builder(name, data_dir):
    """The TFDS builder of a prepared dataset; fails fast when not prepared.

    `tfds.load` of data that is not prepared retries a download for minutes;
    nothing is downloaded at run time here, so an unprepared dataset raises a
    `DataError` at once that says how to prepare it.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises several kinds for unknown names
        raise DataError(f"Unknown TFDS dataset '{name}': {error}") from None
    if not builder.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        if name.startswith("imagenet2012"):
            how = (
                " ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
                "ILSVRC2012_img_val.tar (from image-net.org) in a folder MANUAL, then"
                f" run: tfds build {name} --data_dir {where} --manual_dir MANUAL."
            )
        else:
            how = f" Prepare it with: tfds build {name} --data_dir {where}."
        raise DataError(
            f"TFDS dataset '{name}' is not prepared under {where} "
            f"(looked for {builder.data_dir}); nothing is downloaded at run time."
            + how
            + " Then pass --data-dir to point at it."
        )
    return builder
