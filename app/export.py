"""Exports a trained model for mobile: SavedModel, TFLite float32 and full-int8 TFLite.

Every format is scored on all 10,000 MNIST test images through the runtime it runs on
(SavedModel through TensorFlow, `.tflite` through LiteRT's interpreter) before anything is
written; the new set is assembled in a temporary folder and swapped in whole, so a refused
export leaves the destination exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from app.errors import InputFileError, Refused
from app.files import folder_lock, share
from app.litert import TFLiteClassifier
from app.provenance import versions

# The bar every exported format must clear on the full test split, and the most the int8
# model may lose against the float32 one (both as fractions).
MIN_ACCURACY = 0.994
MAX_INT8_DROP = 0.001
# Calibration images for int8 quantization, taken from the train split, never from test.
CALIBRATION_IMAGES = 500
LABELS = [str(d) for d in range(10)]
# The set is assembled in a hidden folder beside the destination (git ignores the pattern);
# one left by a killed export is removed by the next.
STAGING_PREFIX = ".staging-"


class ExportRefused(Refused):
    """An exported format failed the accuracy or parity bar; nothing was written."""


def save_saved_model(model, path: Path) -> None:
    """Writes a SavedModel whose `serving_default` maps `pixels` to `probabilities`.

    Args:
        model: the Keras model (raw 0..255 float32 pixels in, probabilities out).
        path: the SavedModel folder to create.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda pixels: {"probabilities": model(pixels, training=False)},
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="pixels")],
    )
    archive.write_out(str(path), verbose=False)


def representative_images(count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Returns `count` raw train images, float32 `[count, 28, 28, 1]`, for int8 calibration."""
    from app import data

    images = next(iter(data.eval_pipeline(data.load_split(f"train[:{count}]"), batch_size=count)))[0]
    return images.numpy()


def convert_tflite(saved_model: Path, calibration: np.ndarray | None = None) -> bytes:
    """Converts a SavedModel to TFLite: float32, or full-integer when given calibration images.

    The full-integer model keeps only integer builtin ops and takes and returns uint8
    tensors: raw 0..255 pixels in (scale 1, zero point 0 when calibration spans 0..255),
    probabilities out (scale 1/256).

    Args:
        saved_model: the SavedModel folder.
        calibration: raw train images for the int8 ranges; None for float32.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    from app.tflog import quiet_native_stderr

    with quiet_native_stderr():  # the converter reports its quantization settings on stderr
        return converter.convert()


def saved_model_classifier(path: Path):
    """Returns a function from raw pixels `[n, 28, 28, 1]` to probabilities, through TF."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    def classify(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [serve(pixels=tf.constant(batch))["probabilities"].numpy() for batch in np.split(pixels, 10)]
        )

    return classify


def test_set() -> tuple[np.ndarray, np.ndarray]:
    """Returns all 10,000 MNIST test images (raw float32 pixels) and their labels."""
    from app import data

    images, labels = next(iter(data.eval_pipeline(data.load_split("test"), batch_size=10_000)))
    return images.numpy(), labels.numpy()


def float_ops(path: Path) -> list[str]:
    """Names the tensors of a `.tflite` model that are float (none in a full-int8 model)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return [t["name"] for t in interpreter.get_tensor_details() if np.issubdtype(t["dtype"], np.floating)]


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_formats(model, folder: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """Scores every format in `folder` and compares them with the Keras model.

    Args:
        model: the Keras model the formats came from.
        folder: holds `saved_model/`, `model_float32.tflite` and `model_int8.tflite`.
        images: raw test pixels `[n, 28, 28, 1]`.
        labels: their digits.

    Returns:
        Accuracy per format and the parity figures between formats.
    """
    keras_probs = np.concatenate([model.predict_on_batch(b) for b in np.split(images, 10)])
    probs = {
        "saved_model": saved_model_classifier(folder / "saved_model")(images),
        "tflite_float32": TFLiteClassifier(folder / "model_float32.tflite")(images),
        "tflite_int8": TFLiteClassifier(folder / "model_int8.tflite")(images),
    }
    keras_classes = keras_probs.argmax(1)
    result = {"accuracy": {"keras": float((keras_classes == labels).mean())}, "parity": {}}
    for name, p in probs.items():
        result["accuracy"][name] = float((p.argmax(1) == labels).mean())
        result["parity"][name] = {
            "same_class_as_keras": float((p.argmax(1) == keras_classes).mean()),
            "max_abs_probability_difference": float(np.abs(p - keras_probs).max()),
        }
    return result


def check_bar(scores: dict, min_accuracy: float = MIN_ACCURACY) -> list[str]:
    """Lists every way the scored formats fall short of the export bar (empty: all clear)."""
    problems = []
    accuracy, parity = scores["accuracy"], scores["parity"]
    for name in ("saved_model", "tflite_float32", "tflite_int8"):
        if accuracy[name] < min_accuracy:
            problems.append(f"{name} scores {100 * accuracy[name]:.2f}% < {100 * min_accuracy:.2f}%")
    drop = accuracy["tflite_float32"] - accuracy["tflite_int8"]
    if drop > MAX_INT8_DROP + 1e-9:
        problems.append(f"int8 loses {100 * drop:.2f} points against float32 (at most {100 * MAX_INT8_DROP:.2f})")
    for name in ("saved_model", "tflite_float32"):
        if parity[name]["same_class_as_keras"] < 1.0 or parity[name]["max_abs_probability_difference"] > 1e-5:
            problems.append(f"{name} does not match the Keras model (classes and probabilities within 1e-5)")
    if parity["tflite_int8"]["same_class_as_keras"] < 0.999:
        problems.append("int8 agrees with the Keras model on fewer than 99.9% of test images")
    return problems


def export(
    model_path: str | os.PathLike,
    out: str | os.PathLike = "exported",
    min_accuracy: float = MIN_ACCURACY,
    command: str | None = None,
) -> dict:
    """Exports, verifies and swaps in the full set of mobile artifacts.

    Args:
        model_path: a `.keras` file from `python -m app train`; its run folder's
            `provenance.json` and `metrics.json` are recorded as the model's origin.
        out: the destination folder, replaced whole on success and untouched on refusal.
        min_accuracy: the accuracy every format must reach on the full test split.
        command: the command line that produced this export, recorded in the metadata.

    Returns:
        The metadata written to `out/metadata.json`.

    Raises:
        ExportRefused: when a format misses the bar; `out` is left as it was.
        InputFileError: when the model file is missing or damaged.
        BusyError: when another export writes to `out`.
    """
    from app.model import parameter_counts

    model_path, out = Path(model_path), Path(out)
    model = load_keras_model(model_path)
    made_by = run_record(model_path.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(out.parent, command or "python -m app export", name=f".{out.name}.lock"):
        for stale in out.parent.glob(f"{STAGING_PREFIX}{out.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{out.name}-", dir=out.parent))
        try:
            scores, floats = write_formats(model, staging)
            problems = check_bar(scores, min_accuracy)
            if floats:
                problems.append(f"int8 model still has float tensors: {', '.join(floats[:3])}")
            if problems:
                raise ExportRefused(f"export refused, {out} left as it was: " + "; ".join(problems))

            files = sorted(p for p in staging.rglob("*") if p.is_file())
            metadata = {
                "files": {
                    str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files
                },
                "test_images": scores["test_images"],
                "accuracy": scores["accuracy"],
                "parity": scores["parity"],
                "runtimes": {
                    "keras": "keras.Model.predict_on_batch",
                    "saved_model": "tf.saved_model.load(...).signatures['serving_default']",
                    "tflite_float32": "ai_edge_litert.interpreter.Interpreter, one image per invoke",
                    "tflite_int8": "ai_edge_litert.interpreter.Interpreter, one image per invoke",
                },
                "tflite_int8_io": tensor_io(staging / "model_int8.tflite"),
                "tflite_float32_io": tensor_io(staging / "model_float32.tflite"),
                "calibration": f"the first {CALIBRATION_IMAGES} images of the MNIST train split",
                "parameters": parameter_counts(model),
                "source_run": str(model_path.parent),
                "provenance": made_by["provenance"],
                "run_metrics": made_by["metrics"],
                "versions": versions(),
                "commands": [c for c in (made_by["command"], command
                                         or f"python -m app export --model {model_path} --out {out}") if c],
            }
            (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
            share(staging)
            swap_in(staging, out)
            return metadata
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def load_keras_model(path: Path):
    """Loads a `.keras` file, or says in one line why it cannot be used.

    Raises:
        InputFileError: when the file is missing, damaged or not a Keras model.
    """
    import keras

    if not path.is_file():
        raise InputFileError(f"no such model file: {path}; give the model.keras of a finished run")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # zipfile, h5py and Keras each raise their own kinds
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise InputFileError(
            f"cannot load {path} as a Keras model ({type(error).__name__}: {reason}); "
            "give the model.keras of a finished run") from None


def run_record(run: Path) -> dict:
    """What the run folder says made the model: provenance, metrics and the command."""
    found = {}
    for name in ("provenance", "metrics"):
        path = run / f"{name}.json"
        try:
            found[name] = json.loads(path.read_text()) if path.exists() else None
        except ValueError:
            raise InputFileError(f"{path} is damaged; train the model again to export it with its record") from None
    found["command"] = found["provenance"] and found["provenance"].get("command")
    return found


def write_formats(model, staging: Path) -> tuple[dict, list[str]]:
    """Writes every format into `staging` and scores them on all 10,000 test images.

    Returns:
        The scores (see `evaluate_formats`, plus `test_images`) and the int8 model's float
        tensors (none when it is fully integer).
    """
    save_saved_model(model, staging / "saved_model")
    (staging / "model_float32.tflite").write_bytes(convert_tflite(staging / "saved_model"))
    int8 = convert_tflite(staging / "saved_model", calibration=representative_images())
    (staging / "model_int8.tflite").write_bytes(int8)
    (staging / "labels.txt").write_text("\n".join(LABELS) + "\n")
    images, labels = test_set()
    scores = evaluate_formats(model, staging, images, labels)
    scores["test_images"] = int(len(labels))
    return scores, float_ops(staging / "model_int8.tflite")


def tensor_io(path: Path) -> dict:
    """The input and output tensors of a `.tflite` model: name, shape, dtype, quantization."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def describe(detail):
        scale, zero_point = detail["quantization"]
        return {
            "name": detail["name"],
            "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }

    return {
        "input": describe(interpreter.get_input_details()[0]),
        "output": describe(interpreter.get_output_details()[0]),
    }


def swap_in(staging: Path, out: Path) -> None:
    """Replaces `out` with `staging` by renames, so readers see the old set or the new one."""
    if out.exists():
        retired = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{out.name}-old-", dir=out.parent))
        os.replace(out, retired / out.name)
        os.replace(staging, out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out)
