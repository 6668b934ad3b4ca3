"""MNIST through TFDS and tf.data: decode once, cache, shuffle, batch, augment, prefetch."""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse

import tensorflow as tf
import tensorflow_datasets as tfds
import keras

# Quick mode trains and evaluates on these small slices of the real splits.
QUICK_TRAIN = 2048
QUICK_TEST = 1024


# Validation mode holds out the last images of the train split; test is never read then.
VALIDATION_SIZE = 10_000


def split_names(quick: bool = False, validation: bool = False) -> tuple[str, str]:
    """Returns the TFDS split strings `(fit, evaluate)` of a run.

    Args:
        quick: small slices, for smoke tests.
        validation: evaluate on images held out from the train split instead of on the test
            split, so recipe and tuning decisions never see the test set.
    """
    if validation:
        fit, held_out = f"train[:-{VALIDATION_SIZE}]", f"train[-{VALIDATION_SIZE}:]"
        if quick:
            fit, held_out = f"train[:{QUICK_TRAIN}]", f"train[-{QUICK_TEST}:]"
        return fit, held_out
    if quick:
        return f"train[:{QUICK_TRAIN}]", f"test[:{QUICK_TEST}]"
    return "train", "test"


class DataUnavailableError(RuntimeError):
    """MNIST is neither prepared locally nor downloadable."""


def _download_host_reachable(timeout: float = 5.0) -> bool:
    """Whether TFDS's MNIST download host answers (so an offline machine fails in seconds).

    Without this check, TFDS retries an offline download for minutes before it gives up.
    """
    from tensorflow_datasets.image_classification import mnist

    host = urllib.parse.urlparse(getattr(mnist, "_MNIST_URL", "")).hostname
    if not host:  # a TFDS version that moved the URL: let tfds.load try and report
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_split(split: str, data_dir: str | None = None) -> tf.data.Dataset:
    """Loads one MNIST split as `(uint8 image [28, 28, 1], int64 label)` pairs.

    This is plain `tfds.load("mnist")`: with internet it downloads as usual; offline it reads
    the prepared copy under `data_dir` (default: `TFDS_DATA_DIR`, else ~/tensorflow_datasets).

    Args:
        split: a TFDS split string, such as "train", "test" or "train[:2048]".
        data_dir: where TFDS looks for (or writes) the prepared data set.

    Raises:
        DataUnavailableError: with a one-line explanation when MNIST cannot be had.
    """
    # TFDS warns through absl about empty variant folders while it looks; our error says it all.
    logging.getLogger("absl").setLevel(logging.ERROR)
    builder = tfds.builder("mnist", data_dir=data_dir)
    where = os.path.dirname(os.path.dirname(builder.data_dir))  # .../mnist/3.0.1 -> root
    hint = (
        "point TFDS_DATA_DIR at a prepared copy, e.g. "
        "export TFDS_DATA_DIR=$(cd ../shared/data/tensorflow_datasets && pwd)"
    )
    if not builder.is_prepared() and not _download_host_reachable():
        raise DataUnavailableError(f"MNIST is not in {where} and cannot be downloaded (offline); {hint}")
    try:
        return tfds.load("mnist", split=split, as_supervised=True, data_dir=data_dir)
    except Exception as error:  # TFDS raises many kinds; all mean the same to the user.
        raise DataUnavailableError(
            f"MNIST could not be loaded from {where} ({type(error).__name__}: {error}); {hint}"
        ) from None


def augmenter(shift: float, rotation: float, seed: int) -> keras.Sequential:
    """Random small rotations and shifts, the way handwriting varies.

    Args:
        shift: largest translation as a fraction of the image side (0 turns it off).
        rotation: largest rotation as a fraction of a full turn (0 turns it off).
        seed: seed of the random transforms.
    """
    steps = []
    if rotation > 0:
        steps.append(keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed))
    if shift > 0:
        steps.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1))
    return keras.Sequential(steps, name="augment")


def _to_float(images, labels):
    return tf.cast(images, tf.float32), labels


def train_pipeline(
    ds: tf.data.Dataset, batch_size: int, seed: int, shift: float = 0.0, rotation: float = 0.0
) -> tf.data.Dataset:
    """Shuffled, augmented float32 batches of raw 0..255 pixels for training.

    Args:
        ds: decoded `(image, label)` pairs, as `load_split` returns them.
        batch_size: images per batch.
        seed: seed of the shuffle and of the augmentation.
        shift: see `augmenter`.
        rotation: see `augmenter`.
    """
    # Cache the decoded uint8 images (47 MB for all of MNIST) so decoding happens once.
    ds = ds.cache().shuffle(60_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if shift > 0 or rotation > 0:
        augment = augmenter(shift, rotation, seed)
        # Augmenting whole batches is one vectorised op per batch, not one per image.
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_pipeline(ds: tf.data.Dataset, batch_size: int = 1000) -> tf.data.Dataset:
    """Float32 batches of raw 0..255 pixels in the split's order, for evaluation.

    Args:
        ds: decoded `(image, label)` pairs, as `load_split` returns them.
        batch_size: images per batch (evaluation is cheap, so large batches).
    """
    return ds.cache().batch(batch_size).map(_to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
