"""Classifies image files with the exported int8 model through LiteRT, without TensorFlow.

Images of any size or colour are turned into MNIST-style digits: grayscale, white ink on
black, the ink's bounding box scaled to fit 20x20 and centred by its centre of mass in a
28x28 frame (how the MNIST digits were made).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.litert import TFLiteClassifier

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "exported" / "model_int8.tflite"


class ImageError(ValueError):
    """A file that cannot be classified; the message is one line for the user."""


def load_digit(path: str | os.PathLike, dark_on_light: bool = False) -> np.ndarray:
    """Reads an image file as an MNIST-style digit.

    Args:
        path: a PNG, JPEG or other image Pillow can read.
        dark_on_light: the drawing is dark ink on a light background (pen on paper);
            it is inverted to MNIST's light ink on black.

    Returns:
        Raw pixels, float32 `[28, 28, 1]` in 0..255.

    Raises:
        ImageError: for a missing, empty, directory or non-image file.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageError("is a directory")
    if not path.exists():
        raise ImageError("no such file")
    if path.stat().st_size == 0:
        raise ImageError("empty file")
    try:
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as error:
        raise ImageError(f"not an image ({type(error).__name__})") from None
    if dark_on_light:
        gray = 255.0 - gray
    return mnist_style(gray)[..., None]


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """Crops the ink, fits it into 20x20 keeping its aspect, and centres it by mass in 28x28.

    Args:
        gray: a 2-D array of light-on-dark pixels, 0..255.
    """
    ink = gray > 0.2 * gray.max() if gray.max() > 0 else np.zeros_like(gray, bool)
    if not ink.any():
        return np.asarray(Image.fromarray(gray.astype(np.uint8)).resize((28, 28)), np.float32)
    rows, cols = np.where(ink.any(1))[0], np.where(ink.any(0))[0]
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), np.float32)
    frame = np.zeros((28, 28), np.float32)
    top, left = (28 - digit.shape[0]) // 2, (28 - digit.shape[1]) // 2
    frame[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    # Shift so the centre of mass sits at the centre, as in MNIST.
    ys, xs = np.indices(frame.shape)
    total = frame.sum()
    dy = int(round(13.5 - (ys * frame).sum() / total))
    dx = int(round(13.5 - (xs * frame).sum() / total))
    frame = np.roll(frame, (dy, dx), axis=(0, 1))
    return np.clip(frame, 0, 255)


def predict_files(paths, model: str | os.PathLike = DEFAULT_MODEL, dark_on_light: bool = False) -> list[dict]:
    """Classifies each file; a file that cannot be read gets an error, the others still run.

    Args:
        paths: image file paths.
        model: the `.tflite` model.
        dark_on_light: see `load_digit`.

    Returns:
        One dict per file: `file`, and `digit` and `probability`, or `error`.
    """
    if not Path(model).is_file():
        raise FileNotFoundError(f"no model at {model}; run `make export` or pass --model")
    classify = TFLiteClassifier(model)
    results = []
    for path in paths:
        try:
            pixels = load_digit(path, dark_on_light)
        except ImageError as error:
            results.append({"file": str(path), "error": str(error)})
            continue
        probabilities = classify(pixels[None])[0]
        digit = int(probabilities.argmax())
        results.append({"file": str(path), "digit": digit, "probability": round(float(probabilities[digit]), 4)})
    return results
