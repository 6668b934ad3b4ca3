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


def test_missing_data_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download_host_reachable", lambda timeout=5.0: False)
    with pytest.raises(data.DataUnavailableError) as error:
        data.load_split("test", data_dir=str(tmp_path))
    message = str(error.value)
    assert f"MNIST is not in {tmp_path} and cannot be downloaded (offline)" in message
    assert "TFDS_DATA_DIR" in message and "\n" not in message
