"""Image data: the embedded digits, class folders, TFDS (real and mocked), splits, order, errors."""

import numpy as np
import pytest

from keras_swish.recipes.data.embedded import load_mnist_5k
from keras_swish.recipes.data.images import (
    DataError,
    make_image_data,
    parse_data_spec,
    tfds_splits,
)

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


def _rows(images):
    return {image.tobytes() for image in images}


def test_embedded_digits_are_real_stratified_disjoint_and_fixed():
    (x, y), (xv, yv), (xt, yt) = load_mnist_5k()
    assert (len(x), len(xv), len(xt)) == (4000, 500, 500)
    assert np.bincount(y).tolist() == [400] * 10
    assert np.bincount(yv).tolist() == np.bincount(yt).tolist() == [50] * 10
    assert x.dtype == np.uint8 and x.max() == 255 and 20 < x.mean() < 50  # ink on black
    assert not _rows(x) & _rows(xv) and not _rows(x) & _rows(xt) and not _rows(xv) & _rows(xt)
    (x2, _), (xv2, _), (xt2, _) = load_mnist_5k()  # no seed: the split is the dataset's
    for a, b in ((x, x2), (xv, xv2), (xt, xt2)):
        np.testing.assert_array_equal(a, b)


def test_embedded_splits_do_not_depend_on_the_run_seed():
    seen = []
    for seed in (0, 1, 7):
        data = make_image_data(parse_data_spec(None), None, **dict(PIPELINE, seed=seed))
        seen.append(
            [np.concatenate([b[0].numpy() for b in d]) for d in (data.validation, data.test)]
        )
    for other in seen[1:]:
        for a, b in zip(seen[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_embedded_pipeline_shapes_ranges_and_seed():
    data = make_image_data(parse_data_spec(None), None, **PIPELINE)
    assert (data.num_classes, data.train_examples, data.validation_examples) == (10, 4000, 500)
    assert data.test_examples == 500 and data.steps_per_pass == 4000 // 8
    images, labels = first_batch(data.train())
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8, 10)
    assert -1.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey → 3 equal channels
    np.testing.assert_array_equal(labels.sum(axis=1), 1)
    again = make_image_data(parse_data_spec(None), None, **PIPELINE)
    np.testing.assert_array_equal(first_batch(again.train())[0], images)
    other = make_image_data(parse_data_spec(None), None, **dict(PIPELINE, seed=4))
    assert not np.array_equal(first_batch(other.train())[0], images)
    val_images, _ = first_batch(data.validation)
    assert val_images.shape == (8, 32, 32, 3)
    assert sum(int(b[0].shape[0]) for b in data.validation) == 500


def test_colour_distortion_is_tf_slims_fast_mode():
    # research/slim/preprocessing/inception_preprocessing.py, distort_color in
    # fast mode: brightness ± 32/255, then saturation × [0.5, 1.5], clipped to
    # [0, 1], then to [-1, 1].
    from keras_swish.recipes.data.images import train_transform

    grey = tf.fill([40, 40, 3], tf.constant(128, tf.uint8))  # saturation changes nothing
    colour = tf.tile(tf.constant([[[200, 100, 50]]], tf.uint8), [40, 40, 1])

    def out(image, i, color=True):
        seed = tf.constant([7, i], tf.int64)
        return train_transform(image, seed, 16, 1.0, False, color=color).numpy()

    shifts = np.array([out(grey, i).mean() - (128 / 255 * 2 - 1) for i in range(300)])
    assert np.allclose([out(grey, i).std() for i in range(5)], 0, atol=1e-6)  # one δ a picture
    bound = 2 * 32 / 255  # the δ in [0, 1], doubled by the mapping to [-1, 1]
    assert np.all(np.abs(shifts) <= bound + 1e-5) and np.abs(shifts).max() > 0.9 * bound
    assert np.array_equal(out(grey, 3), out(grey, 3))  # seeded: a resumed run draws the same
    # Saturation: the channel spread around the pixel's grey level scales by 0.5–1.5
    # (the grey level itself is kept; brightness moves every channel alike).
    base = out(colour, 0, color=False)[0, 0]
    spreads = []
    for i in range(200):
        pixel = out(colour, i)[0, 0]
        spreads.append((pixel.max() - pixel.min()) / (base.max() - base.min()))
    assert 0.5 - 1e-3 <= min(spreads) < 0.6 and 1.4 < max(spreads) <= 1.5 + 1e-3
    # The order: fast mode draws from 1 color_ordering (`num_distort_cases = 1 if
    # fast_mode else 4`), 0: brightness first. The two orders commute unless a value
    # or the saturation is clipped: a vivid pixel, both candidates from the picture's
    # own δ and factor.
    fold_in = tf.random.experimental.stateless_fold_in
    vivid = tf.tile(tf.constant([[[250, 40, 5]]], tf.uint8), [40, 40, 1])
    pixel = tf.constant([[[250, 40, 5]]], tf.float32) / 255
    first_brightness = differ = 0
    for i in range(400):
        seed = tf.constant([7, i], tf.int64)

        def brightness(x, seed=seed):
            return tf.image.stateless_random_brightness(x, 32 / 255, seed=fold_in(seed, 1))

        def saturation(x, seed=seed):
            return tf.image.stateless_random_saturation(x, 0.5, 1.5, seed=fold_in(seed, 2))

        got = out(vivid, i)[0, 0]
        b_s = np.clip(saturation(brightness(pixel)).numpy()[0, 0], 0, 1) * 2 - 1
        s_b = np.clip(brightness(saturation(pixel)).numpy()[0, 0], 0, 1) * 2 - 1
        matches = [np.allclose(got, b_s, atol=1e-5), np.allclose(got, s_b, atol=1e-5)]
        assert any(matches), (i, got, b_s, s_b)
        if np.abs(b_s - s_b).max() > 1e-3:
            differ += 1
            first_brightness += matches[0]
    assert differ >= 100, differ
    assert first_brightness == differ  # never saturation first
    # Without it: the crop and flip only, exactly as before.
    assert np.allclose(out(colour, 0, color=False), 2 * np.array([200, 100, 50]) / 255 - 1)


def test_a_resumed_stream_starts_where_the_run_was_and_passes_are_permutations():
    kw = dict(PIPELINE, batch_size=400, image_size=28, random_flip=False)
    data = make_image_data(parse_data_spec(None), None, **kw)
    assert data.steps_per_pass == 10
    stream = iter(data.train(0, 3))  # epochs of 3 steps: passes and epochs do not align
    batches = [next(stream) for _ in range(25)]
    for epoch in (1, 4, 7):  # epoch 7 starts at step 21: pass 2, batch 1
        resumed = first_batch(data.train(epoch, 3))
        np.testing.assert_array_equal(resumed[0], batches[3 * epoch][0].numpy())
        np.testing.assert_array_equal(resumed[1], batches[3 * epoch][1].numpy())
    for p in (0, 1):  # each pass sees every training digit once, in its own order
        labels = np.concatenate([b[1].numpy().argmax(1) for b in batches[10 * p : 10 * p + 10]])
        assert np.bincount(labels).tolist() == [400] * 10
    assert not np.array_equal(batches[0][1].numpy(), batches[10][1].numpy())


def test_orders_differ_for_passes_256_apart_and_across_seeds():
    # tf.random.experimental.index_shuffle keeps only 8 bits of each seed word;
    # pass_order must not repeat an order every 256 passes or across seeds.
    from keras_swish.recipes.data.order import Raw, pass_order

    raw = Raw((tf.range(1000, dtype=tf.int64),), 1000, True)

    def order(seed, p):
        dataset = pass_order(raw, tf.constant(p, tf.int64), seed, 0, 1000, 10)
        return [int(v[0]) for _, v in dataset]

    orders = [order(0, 0), order(0, 256), order(0, 1), order(1, 0), order(0, 67), order(1, 256)]
    assert len({tuple(o) for o in orders}) == len(orders)
    assert order(0, 256) == order(0, 256)  # and each is reproducible


def test_pass_order_starts_at_the_resume_position_without_reading_before_it():
    from keras_swish.recipes.data.order import Raw, pass_order

    raw = Raw((tf.range(100, dtype=tf.int64),), 100, True)
    full = [int(p) for p, _ in pass_order(raw, tf.constant(3, tf.int64), 0, 0, 100, 10)]
    late = pass_order(raw, tf.constant(3, tf.int64), 0, tf.constant(60, tf.int64), 100, 10)
    # An indexable split starts at position 60 itself: 40 elements, none before.
    assert int(late.cardinality()) == 40
    assert [int(p) for p, _ in late] == full[60:]
    values = [int(v[0]) for _, v in pass_order(raw, tf.constant(3, tf.int64), 0, 0, 100, 10)]
    assert sorted(values) == list(range(100)) and values != list(range(100))


def test_a_streamed_pass_resumes_anywhere_and_leaves_out_other_examples_each_pass():
    from keras_swish.recipes.data.order import Raw, pass_order

    # 90 records in windows of 16 (the last one 10), 84 used a pass (whole batches).
    raw = Raw(tf.data.Dataset.range(90).map(lambda x: (x,)), 90, False)

    def read(p, start=0):
        stream = pass_order(raw, tf.constant(p, tf.int64), 0, tf.constant(start, tf.int64), 84, 16)
        return [(int(position), int(value[0])) for position, value in stream]

    full = read(3)
    assert [position for position, _ in full] == list(range(84))
    for start in (1, 15, 16, 17, 47, 80, 83):  # inside, at and past window edges
        assert read(3, start) == full[start:]
    left_out = [set(range(90)) - {value for _, value in read(p)} for p in range(4)]
    assert all(len(out) == 6 and out <= set(range(80, 90)) for out in left_out)
    assert len({tuple(sorted(out)) for out in left_out}) > 1  # not the same records each pass


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
    assert data.test is None and data.test_examples == 0
    images, labels = first_batch(data.train())
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
        images, labels = first_batch(data.train())
        assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 1000)
        assert data.summary.startswith("tfds:imagenet2012 (train train, validation split")


def _tiny_tfds(data_dir, name="tiny_digits", test_labels=True):
    """A real prepared TFDS dataset with train and test splits only (like cifar10).

    `test_labels=False`: its test labels are -1, TFDS's unknown (imagenet2012's test).
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)

    def split(n, labelled=True):
        images = rng.integers(0, 255, size=(n, 28, 28, 1), dtype=np.uint8)
        labels = np.arange(n) % 10 if labelled else np.full(n, -1)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version="1.0.0",
        features=features,
        split_datasets={"train": split(200), "test": split(50, test_labels)},
        data_dir=str(data_dir),
        config=None,
        description="test data",
    )
    return tfds.builder(name, data_dir=str(data_dir))


def test_a_tfds_test_split_without_labels_is_not_scored(tmp_path):
    _tiny_tfds(tmp_path, name="tiny_unlabelled", test_labels=False)
    kw = dict(PIPELINE, image_size=28)
    data = make_image_data(parse_data_spec("tfds:tiny_unlabelled"), str(tmp_path), **kw)
    assert data.test is None and "its test split has no labels and is not scored" in data.summary
    assert data.validation is not None and data.train_examples == 180


def _all_images(dataset):
    return _rows(np.concatenate([b[0].numpy() for b in dataset]))


def test_tfds_without_validation_carves_it_from_train_never_from_test(tmp_path):
    builder = _tiny_tfds(tmp_path)
    kw = dict(PIPELINE, image_size=28, crop_area_min=1.0, random_flip=False, eval_crop=1.0)
    data = make_image_data(parse_data_spec("tfds:tiny_digits"), str(tmp_path), **kw)
    assert (data.train_examples, data.validation_examples, data.test_examples) == (180, 20, 50)
    assert "validation carved from train" in data.summary
    validation, test = _all_images(data.validation), _all_images(data.test)
    assert len(validation) == 20 and len(test) == 50 and not validation & test
    # The validation images are the last 10 % of TFDS's train split, for every seed.
    tail = builder.as_dataset(split="train[90%:]", as_supervised=False)
    expected = {
        ((e["image"].numpy().astype(np.float32) / 127.5 - 1.0) * np.ones((1, 1, 3)))
        .astype(np.float32)
        .tobytes()
        for e in tail
    }
    assert validation == expected
    train_images = set()
    stream = iter(data.train(0, data.steps_per_pass))
    for _ in range(data.steps_per_pass):
        train_images |= _rows(next(stream)[0].numpy())
    assert not train_images & validation and not train_images & test
    other = make_image_data(parse_data_spec("tfds:tiny_digits"), str(tmp_path), **dict(kw, seed=9))
    assert _all_images(other.validation) == validation


@pytest.mark.parametrize("split", ["test", "test[:80%]"])
def test_a_run_trained_on_test_reports_no_test_split(split, tmp_path):
    # A dataset whose labelled split is `test` may still train; nothing is then
    # left to report: no test metrics from the images the model trained on.
    _tiny_tfds(tmp_path)
    kw = dict(PIPELINE, image_size=28, crop_area_min=1.0, random_flip=False, eval_crop=1.0)
    if "[" in split:  # tiny_digits has no validation split to go with a slice
        with pytest.raises(DataError, match="no validation split to go with"):
            make_image_data(parse_data_spec(f"tfds:tiny_digits:{split}"), str(tmp_path), **kw)
        assert (
            tfds_splits(parse_data_spec(f"tfds:x:{split}"), ["test", "validation"], 0.1)[2] is None
        )
        return
    data = make_image_data(parse_data_spec(f"tfds:tiny_digits:{split}"), str(tmp_path), **kw)
    assert data.test is None and data.test_examples == 0 and "no test split" in data.summary
    assert (data.train_examples, data.validation_examples) == (45, 5)  # carved from test


def test_tfds_stream_resumes_exactly(tmp_path):
    _tiny_tfds(tmp_path)
    data = make_image_data(parse_data_spec("tfds:tiny_digits"), str(tmp_path), **PIPELINE)
    stream = iter(data.train(0, 5))
    batches = [next(stream) for _ in range(30)]  # 22 steps a pass: crosses into pass 1
    for epoch in (3, 5):
        np.testing.assert_array_equal(
            first_batch(data.train(epoch, 5))[0], batches[5 * epoch][0].numpy()
        )


@pytest.mark.parametrize("source", ["embedded", "tfds"])
@pytest.mark.parametrize("pipelines,replicas", [(2, 2), (2, 4)])
def test_input_pipelines_read_their_slice_of_each_global_batch_and_decode_nothing_else(
    source, pipelines, replicas, tmp_path, monkeypatch
):
    # A worker of MultiWorkerMirroredStrategy (one input pipeline of several) yields
    # its replicas' slices of the global batches, and augments only its examples.
    from keras_swish.recipes.data import images as images_module

    if source == "tfds":
        _tiny_tfds(tmp_path)
        spec, data_dir = parse_data_spec("tfds:tiny_digits"), str(tmp_path)
    else:
        spec, data_dir = parse_data_spec(None), None
    data = make_image_data(spec, data_dir, **PIPELINE)
    assert data.per_pipeline_input
    share, per_replica = 8 // pipelines, 8 // replicas
    epoch, steps = 3, 5  # starts mid-pass (tfds: 22 steps a pass) and crosses into the next
    stream = iter(data.train(epoch, steps))
    global_batches = [next(stream) for _ in range(25)]

    transform = images_module.train_transform

    def recording(seen):  # the (key, position) seeds of the examples augmented
        def train_transform(image, seed, *args):
            record = tf.py_function(
                lambda s: seen.append(s.numpy().tolist()) or 0, [seed], tf.int64
            )
            out = transform(image, seed, *args)
            return out + tf.cast(record, out.dtype) * 0

        return train_transform

    slices = []
    for pipeline in range(pipelines):
        seen = []  # this pipeline's own (its iterator goes on prefetching)
        monkeypatch.setattr(images_module, "train_transform", recording(seen))
        context = tf.distribute.InputContext(pipelines, pipeline, replicas)
        local = iter(data.train(epoch, steps, input_context=context))
        per_step = replicas // pipelines
        slices.append([[next(local) for _ in range(per_step)] for _ in range(25)])
        positions = [position for _, position in seen]
        assert positions and all((p // share) % pipelines == pipeline for p in positions)
    for step, (images, labels) in enumerate(global_batches):
        parts = [batch for pipeline in slices for batch in pipeline[step]]
        assert all(int(part[0].shape[0]) == per_replica for part in parts)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), images.numpy())
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels.numpy())
