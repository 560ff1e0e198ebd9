"""Image data: the embedded digits, class folders, TFDS (mocked), errors."""

import numpy as np
import pytest

from keras_swish.recipes.data.embedded import load_mnist_5k
from keras_swish.recipes.data.images import DataError, make_image_data, parse_data_spec

tf = pytest.importorskip("tensorflow")

PIPELINE = dict(
    image_size=32,
    batch_size=8,
    seed=3,
    crop_area_min=0.5,
    random_flip=True,
    eval_crop=0.875,
    shuffle_buffer=64,
)


def first_batch(dataset):
    images, labels = next(iter(dataset))
    return images.numpy(), labels.numpy()


def test_embedded_digits_are_real_stratified_and_deterministic():
    (x, y), (xv, yv) = load_mnist_5k()
    assert x.shape == (4000, 28, 28) and xv.shape == (1000, 28, 28)
    assert np.bincount(y).tolist() == [400] * 10 and np.bincount(yv).tolist() == [100] * 10
    assert x.dtype == np.uint8 and x.max() == 255 and 20 < x.mean() < 50  # ink on black
    (x2, _), _ = load_mnist_5k()
    np.testing.assert_array_equal(x, x2)
    (x3, _), _ = load_mnist_5k(seed=1)
    assert not np.array_equal(x, x3)


def test_embedded_pipeline_shapes_ranges_and_seed():
    data = make_image_data(parse_data_spec(None), None, **PIPELINE)
    assert (data.num_classes, data.train_examples, data.validation_examples) == (10, 4000, 1000)
    images, labels = first_batch(data.train)
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8, 10)
    assert -1.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey → 3 equal channels
    np.testing.assert_array_equal(labels.sum(axis=1), 1)
    again = make_image_data(parse_data_spec(None), None, **PIPELINE)
    np.testing.assert_array_equal(first_batch(again.train)[0], images)
    other = make_image_data(parse_data_spec(None), None, **dict(PIPELINE, seed=4))
    assert not np.array_equal(first_batch(other.train)[0], images)
    val_images, _ = first_batch(data.validation)
    assert val_images.shape == (8, 32, 32, 3)
    assert sum(int(b[0].shape[0]) for b in data.validation) == 1000


def test_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("validation", 2)):
        for name in ("cat", "dog"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 255, size=(20 + i, 24, 3), dtype=np.uint8)
                tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(image))
    data = make_image_data(
        parse_data_spec(f"folder:{tmp_path}"), None, **dict(PIPELINE, batch_size=2)
    )
    assert (data.num_classes, data.train_examples, data.validation_examples) == (2, 6, 4)
    images, labels = first_batch(data.train)
    assert images.shape == (2, 32, 32, 3) and labels.shape == (2, 2)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        make_image_data(parse_data_spec(f"folder:{tmp_path / 'nope'}"), None, **PIPELINE)
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "validation" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        make_image_data(parse_data_spec(f"folder:{tmp_path}"), None, **PIPELINE)


@pytest.mark.parametrize("spec", ["imagenet2012", "tfds:", "folder:", "http://x"])
def test_unreadable_specs(spec):
    with pytest.raises(DataError, match="Cannot read --data"):
        parse_data_spec(spec)


def test_tfds_not_prepared_fails_fast_with_instructions(tmp_path):
    with pytest.raises(DataError) as error:
        make_image_data(parse_data_spec("tfds:imagenet2012"), str(tmp_path), **PIPELINE)
    message = str(error.value)
    assert "not prepared under" in message and "ILSVRC2012_img_train.tar" in message
    assert f"tfds build imagenet2012 --data_dir {tmp_path} --manual_dir MANUAL" in message
    assert not any(tmp_path.iterdir())  # nothing downloaded or written
    with pytest.raises(DataError, match="Unknown TFDS dataset 'no_such_set'"):
        make_image_data(parse_data_spec("tfds:no_such_set"), str(tmp_path), **PIPELINE)


def test_tfds_path_with_mock_data(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=16):
        data = make_image_data(
            parse_data_spec("tfds:imagenet2012"), str(tmp_path), **dict(PIPELINE, batch_size=4)
        )
        assert data.num_classes == 1000
        images, labels = first_batch(data.train)
        assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 1000)
        assert data.summary.startswith("tfds:imagenet2012 (train / validation)")
