"""MNIST through TFDS and tf.data: decode once, cache, shuffle, batch, augment, prefetch."""

from __future__ import annotations

import logging
import math
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


def random_affine(images, seed, shift: float, rotation: float):
    """Rotates and shifts each image of a batch at random, in one affine warp.

    One `keras.ops.image.affine_transform` per batch does the work of Keras's
    `RandomRotation` followed by `RandomTranslation` (the same ranges, bilinear, zero fill)
    in a single resampling pass; on two CPU cores that pass competes with training.

    Args:
        images: float32 `[batch, height, width, channels]`.
        seed: a stateless seed, two int64 values.
        shift: largest translation as a fraction of the image side.
        rotation: largest rotation as a fraction of a full turn.
    """
    height, width = images.shape[1], images.shape[2]
    u = tf.random.stateless_uniform([tf.shape(images)[0], 3], seed, -1.0, 1.0)
    angle = u[:, 0] * rotation * 2 * math.pi
    dx, dy = u[:, 1] * shift * width, u[:, 2] * shift * height
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # Each output pixel p samples the input at R(angle) (p - centre - shift) + centre.
    zero = tf.zeros_like(cos)
    transform = tf.stack(
        [cos, -sin, cx - cos * (cx + dx) + sin * (cy + dy),
         sin, cos, cy - sin * (cx + dx) - cos * (cy + dy),
         zero, zero],
        axis=1,
    )
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant")


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
        shift: see `random_affine` (0 with `rotation` 0 turns augmentation off).
        rotation: see `random_affine`.
    """
    # Cache the decoded uint8 images (47 MB for all of MNIST) so decoding happens once.
    ds = ds.cache().shuffle(60_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if shift > 0 or rotation > 0:
        # One stateless seed per batch, new every epoch: the parallel map stays reproducible.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, s: (random_affine(batch[0], s, shift, rotation), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
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
