"""How `predict` does on real-world images: the development set's parts and MNIST unchanged.

`python -m app realworld` (and `make realworld`) writes the development set if it is not
there (`app.devset`), runs every image of each part through exactly what `predict` does (the
preprocessing contract, then the int8 model through LiteRT, no flags), and checks that the
contract leaves real MNIST alone: the 10,000 test images, saved as PNG files, must score
within `MNIST_TOLERANCE` of the model's accuracy on the raw test pixels.
"""

from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from app.litert import TFLiteClassifier
from app.preprocess import ImageFileError, NoDigitError, preprocess_file

MNIST_TOLERANCE = 0.0005  # 0.05 points


def score_part(folder: Path, classify) -> dict:
    """Accuracy per kind of one part; a refused image ("no digit found") counts as wrong."""
    from app.devset import read_labels

    counts = collections.defaultdict(lambda: {"images": 0, "right": 0, "no_digit": 0, "crashed": 0})
    start = time.perf_counter()
    rows = read_labels(folder)
    for path, label, kind, _ in rows:
        entry = counts[kind]
        entry["images"] += 1
        try:
            pixels = preprocess_file(path)
        except NoDigitError:
            entry["no_digit"] += 1
            continue
        except (ImageFileError, ValueError, OSError):
            entry["crashed"] += 1
            continue
        entry["right"] += int(classify(pixels[None, :, :, None].astype(np.float32))[0].argmax() == label)
    seconds = time.perf_counter() - start
    for entry in counts.values():
        entry["accuracy"] = entry["right"] / entry["images"]
    return {"kinds": dict(counts), "images_per_second": len(rows) / seconds}


def mnist_unchanged(classify) -> dict:
    """The model's test accuracy on raw pixels and through PNG files and the contract."""
    from app import data

    images, labels = (t.numpy() for t in data.in_memory(data.load_split("test")))
    raw = np.array([classify(image[None].astype(np.float32))[0].argmax() for image in images])
    through = np.empty_like(raw)
    with tempfile.TemporaryDirectory() as folder:
        for i, image in enumerate(images):
            path = Path(folder) / f"{i:05d}.png"
            Image.fromarray(image[..., 0]).save(path)
            try:
                through[i] = classify(preprocess_file(path)[None, :, :, None].astype(np.float32))[0].argmax()
            except NoDigitError:
                through[i] = -1
    result = {"raw_accuracy": float((raw == labels).mean()), "png_accuracy": float((through == labels).mean()),
              "refused": int((through == -1).sum())}
    result["within_tolerance"] = result["raw_accuracy"] - result["png_accuracy"] <= MNIST_TOLERANCE + 1e-12
    return result


def realworld(model: str | Path, devset: str | Path = "devset", parts=("dev", "heldout"), seed: int = 0,
              mnist: bool = True) -> dict:
    """Scores `predict` on each part of the development set (written when missing) and MNIST.

    Args:
        model: the `.tflite` model `predict` uses.
        devset: the development set's folder.
        parts: the parts to score.
        seed: the seed the set is written with.
        mnist: also run the MNIST-unchanged check.
    """
    from app import devset as dev

    classify = TFLiteClassifier(model)
    result = {"model": str(model), "seed": seed, "parts": {}}
    for part in parts:
        folder = Path(devset) / part
        if not (folder / "labels.csv").exists():
            dev.write(devset, part, seed)
        result["parts"][part] = score_part(folder, classify)
    if mnist:
        result["mnist"] = mnist_unchanged(classify)
    return result


def markdown(result: dict) -> str:
    """The report as a Markdown table."""
    lines = ["| part | kind | images | accuracy | refused as no digit | crashes | images/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for part, scored in result["parts"].items():
        for kind, entry in scored["kinds"].items():
            lines.append(f"| {part} | {kind} | {entry['images']:,} | {100 * entry['accuracy']:.2f}% | "
                         f"{entry['no_digit']} | {entry['crashed']} | {scored['images_per_second']:,.0f} |")
    if "mnist" in result:
        m = result["mnist"]
        lines.append("")
        lines.append(f"MNIST test set: {100 * m['raw_accuracy']:.2f}% on the raw pixels, "
                     f"{100 * m['png_accuracy']:.2f}% as PNG files through the contract "
                     f"({m['refused']} refused); within 0.05 points: {'yes' if m['within_tolerance'] else 'NO'}")
    return "\n".join(lines) + "\n"
