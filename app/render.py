"""Training pictures for the reader: the development set's renderers on MNIST train digits.

Every picture comes with its answer: the digit (or `NO_DIGIT`) and where its ink lies,
because the renderer drew the ink itself. Pictures are stretched to the reader's square input
as a runtime stretches them (bilinear, no aspect kept, as MediaPipe's `ImageClassifier` does);
the ink is area-averaged to the same grid. The digits come from the train split only: the
development set's parts, drawn from the test split, stay for reporting.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from app import devset

# Kinds of training picture and their shares (a drawing of each kind per 100 pictures).
KINDS = {
    "photo": 16, "lined": 10, "desk": 8, "tilted": 10, "shadow": 12, "boxed": 6, "far": 3,
    "canvas": 10, "tight": 5, "mnist": 12, "blank": 8,
}


def scene(digit: np.ndarray, label: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One picture of `digit` (MNIST, uint8 28x28, light on dark) of the given kind.

    Returns:
        The RGB picture (uint8 `[h, w, 3]`), its ink coverage (float `[h, w]`) and its label
        (`devset.NO_DIGIT` for a blank picture).
    """
    if kind == "blank":
        digit, label = np.zeros_like(digit), devset.NO_DIGIT
        kind = str(rng.choice(["photo", "lined", "desk", "tilted", "shadow", "far", "canvas", "uniform"]))
        if kind == "uniform":  # a flat or noisy picture with nothing on it
            side = int(rng.integers(32, 400))
            flat = np.full((side, side, 3), rng.uniform(0, 255, 3)) + rng.normal(0, rng.uniform(0, 40), (side, side, 1))
            return np.clip(flat, 0, 255).astype(np.uint8), np.zeros((side, side), np.float32), label
    if kind == "canvas":
        picture, ink = devset.canvas(digit, rng)
        return np.asarray(picture), ink, label
    if kind == "mnist":  # the digit as it is, or inverted, as a scan would give it
        ink = digit.astype(np.float32) / 255
        picture = 255 - digit if rng.random() < 0.4 else digit
        return np.repeat(picture[..., None], 3, axis=-1), ink, label
    if kind == "tight":
        ys, xs = np.nonzero(digit)
        crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        picture, _ = devset.cut_out(digit, rng)
        ink = np.asarray(Image.fromarray(crop).resize(picture.size, Image.BILINEAR), np.float32) / 255
        return np.asarray(picture.convert("RGB")), ink, label
    picture, _, ink = devset.photo_with_ink(
        digit, rng, lined=kind == "lined", desk=kind in ("desk", "tilted"), far=kind == "far",
        boxed=kind == "boxed", tilted=kind == "tilted", hard_shadow=kind == "shadow")
    buffer = io.BytesIO()  # JPEG, as a phone saves a photo
    picture.save(buffer, format="JPEG", quality=int(rng.integers(35, 95)))
    return np.asarray(Image.open(buffer).convert("RGB")), ink, label


def stretch(picture: np.ndarray, ink: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture stretched to `side` x `side` as a runtime does (bilinear), its ink area-averaged."""
    import cv2

    pixels = cv2.resize(picture, (side, side), interpolation=cv2.INTER_LINEAR)
    target = cv2.resize(ink, (side, side), interpolation=cv2.INTER_AREA if ink.shape[0] > side else cv2.INTER_LINEAR)
    return pixels, np.clip(target, 0, 1)


def _batch(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digits, labels, seed, side = args
    rng = np.random.default_rng(seed)
    names, weights = list(KINDS), np.array(list(KINDS.values()), np.float64)
    pixels = np.empty((len(digits), side, side, 3), np.uint8)
    inks = np.empty((len(digits), side, side), np.float32)
    out_labels = np.empty(len(digits), np.int64)
    for i, (digit, label) in enumerate(zip(digits, labels)):
        kind = str(rng.choice(names, p=weights / weights.sum()))
        picture, ink, out_labels[i] = scene(digit, int(label), kind, rng)
        pixels[i], inks[i] = stretch(picture, ink, side)
    return pixels, inks, out_labels


def render(digits: np.ndarray, labels: np.ndarray, seed: int, side: int,
           workers: int | None = None, chunk: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders one training picture per digit, in parallel, reproducibly for a seed.

    Args:
        digits: MNIST digits, uint8 `[n, 28, 28]`.
        labels: their labels `[n]`.
        seed: the base seed (each chunk of `chunk` digits draws from `[seed, chunk index]`).
        side: the reader's input side.
        workers: processes (default: the machine's cores).

    Returns:
        Pictures uint8 `[n, side, side, 3]`, ink float `[n, side, side]` and labels `[n]`
        (`devset.NO_DIGIT` where the picture is blank).
    """
    jobs = [(digits[i : i + chunk], labels[i : i + chunk], [seed, i // chunk], side)
            for i in range(0, len(digits), chunk)]
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        parts = list(pool.map(_batch, jobs))
    return tuple(np.concatenate(column) for column in zip(*parts))
