"""Exports the reader (`exported/digit_reader.tflite`) and verifies it in every runtime.

The reader is one float graph with float16 weights (`app.reader`): a uint8 RGB picture
`[1, SIDE, SIDE, 3]` in, 11 probabilities out (`0`-`9` and `none`), with the TFLite metadata
MediaPipe Tasks' `ImageClassifier` reads (labels, RGB, raw 0..255 input). Before anything is
written it is scored on all 10,000 MNIST test digits handed in as pictures and on the
development set's held-out parts, through LiteRT (the picture stretched as a runtime does)
and through MediaPipe given each picture file as it is; the two must agree. A reader below
`MIN_MNIST` on MNIST, or larger than `MAX_BYTES`, is refused and nothing changes.
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import numpy as np

from app import reader, tflite_metadata
from app.errors import InputFileError, Refused
from app.files import atomic_path, folder_lock, write_json
from app.litert import TFLiteClassifier

READER_FILE = "digit_reader.tflite"
RECORD_FILE = "reader.json"
MIN_MNIST = 0.994  # the reader on MNIST test digits given as pictures
MIN_AGREEMENT = 0.995  # the same answer from LiteRT and MediaPipe
MAX_BYTES = 64 * 1024
# The development set's parts the record reports (`dev` tuned nothing here, but stays out).
PARTS = ("heldout", "final", "lined", "desk", "tilted", "shadow", "canvas", "boxed", "tight", "far", "blank")
DESCRIPTION = {
    "name": "tinymnist digit reader",
    "description": ("Reads one handwritten digit, 0-9, from a picture of any size, paper, polarity or "
                    "lighting, stretched to the input's square; `none` when the picture holds no digit."),
    "author": "tinymnist",
    "license": "Apache-2.0",
}


class ReaderRefused(Refused):
    """The reader missed a bar; nothing was written."""


def save_saved_model(model, path: Path) -> None:
    """A batch-1 SavedModel from uint8 `pixels` `[1, SIDE, SIDE, 3]` to `probabilities` `[1, 11]`."""
    import keras
    import tensorflow as tf

    def serve(pixels):
        return {"probabilities": model(tf.cast(pixels, tf.float32), training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[
        tf.TensorSpec([1, reader.SIDE, reader.SIDE, 3], tf.uint8, name="pixels")])
    archive.write_out(str(path), verbose=False)


def convert(saved_model: Path, version: str) -> bytes:
    """The reader's `.tflite`: float16 weights, builtin ops only, with its metadata and labels."""
    import tensorflow as tf

    from app.export import strip_tensor_names
    from app.tflog import quiet_native_stderr

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # Float16 weights halve the file; LiteRT expands them to float32 once, at load.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    with quiet_native_stderr():
        model = strip_tensor_names(converter.convert())
    metadata = tflite_metadata.metadata_flatbuffer(
        reader.LABELS, version=version,
        input_description=(f"A picture of one digit, RGB, stretched to {reader.SIDE}x{reader.SIDE}: any "
                           "polarity, paper, desk or lighting."),
        output_description="The probability of each digit 0-9, and of `none` (no digit in the picture).",
        **DESCRIPTION)
    labels = ("\n".join(reader.LABELS) + "\n").encode()
    return tflite_metadata.attach(model, metadata, {tflite_metadata.LABELS_FILE: labels})


def picture(path: str | os.PathLike) -> np.ndarray:
    """A picture file as an app decodes it: RGB uint8 `[h, w, 3]`, EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def stretched(rgb: np.ndarray) -> np.ndarray:
    """`rgb` stretched to the reader's input as a runtime does (bilinear, no aspect kept)."""
    import cv2

    return cv2.resize(rgb, (reader.SIDE, reader.SIDE), interpolation=cv2.INTER_LINEAR)[None]


def litert_answers(path: Path, pictures) -> np.ndarray:
    """The reader's label index for each RGB picture, through LiteRT."""
    run = TFLiteClassifier(path)
    return np.array([run(stretched(rgb))[0].argmax() for rgb in pictures])


def mediapipe_answers(path: Path, pictures) -> np.ndarray:
    """The reader's label index for each RGB picture, through MediaPipe's `ImageClassifier`."""
    import mediapipe as mp

    from app.export import mediapipe_classifier

    answers = []
    with mediapipe_classifier(path) as classifier:
        for rgb in pictures:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
            answers.append(classifier.classify(image).classifications[0].categories[0].index)
    return np.array(answers)


def mnist_pictures() -> tuple[list[np.ndarray], np.ndarray]:
    """The 10,000 MNIST test digits as the RGB pictures an app would pass, and their labels."""
    from app import data

    images, labels = (t.numpy() for t in data.in_memory(data.load_split("test")))
    return [np.repeat(image, 3, axis=-1) for image in images], labels


def score_parts(path: Path, devset: Path, parts=PARTS) -> dict:
    """Accuracy per part and kind through LiteRT and MediaPipe, and their agreement.

    A blank picture (label `NO_DIGIT`) is right when the answer is `none`.
    """
    from app import devset as dev

    result = {}
    for part in parts:
        folder = devset / part
        if not (folder / "labels.csv").exists():
            dev.write(devset, part)
        rows = dev.read_labels(folder)
        pictures = [picture(p) for p, *_ in rows]
        start = time.perf_counter()
        litert = litert_answers(path, pictures)
        seconds = time.perf_counter() - start
        media = mediapipe_answers(path, pictures)
        truth = np.array([reader.LABELS.index("none") if label == dev.NO_DIGIT else label for _, label, *_ in rows])
        kinds = collections.defaultdict(list)
        for i, (_, _, kind, _) in enumerate(rows):
            kinds[kind].append(i)
        result[part] = {
            "kinds": {kind: {"pictures": len(index),
                             "litert": float((litert[index] == truth[index]).mean()),
                             "mediapipe": float((media[index] == truth[index]).mean())}
                      for kind, index in kinds.items()},
            "agreement": float((litert == media).mean()),
            "litert_pictures_per_second": len(rows) / seconds,
        }
    return result


def export_reader(run: str | os.PathLike, exported: str | os.PathLike = "exported",
                  devset: str | os.PathLike = "devset", command: str | None = None) -> dict:
    """Builds, verifies and writes `exported/digit_reader.tflite` and `exported/reader.json`.

    The reader's files and figures are also recorded in `exported/metadata.json`.

    Args:
        run: a finished `python -m app reader` run folder.
        exported: the exported set the reader's classifier was fine-tuned from.
        devset: the development set's folder (parts written when missing).
        command: this command line, for the record.

    Raises:
        ReaderRefused: below a bar; nothing written.
        InputFileError: when the run is not finished.
    """
    import tempfile

    from app.export import foldable
    from app.model import five_views
    from app.provenance import versions
    from app.reader_train import classifier_source, load_run

    run, exported, devset = Path(run), Path(exported), Path(devset)
    if not (run / "reader.json").is_file():
        raise InputFileError(f"{run} holds no finished reader run; run `python -m app reader --out {run}` first")
    ink_net, classifier, trained = load_run(run)
    if trained.get("classifier_source_sha256") != classifier_source(exported):
        raise ReaderRefused(f"{run} was fine-tuned from another classifier than {exported}'s; run "
                            f"`python -m app reader --out {run} --exported {exported}` again")
    # BatchNorm folded into the convolutions, as for the classifier's own `.tflite` files.
    config = json.loads((exported / "metadata.json").read_text())["provenance"]["config"]
    model = reader.build_reader(ink_net, five_views(foldable(classifier, config)))
    # The export's own lock: the classifier's export and the reader's never write at once.
    with folder_lock(exported.parent, command or "python -m app export-reader", name=f".{exported.name}.lock"), \
            tempfile.TemporaryDirectory() as work:
        save_saved_model(model, Path(work) / "saved_model")
        content = convert(Path(work) / "saved_model", f"{model.count_params():,} parameters")
        path = Path(work) / READER_FILE
        path.write_bytes(content)
        pictures, labels = mnist_pictures()
        litert, media = litert_answers(path, pictures), mediapipe_answers(path, pictures)
        mnist = {"pictures": len(labels), "litert": float((litert == labels).mean()),
                 "mediapipe": float((media == labels).mean()), "agreement": float((litert == media).mean())}
        problems = [f"MNIST through {name} {100 * mnist[name]:.2f}% < {100 * MIN_MNIST:.2f}%"
                    for name in ("litert", "mediapipe") if mnist[name] < MIN_MNIST]
        if mnist["agreement"] < MIN_AGREEMENT:
            problems.append(f"LiteRT and MediaPipe agree on {100 * mnist['agreement']:.2f}% of MNIST")
        if len(content) > MAX_BYTES:
            problems.append(f"{len(content):,} bytes > {MAX_BYTES:,}")
        if problems:
            raise ReaderRefused(f"reader refused, {exported} left as it was: " + "; ".join(problems))
        from app.export import anatomy

        record = {
            "file": READER_FILE, "bytes": len(content),
            "input": [1, reader.SIDE, reader.SIDE, 3], "labels": reader.LABELS,
            "parameters": {"ink_net": ink_net.count_params(), "classifier": classifier.count_params()},
            "anatomy": anatomy(content),
            "mnist_test": mnist,
            "parts": score_parts(path, devset),
            "devset": str(devset),
            "runtimes": {"litert": "ai_edge_litert Interpreter, the picture stretched by cv2.resize (bilinear)",
                         "mediapipe": "mediapipe.tasks.python.vision.ImageClassifier, the decoded picture as it is"},
            "trained": trained,
            "run": str(run),
            "versions": versions(),
            "command": command or f"python -m app export-reader --run {run} --out {exported}",
        }
        with atomic_path(exported / READER_FILE) as tmp:
            tmp.write_bytes(content)
        write_json(exported / RECORD_FILE, record)
        record_in_metadata(exported, record)
    return record


def record_in_metadata(exported: Path, record: dict) -> None:
    """Lists the reader's files in `exported/metadata.json` beside the classifier's, with its figures.

    `metadata.json` stays the one index of what `exported/` holds (every file's size and
    sha256); the reader's summary there is its accuracy on MNIST and per development part
    through both runtimes, and their agreement; `reader.json` keeps the whole record.
    """
    from app.export import sha256

    path = exported / "metadata.json"
    metadata = json.loads(path.read_text())
    for name in (READER_FILE, RECORD_FILE):
        metadata["files"][name] = {"bytes": (exported / name).stat().st_size, "sha256": sha256(exported / name)}
    metadata["reader"] = {
        "file": READER_FILE, "record": RECORD_FILE, "bytes": record["bytes"], "input": record["input"],
        "labels": record["labels"], "mnist_test": record["mnist_test"],
        "parts": {part: {"agreement": scores["agreement"], **scores["kinds"]}
                  for part, scores in record["parts"].items()},
    }
    write_json(path, metadata)
