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
from PIL import Image, ImageDraw, ImageOps

from app.litert import TFLiteClassifier
from app.predict import UNSURE_BELOW
from app.preprocess import ImageFileError, NoDigitError, preprocess_file

MNIST_TOLERANCE = 0.0005  # 0.05 points


def score_part(folder: Path, classify) -> dict:
    """Accuracy per kind of one part; a refused image ("no digit found") counts as wrong,
    except a picture without a digit (label `NO_DIGIT`), whose one right answer is a refusal.

    Also counts the answers `predict` marks "unsure" (top probability under `UNSURE_BELOW`)
    and how often those and the others were right.
    """
    from app.devset import NO_DIGIT, read_labels

    counts = collections.defaultdict(lambda: {"images": 0, "right": 0, "no_digit": 0, "crashed": 0})
    answers = {"unsure": 0, "unsure_right": 0, "sure": 0, "sure_right": 0}
    start = time.perf_counter()
    rows = read_labels(folder)
    for path, label, kind, _ in rows:
        entry = counts[kind]
        entry["images"] += 1
        try:
            pixels = preprocess_file(path)
        except NoDigitError:
            entry["no_digit"] += 1
            entry["right"] += int(label == NO_DIGIT)
            continue
        except (ImageFileError, ValueError, OSError):
            entry["crashed"] += 1
            continue
        probabilities = classify(pixels[None, :, :, None].astype(np.float32))[0]
        right = int(probabilities.argmax() == label)
        entry["right"] += right
        sure = "unsure" if probabilities.max() < UNSURE_BELOW else "sure"
        answers[sure] += 1
        answers[f"{sure}_right"] += right
    seconds = time.perf_counter() - start
    for entry in counts.values():
        entry["accuracy"] = entry["right"] / entry["images"]
    return {"kinds": dict(counts), "answers": answers, "images_per_second": len(rows) / seconds}


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


def examples_picture(folders, classify, path: Path, count: int = 5) -> None:
    """Draws the first image of each kind and polarity of some parts beside what the model saw.

    Args:
        folders: parts of the development set, in the order their images are shown.
        classify: the LiteRT classifier.
        path: the PNG to write.
        count: at most this many images.
    """
    from app.devset import NO_DIGIT, read_labels
    from app.files import atomic_path

    chosen, seen = [], set()
    for path_, label, kind, polarity in (row for folder in folders for row in read_labels(folder)):
        if (kind, polarity) not in seen:
            seen.add((kind, polarity))
            chosen.append((path_, label))
    tile = 140
    sheet = Image.new("RGB", (2 * tile * len(chosen[:count]), tile + 24), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (source, label) in enumerate(chosen[:count]):
        with Image.open(source) as image:
            shown = ImageOps.contain(image.convert("RGB"), (tile, tile))
        try:
            pixels = preprocess_file(source)
            answer = f"model saw this: {int(classify(pixels[None, :, :, None].astype(np.float32))[0].argmax())}"
        except NoDigitError:  # a picture with no digit, or one the contract finds none in
            pixels, answer = np.zeros((28, 28), np.uint8), "no digit found"
        model_view = Image.fromarray(pixels).resize((tile, tile), Image.NEAREST).convert("RGB")
        sheet.paste(shown, (2 * tile * i, 0))
        sheet.paste(model_view, (2 * tile * i + tile, 0))
        truth = "no digit" if label == NO_DIGIT else label
        draw.text((2 * tile * i + 4, tile + 6), f"{source.name}: {truth}", fill="black")
        draw.text((2 * tile * i + tile + 4, tile + 6), answer, fill="black")
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def realworld(model: str | Path, devset: str | Path = "devset", parts=None, seed: int = 0,
              mnist: bool = True) -> dict:
    """Scores `predict` on each part of the development set (written when missing) and MNIST.

    Args:
        model: the `.tflite` model `predict` uses.
        devset: the development set's folder.
        parts: the parts to score; None for all of `app.devset.PARTS`.
        seed: the seed the set is written with.
        mnist: also run the MNIST-unchanged check.
    """
    from app import devset as dev

    classify = TFLiteClassifier(model)
    parts = parts or dev.PARTS
    result = {"model": str(model), "seed": seed, "parts": {}}
    for part in parts:
        folder = Path(devset) / part
        if not (folder / "labels.csv").exists():
            dev.write(devset, part, seed)
        result["parts"][part] = score_part(folder, classify)
    if mnist:
        result["mnist"] = mnist_unchanged(classify)
    return result


def rate(right: int, total: int) -> str:
    """`right` of `total` as a percentage, or "-" for none."""
    return f"{100 * right / total:.1f}%" if total else "-"


def markdown(result: dict) -> str:
    """The report as a Markdown table."""
    lines = ["| part | kind | images | accuracy | refused as no digit | crashes | images/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for part, scored in result["parts"].items():
        for kind, entry in scored["kinds"].items():
            lines.append(f"| {part} | {kind} | {entry['images']:,} | {100 * entry['accuracy']:.2f}% | "
                         f"{entry['no_digit']} | {entry['crashed']} | {scored['images_per_second']:,.0f} |")
    lines.append("")
    for part, scored in result["parts"].items():
        a = scored["answers"]
        lines.append(f"- {part}: {a['unsure']:,} of {a['unsure'] + a['sure']:,} answers unsure (probability under "
                     f"{UNSURE_BELOW}), right {rate(a['unsure_right'], a['unsure'])} of the time; the others right "
                     f"{rate(a['sure_right'], a['sure'])}")
    if "mnist" in result:
        m = result["mnist"]
        lines.append("")
        lines.append(f"MNIST test set: {100 * m['raw_accuracy']:.2f}% on the raw pixels, "
                     f"{100 * m['png_accuracy']:.2f}% as PNG files through the contract "
                     f"({m['refused']} refused); within 0.05 points: {'yes' if m['within_tolerance'] else 'NO'}")
    return "\n".join(lines) + "\n"
