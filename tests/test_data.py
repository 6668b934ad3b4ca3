"""The MNIST pipeline on real slices of the splits (CI has ../shared beside the clone)."""

import numpy as np
import pytest

from app import data


@pytest.fixture(scope="module")
def test_slice():
    return data.load_split("test[:256]")


def test_raw_split_is_uint8_images_and_int64_labels(test_slice):
    image, label = next(iter(test_slice))
    assert image.shape == (28, 28, 1) and image.dtype.name == "uint8"
    assert label.dtype.name == "int64"
    assert int(test_slice.cardinality()) == 256


def test_full_splits_have_the_mnist_sizes():
    assert int(data.load_split("train").cardinality()) == 60_000
    assert int(data.load_split("test").cardinality()) == 10_000


def test_eval_pipeline_keeps_order_and_raw_pixel_range(test_slice):
    batches = list(data.eval_pipeline(test_slice, batch_size=100))
    assert [b[0].shape[0] for b in batches] == [100, 100, 56]
    images, labels = batches[0]
    assert images.dtype.name == "float32" and images.shape == (100, 28, 28, 1)
    assert float(np.min(images)) == 0.0 and float(np.max(images)) == 255.0
    # TFDS stores the test split in its own fixed order; evaluation reads it as stored.
    assert labels.numpy()[:5].tolist() == [2, 0, 4, 8, 7]
    again = next(iter(data.eval_pipeline(test_slice, batch_size=100)))[1]
    assert again.numpy().tolist() == labels.numpy().tolist()


def test_train_pipeline_shuffles_augments_and_batches(test_slice):
    plain = next(iter(data.eval_pipeline(test_slice, batch_size=256)))[0].numpy()
    images, labels = next(iter(data.train_pipeline(test_slice, 64, seed=0, shift=0.1, rotation=0.05)))
    assert images.dtype.name == "float32" and images.shape == (64, 28, 28, 1)
    assert labels.shape == (64,)
    assert 0.0 <= float(np.min(images)) and float(np.max(images)) <= 255.0
    # Augmented images are new images, not rows of the plain split.
    assert not any(np.array_equal(images[0], p) for p in plain)
    unaugmented = next(iter(data.train_pipeline(test_slice, 64, seed=0)))[0].numpy()
    assert any(np.array_equal(unaugmented[0], p) for p in plain)


def _blob(centre=(14, 14)):
    """One image with a 4x4 square of 255s whose top-left corner is `centre`."""
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, centre[0]:centre[0] + 4, centre[1]:centre[1] + 4] = 255.0
    return image


def _centre_of_mass(image):
    rows, cols = np.indices(image.shape[1:3])
    weights = image[0, :, :, 0]
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


def test_random_affine_without_ranges_is_the_identity():
    image = _blob()
    out = data.random_affine(image, [1, 2], shift=0.0, rotation=0.0).numpy()
    np.testing.assert_array_equal(out, image)


def test_random_affine_shifts_within_the_range_and_keeps_the_ink():
    # 0.1 of 28 pixels: the square moves at most 2.8 pixels along each axis.
    moved = [data.random_affine(_blob(), [s, 0], shift=0.1, rotation=0.0).numpy() for s in range(20)]
    offsets = np.array([_centre_of_mass(m) - _centre_of_mass(_blob()) for m in moved])
    assert np.abs(offsets).max() <= 2.8 + 1e-4
    assert np.abs(offsets).max() > 1.0  # it does move
    # Bilinear resampling away from the border keeps the total ink.
    np.testing.assert_allclose([m.sum() for m in moved], _blob().sum(), rtol=1e-4)


def test_random_affine_rotates_about_the_image_centre():
    # A square centred on the image centre (13.5, 13.5) stays centred under any rotation.
    centred = _blob(centre=(12, 12))
    for s in range(5):
        out = data.random_affine(centred, [s, 1], shift=0.0, rotation=0.05).numpy()
        assert not np.array_equal(out, centred)
        np.testing.assert_allclose(_centre_of_mass(out), [13.5, 13.5], atol=1e-3)


def test_random_affine_is_a_function_of_its_seed():
    images = np.repeat(_blob(), 3, axis=0)
    a = data.random_affine(images, [7, 7], shift=0.08, rotation=0.02).numpy()
    b = data.random_affine(images, [7, 7], shift=0.08, rotation=0.02).numpy()
    c = data.random_affine(images, [7, 8], shift=0.08, rotation=0.02).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # each image of a batch draws its own transform


def test_missing_data_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download_host_reachable", lambda timeout=5.0: False)
    with pytest.raises(data.DataUnavailableError) as error:
        data.load_split("test", data_dir=str(tmp_path))
    message = str(error.value)
    assert f"MNIST is not in {tmp_path} and cannot be downloaded (offline)" in message
    assert "TFDS_DATA_DIR" in message and "\n" not in message


def test_train_pipeline_is_reproducible_and_new_each_epoch(test_slice):
    ds = data.train_pipeline(test_slice, 256, seed=3, shift=0.08, rotation=0.02)
    first, second = (next(iter(ds))[0].numpy() for _ in range(2))
    again = next(iter(data.train_pipeline(test_slice, 256, seed=3, shift=0.08, rotation=0.02)))[0].numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


def test_a_resumed_run_sees_its_own_epoch_not_epoch_0_again(test_slice):
    # Pass k of a pipeline started at epoch 0 equals pass 0 of one started at epoch k.
    fresh = data.train_pipeline(test_slice, 64, seed=5, shift=0.08, rotation=0.02)
    passes = [[b for b in fresh] for _ in range(3)]
    resumed = [b for b in data.train_pipeline(test_slice, 64, seed=5, shift=0.08, rotation=0.02, first_epoch=2)]
    for (x, y), (rx, ry) in zip(passes[2], resumed):
        np.testing.assert_array_equal(x.numpy(), rx.numpy())
        np.testing.assert_array_equal(y.numpy(), ry.numpy())
    assert not np.array_equal(passes[0][0][1].numpy(), resumed[0][1].numpy())
    assert sum(int(b[1].shape[0]) for b in resumed) == 256  # every image once per epoch
    labels = np.concatenate([b[1].numpy() for b in resumed])
    np.testing.assert_array_equal(np.sort(labels), np.sort(np.concatenate([b[1].numpy() for b in passes[0]])))


def test_epochs_from_clean_from_show_the_stored_images_in_the_epoch_order(test_slice):
    stored = {image.tobytes() for image in next(iter(data.eval_pipeline(test_slice, batch_size=256)))[0].numpy()}
    augment = dict(shift=0.08, rotation=0.033, stroke=0.4)
    ds = data.train_pipeline(test_slice, 256, seed=1, clean_from=1, **augment)
    epoch0, epoch1, epoch2 = (next(iter(ds))[0].numpy() for _ in range(3))
    assert sum(image.tobytes() in stored for image in epoch0) == 0
    # Epochs 1 and 2 are the stored images in the order a pipeline without augmentation gives.
    plain = data.train_pipeline(test_slice, 256, seed=1, first_epoch=1)
    np.testing.assert_array_equal(epoch1, next(iter(plain))[0].numpy())
    np.testing.assert_array_equal(epoch2, next(iter(plain))[0].numpy())
    assert not np.array_equal(epoch1, epoch2)
    resumed = data.train_pipeline(test_slice, 256, seed=1, first_epoch=1, clean_from=1, **augment)
    np.testing.assert_array_equal(next(iter(resumed))[0].numpy(), epoch1)


def test_random_stroke_thickens_and_thins_within_its_range():
    import tensorflow as tf

    bar = np.zeros((64, 28, 28, 1), np.float32)
    bar[:, 8:20, 12:16] = 255.0  # 12 x 4 pixels of ink
    out = data.random_stroke(tf.constant(bar), [3, 4], 0.5).numpy()
    ink = out.sum(axis=(1, 2, 3)) / bar[0].sum()
    # A full 3x3 dilation grows the bar to 14 x 6 (1.75x the ink), an erosion shrinks it to
    # 10 x 2 (0.4167x); at most half of either way is taken.
    assert 1 - 0.5 * (1 - 20 / 48) - 1e-5 <= ink.min() < 0.85
    assert 1.15 < ink.max() <= 1 + 0.5 * (84 / 48 - 1) + 1e-5
    assert np.array_equal(data.random_stroke(tf.constant(bar), [3, 4], 0.0).numpy(), bar)
    assert np.array_equal(out, data.random_stroke(tf.constant(bar), [3, 4], 0.5).numpy())


def test_random_blur_shows_a_share_of_the_images_at_a_low_resolution():
    import tensorflow as tf

    bar = np.zeros((64, 28, 28, 1), np.float32)
    bar[:, 4:24, 12:15] = 255.0  # a 20 x 3 stroke, MNIST's digit height
    out = data.random_blur(tf.constant(bar), [5, 6], 0.25).numpy()
    changed = [i for i in range(64) if not np.array_equal(out[i], bar[i])]
    assert 6 <= len(changed) <= 26  # a quarter of 64 is 16, give or take four spreads
    # Each changed image is the bar averaged down to one of the sides and resized back.
    candidates = [
        tf.image.resize(tf.image.resize(bar[:1], [side, side], method="area"), [28, 28]).numpy()[0]
        for side in range(data.BLUR_SIDES[0], data.BLUR_SIDES[1] + 1)
    ]
    for i in changed:
        assert min(np.abs(out[i] - c).max() for c in candidates) < 1e-3
        assert out[i].max() < 240 and abs(out[i].sum() / bar[i].sum() - 1) < 0.05  # softer, same ink
    assert np.array_equal(data.random_blur(tf.constant(bar), [5, 6], 0.0).numpy(), bar)
    assert np.array_equal(out, data.random_blur(tf.constant(bar), [5, 6], 0.25).numpy())
