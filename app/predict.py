"""Classifies image files with the exported int8 model through LiteRT, without TensorFlow.

Each file goes through the preprocessing contract (`app.preprocess`) and then the model;
results come one file at a time, so a bad file later in a folder cannot lose the good ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from app.litert import TFLiteClassifier
from app.preprocess import ImageFileError, NoDigitError, preprocess_file

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "exported" / "model_int8.tflite"
# Below this top probability an answer is marked "unsure" (the README reports how often such
# answers are right on the development set).
UNSURE_BELOW = 0.6


def predict_files(paths, model: str | os.PathLike = DEFAULT_MODEL, polarity: str = "auto", top: int = 1,
                  save: Path | None = None) -> Iterator[dict]:
    """Classifies each file, yielding its result as soon as it is known.

    Args:
        paths: image file paths.
        model: the `.tflite` model.
        polarity: "auto" (detected per image), "light-on-dark" or "dark-on-light".
        top: how many of the likeliest digits to list.
        save: a folder to write each 28x28 input into (`<file name>.png`), or None.

    Yields:
        One dict per file: `file`, and `digit`, `probability`, `unsure` and `top` (the `top`
        likeliest `{digit, probability}`), or `error`.

    Raises:
        InputFileError: when the model file is missing or not a TFLite model.
    """
    classify = TFLiteClassifier(model)
    for path in paths:
        try:
            pixels = preprocess_file(path, polarity)
        except (ImageFileError, NoDigitError) as error:
            yield {"file": str(path), "error": str(error)}
            continue
        if save is not None:
            Image.fromarray(pixels).save(Path(save) / f"{Path(path).name}.png")
        probabilities = classify(pixels[None, :, :, None].astype(np.float32))[0]
        order = np.argsort(-probabilities, kind="stable")[:top]
        digit = int(order[0])
        yield {
            "file": str(path),
            "digit": digit,
            "probability": round(float(probabilities[digit]), 4),
            "unsure": bool(probabilities[digit] < UNSURE_BELOW),
            "top": [{"digit": int(d), "probability": round(float(probabilities[d]), 4)} for d in order],
        }
