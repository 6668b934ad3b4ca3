"""Classifies image files with the exported int8 model through LiteRT, without TensorFlow.

Each file goes through the preprocessing contract (`app.preprocess`) and then the model;
results come one file at a time, so a bad file later in a folder cannot lose the good ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from app.litert import TFLiteClassifier
from app.preprocess import ImageFileError, NoDigitError, preprocess_file

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "exported" / "model_int8.tflite"


def predict_files(paths, model: str | os.PathLike = DEFAULT_MODEL, dark_on_light: bool = False) -> Iterator[dict]:
    """Classifies each file, yielding its result as soon as it is known.

    Args:
        paths: image file paths.
        model: the `.tflite` model.
        dark_on_light: force dark ink on a light background (default: detected per image).

    Yields:
        One dict per file: `file`, and `digit` and `probability`, or `error`.

    Raises:
        InputFileError: when the model file is missing or not a TFLite model.
    """
    classify = TFLiteClassifier(model)
    polarity = "dark-on-light" if dark_on_light else "auto"
    for path in paths:
        try:
            pixels = preprocess_file(path, polarity)
        except (ImageFileError, NoDigitError) as error:
            yield {"file": str(path), "error": str(error)}
            continue
        probabilities = classify(pixels[None, :, :, None].astype("float32"))[0]
        digit = int(probabilities.argmax())
        yield {"file": str(path), "digit": digit, "probability": round(float(probabilities[digit]), 4)}
