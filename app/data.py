"""MNIST through TFDS and tf.data: decode once, cache, shuffle, batch, augment, prefetch."""

from __future__ import annotations

import logging
import math
import os
import socket
import urllib.parse

import keras
import tensorflow as tf
import tensorflow_datasets as tfds

from app.errors import MissingDataError


class DataUnavailableError(MissingDataError):
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


def random_stroke(images, seed, stroke: float):
    """Thickens or thins each image's strokes at random, as other pens and fingers draw.

    Each image moves a random fraction t in [-stroke, stroke] of the way to its 3x3 grey
    dilation (t > 0, wider strokes) or erosion (t < 0, narrower ones), so 1 is a full pixel
    more or less ink on each side; MNIST's strokes are only 2-3 pixels wide.

    Args:
        images: float32 `[batch, height, width, channels]`.
        seed: a stateless seed, two int64 values.
        stroke: the largest fraction of a dilation or erosion.
    """
    t = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed, -stroke, stroke)
    dilated = tf.nn.max_pool2d(images, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
    return images + tf.abs(t) * (tf.where(t > 0, dilated, eroded) - images)


BLUR_SIDES = (10, 14)  # the low resolutions of `random_blur`, in pixels per side


def random_blur(images, seed, blur: float):
    """Shows a random share of a batch's images at a low resolution, as scans of small digits.

    A chosen image is averaged down to a side between `BLUR_SIDES` (one per batch; its 20-px digit
    then spans 7 to 10 samples, as an 8x8 pen-tablet digit does) and resized back to
    28x28 bilinearly: blurred strokes and filled-in loops, which MNIST's sharp scans lack.

    Args:
        images: float32 `[batch, 28, 28, channels]`.
        seed: a stateless seed, two int64 values.
        blur: the share of images shown at low resolution (0 turns it off).
    """
    height, width = images.shape[1], images.shape[2]
    side = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 2),
                                       BLUR_SIDES[0], BLUR_SIDES[1] + 1, dtype=tf.int32)
    small = tf.image.resize(images, tf.stack([side, side]), method="area")
    blurred = tf.image.resize(small, [height, width], method="bilinear")
    chosen = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed) < blur
    return tf.where(chosen, blurred, images)


def _to_float(images, labels):
    return tf.cast(images, tf.float32), labels


def in_memory(ds: tf.data.Dataset) -> tuple[tf.Tensor, tf.Tensor]:
    """Decodes a whole split once into two tensors: uint8 images and int64 labels.

    All of MNIST's train split is 47 MB, so indexing it in memory is cheaper than a shuffle
    buffer, and lets each epoch's order be a pure function of the seed and the epoch.
    """
    count = int(ds.cardinality())
    return next(iter(ds.batch(max(count, 1))))


def epoch_order(count: int, seed: int, epoch) -> tf.Tensor:
    """The order of the `count` training images in `epoch`: a permutation of the seed and epoch.

    Stateless, so a run resumed at epoch k sees epoch k's order, not epoch 0's again.
    """
    return tf.random.experimental.stateless_shuffle(
        tf.range(count, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    )


def train_pipeline(
    ds: tf.data.Dataset,
    batch_size: int,
    seed: int,
    shift: float = 0.0,
    rotation: float = 0.0,
    first_epoch: int = 0,
    stroke: float = 0.0,
    blur: float = 0.0,
    clean_from: int | None = None,
) -> tf.data.Dataset:
    """Shuffled, augmented float32 batches of raw 0..255 pixels for training.

    Every pass over the returned dataset is one epoch; pass `e` (counted from
    `first_epoch`) draws its order and its augmentation from `(seed, e)` alone, so the
    batches of epoch `e` are the same whether the run got there in one go or resumed.

    Args:
        ds: decoded `(image, label)` pairs, as `load_split` returns them.
        batch_size: images per batch.
        seed: seed of the shuffle and of the augmentation.
        shift: see `random_affine` (0 with `rotation` 0 turns augmentation off).
        rotation: see `random_affine`.
        first_epoch: the epoch the first pass is (a resumed run starts past 0).
        stroke: see `random_stroke` (0 turns it off).
        blur: see `random_blur` (0 turns it off).
        clean_from: the first epoch shown unaugmented, and every epoch after it (None
            augments every epoch).
    """
    images, labels = in_memory(ds)
    count = int(images.shape[0])
    steps = -(-count // batch_size)
    # Each new iterator (Keras makes one per epoch) takes the next epoch number.
    epoch_counter = tf.Variable(first_epoch, dtype=tf.int64, trainable=False, name="epoch")

    def one_epoch(_):
        epoch = epoch_counter.assign_add(1) - 1
        order = tf.data.Dataset.from_tensor_slices(epoch_order(count, seed, epoch)).batch(batch_size)
        return tf.data.Dataset.zip(order, tf.data.Dataset.range(steps)).map(lambda idx, step: (idx, epoch, step))

    def augment(batch, epoch, step):
        # A stateless seed per (epoch, step): the parallel map stays reproducible.
        step_seed = tf.stack([epoch, step]) + seed * 1_000_003
        if stroke > 0:
            batch = random_stroke(batch, tf.random.experimental.stateless_fold_in(step_seed, 1), stroke)
        if blur > 0:
            batch = random_blur(batch, tf.random.experimental.stateless_fold_in(step_seed, 3), blur)
        if shift > 0 or rotation > 0:
            batch = random_affine(batch, step_seed, shift, rotation)
        return batch

    def gather(idx, epoch, step):
        batch, targets = tf.cast(tf.gather(images, idx), tf.float32), tf.gather(labels, idx)
        if clean_from is None:
            return augment(batch, epoch, step), targets
        # The epoch is a tensor of the pipeline, so the switch happens inside it: a run resumed
        # past `clean_from` gets clean epochs, just as one that got there in one go.
        return tf.cond(epoch < clean_from, lambda: augment(batch, epoch, step), lambda: batch), targets

    ds = tf.data.Dataset.range(1).flat_map(one_epoch).apply(tf.data.experimental.assert_cardinality(steps))
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(ds: tf.data.Dataset, batch_size: int = 1000) -> tf.data.Dataset:
    """Float32 batches of raw 0..255 pixels in the split's order, for evaluation.

    Args:
        ds: decoded `(image, label)` pairs, as `load_split` returns them.
        batch_size: images per batch (evaluation is cheap, so large batches).
    """
    return ds.cache().batch(batch_size).map(_to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
