"""The reader: one graph from a raw RGB picture to the digit, for every runtime as it is.

`build_reader(ink_net, classifier)` chains three stages in one Keras model, all builtin TFLite ops:

1. **Ink.** A small fully-convolutional network (`build_ink_net`) maps the picture, stretched
   to `SIDE` x `SIDE`, to the share of each pixel covered by the digit's ink. It is trained on
   rendered pictures whose ink is known exactly (`app.render`), so paper, shadows, ruled lines,
   a desk, a drawn box, polarity and colour are what it learns to ignore, not rules.
2. **Fit.** As MNIST was made: the ink's box is scaled so its longer side is `BOX` pixels and
   its centre of mass lands on the middle of a 28 x 28 grid. The crop-and-scale is two matrix
   products whose area-sampling weights are computed in the graph (`fit_weights`).
3. **Classify.** The 28 x 28 classifier, and a refusal: a picture with less than
   `MIN_INK` pixels' worth of ink gets the eleventh label, `none`, with probability 1.
"""

from __future__ import annotations

import keras
from keras import layers

SIDE = 96  # the reader's input side: the runtime stretches any picture to it
SIZE = 28  # the classifier's input side
BOX = 20  # the digit's longer side once fitted, as MNIST fitted it
CENTRE = 14.0  # where the centre of mass goes (row and column)
INK_LEVEL = 0.3  # a pixel at least this share inked belongs to the digit's box
MIN_INK = 4.0  # less ink than this many fully inked input pixels is no digit
LABELS = [str(d) for d in range(10)] + ["none"]


def build_ink_net(side: int = SIDE, width: int = 24, name: str = "ink_net") -> keras.Model:
    """The ink stage: uint8-valued RGB `[batch, side, side, 3]` to ink shares `[batch, side, side, 1]`.

    An encoder of three stride-2 convolutions and dilated ones at an eighth of the resolution
    (each output sees the whole picture, enough to tell a stroke from a sheet's edge, a shadow's
    or a ruled line), and a decoder that brings each coarser view back beside the finer one;
    every convolution after the first is depthwise-separable.
    """
    pixels = keras.Input((side, side, 3), name="pixels")
    x = layers.Rescaling(1 / 255, name="scale")(pixels)

    def conv(tensor, filters, label, **options):
        # Depthwise-separable: a ninth of a full 3x3 convolution's weights at these widths.
        return layers.SeparableConv2D(filters, 3, padding="same", activation="relu", name=label, **options)(tensor)

    full = layers.Conv2D(width // 2, 3, padding="same", activation="relu", name="full")(x)
    half = conv(conv(full, width, "down1", strides=2), width, "half")
    quarter = conv(conv(half, width, "down2", strides=2), width, "quarter")
    eighth = conv(quarter, width, "down3", strides=2)
    eighth = conv(conv(eighth, width, "context2", dilation_rate=2), width, "context4", dilation_rate=4)
    up = layers.UpSampling2D(2, interpolation="bilinear", name="up0")(eighth)
    quarter = conv(layers.Concatenate(name="join0")([up, quarter]), width, "mix0")
    up = layers.UpSampling2D(2, interpolation="bilinear", name="up1")(quarter)
    half = conv(layers.Concatenate(name="join1")([up, half]), width, "mix1")
    up = layers.UpSampling2D(2, interpolation="bilinear", name="up2")(half)
    full = conv(layers.Concatenate(name="join2")([up, full]), width // 2, "mix2")
    ink = layers.Conv2D(1, 1, activation="sigmoid", name="ink")(full)
    return keras.Model(pixels, ink, name=name)



def fit_weights(centre, scale, side: int, size: int = SIZE):
    """Area-sampling weights `[batch, size, side]` of a crop-and-scale along one axis.

    Output pixel `u` covers the input interval from `centre + (u - CENTRE) / scale`, one output
    pixel long; each input pixel `j` weighs its overlap with that interval times `scale`, so
    the output is the mean ink over the interval (the nearest pixel's when enlarging).

    Args:
        centre: where the output's `CENTRE` lies, in input pixels, `[batch]`.
        scale: output pixels per input pixel, `[batch]`.
        side: the input side.
        size: the output side.
    """
    from keras import ops

    u = ops.arange(size, dtype="float32")[None, :, None]
    j = ops.arange(side, dtype="float32")[None, None, :]
    scale = scale[:, None, None]
    start = centre[:, None, None] + (u - CENTRE) / scale
    overlap = ops.maximum(ops.minimum(start + 1 / scale, j + 1) - ops.maximum(start, j), 0.0)
    return overlap * scale


class FitDigit(layers.Layer):
    """Ink shares `[batch, side, side, 1]` to an MNIST-style digit `[batch, 28, 28, 1]` (0..255).

    The box of the pixels at least `INK_LEVEL` inked is scaled so its longer side is `BOX`
    pixels, and the ink's centre of mass goes to (`CENTRE`, `CENTRE`), as MNIST was made.
    """

    def call(self, ink):
        from keras import ops

        ink = ink[..., 0]
        side = ink.shape[1]
        index = ops.arange(side, dtype="float32")
        inked = ink >= INK_LEVEL
        extents = []
        for axis in (2, 1):  # rows, then columns
            lit = ops.any(inked, axis=axis)
            first = ops.min(ops.where(lit, index, float(side)), axis=1)
            last = ops.max(ops.where(lit, index, -1.0), axis=1)
            extents.append(ops.maximum(last - first + 1, 1.0))
        scale = BOX / ops.maximum(extents[0], extents[1])
        mass = ops.maximum(ops.sum(ink, axis=(1, 2)), 1e-6)
        centre_y = ops.sum(ops.sum(ink, axis=2) * (index + 0.5), axis=1) / mass
        centre_x = ops.sum(ops.sum(ink, axis=1) * (index + 0.5), axis=1) / mass
        rows, columns = fit_weights(centre_y, scale, side), fit_weights(centre_x, scale, side)
        digit = ops.matmul(ops.matmul(rows, ink), ops.transpose(columns, (0, 2, 1)))
        return ops.clip(digit * 255.0, 0.0, 255.0)[..., None]


class Refusal(layers.Layer):
    """Digit probabilities `[batch, 10]` and ink to 11 probabilities, the last `none`.

    A picture with less ink in all than `MIN_INK` fully inked pixels holds no digit.
    """

    def call(self, probabilities, ink):
        from keras import ops

        none = ops.cast(ops.sum(ink, axis=(1, 2, 3)) < MIN_INK, "float32")[:, None]
        return ops.concatenate([probabilities * (1 - none), none], axis=1)


def build_reader(ink_net: keras.Model, classifier, side: int = SIDE) -> keras.Model:
    """The reader: RGB pixels `[batch, side, side, 3]` (0..255) to 11 probabilities (`LABELS`).

    Args:
        ink_net: from `build_ink_net`, trained.
        classifier: a layer or model from MNIST-style pixels `[batch, 28, 28, 1]` to 10 probabilities.
        side: the input side.
    """
    pixels = keras.Input((side, side, 3), name="pixels")
    ink = ink_net(pixels)
    digit = FitDigit(name="fit")(ink)
    probabilities = Refusal(name="refusal")(classifier(digit), ink)
    return keras.Model(pixels, probabilities, name="digit_reader")


def exported_classifier(exported) -> keras.Model:
    """The exported classifier as a Keras model (one view), rebuilt from `exported/`.

    The model is built from the configuration in `metadata.json` and takes its weights from
    the SavedModel's variables, matched by their paths (`layer/weight`).
    """
    import json
    from pathlib import Path

    import tensorflow as tf

    from app.config import ModelConfig
    from app.model import build_model

    exported = Path(exported)
    config = json.loads((exported / "metadata.json").read_text())["provenance"]["config"]
    model = build_model(ModelConfig.from_dict(config))
    values = {v.name.split(":")[0]: v.numpy() for v in tf.saved_model.load(str(exported / "saved_model")).variables}
    for weight in model.weights:
        weight.assign(values[weight.path])
    return model
