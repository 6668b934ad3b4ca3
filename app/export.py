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
from pathlib import Path

import numpy as np

from app import tflite_metadata
from app.errors import InputFileError, Refused
from app.files import atomic_folder, folder_lock
from app.litert import TFLiteClassifier
from app.provenance import versions

# The bar every exported format must clear on the full test split, and the most the int8
# model may lose against the float32 one (both as fractions).
MIN_ACCURACY = 0.994
MAX_INT8_DROP = 0.0005
# Calibration images for int8 quantization, taken from the train split, never from test.
CALIBRATION_IMAGES = 500
LABELS = [str(d) for d in range(10)]
# ITU-R 601 luma, as the preprocessing contract's step 4 and Pillow's "L" weigh R, G and B.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# What MediaPipe's classifier must reach: the same bar, and the int8 model's class on nearly
# every image (it is the int8 model with a gray conversion in front).
MIN_MEDIAPIPE_AGREEMENT = 0.999
DESCRIPTION = {
    "name": "tinymnist digit classifier",
    "description": ("Reads one handwritten digit, 0-9, from a 28x28 RGB image prepared by the tinymnist "
                    "preprocessing contract (light digit on black, fitted in 20x20, centred by mass)."),
    "author": "tinymnist",
    "license": "Apache-2.0",
}


class ExportRefused(Refused):
    """An exported format failed the accuracy or parity bar; nothing was written."""


def save_saved_model(model, path: Path, batch: int | None = None, rgb: bool = False) -> None:
    """Writes a SavedModel whose `serving_default` maps `pixels` to `probabilities`.

    Args:
        model: the Keras model (raw 0..255 float32 gray pixels in, probabilities out).
        path: the SavedModel folder to create.
        batch: a fixed batch size (1 for `.tflite` files: LiteRT.js and MediaPipe want it),
            or None for any.
        rgb: take `[batch, 28, 28, 3]` RGB pixels and turn them gray inside the graph with
            ITU-R 601 weights (the contract's step 4), for MediaPipe's image input.
    """
    import keras
    import tensorflow as tf

    channels = 3 if rgb else 1
    luma = tf.constant(GRAY_WEIGHTS, tf.float32)

    def serve(pixels):
        gray = tf.reduce_sum(pixels * luma, axis=-1, keepdims=True) if rgb else pixels
        return {"probabilities": model(gray, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec([batch, 28, 28, channels], tf.float32, name="pixels")])
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
        return strip_tensor_names(converter.convert())


def strip_tensor_names(model: bytes) -> bytes:
    """Drops the tensor and subgraph names, which nothing reads, and keeps the signature.

    Apps and LiteRT.js find the input and output through the signature (`pixels`,
    `probabilities`), not through tensor names such as `StatefulPartitionedCall:0`; the
    names took about 3 KB of the int8 file.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph.description = None
    for subgraph in graph.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            tensor.name = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


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
    return [t["name"] or f"tensor {t['index']}" for t in interpreter.get_tensor_details()
            if np.issubdtype(t["dtype"], np.floating)]


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_formats(model, folder: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """Scores every format in `folder` and compares them with the Keras model.

    Args:
        model: the Keras model the formats came from.
        folder: holds `saved_model/`, `model_float32.tflite`, `model_int8.tflite` and
            `digit_classifier.tflite`.
        images: raw test pixels `[n, 28, 28, 1]`.
        labels: their digits.

    Returns:
        Accuracy per format (each reading the five views of `five_views`, Keras too; and
        `keras_one_view`, the model alone), the parity figures between formats, and
        MediaPipe's category names.
    """
    from app.model import five_views

    viewing = five_views(model)
    keras_probs = np.concatenate([viewing.predict_on_batch(b) for b in np.split(images, 10)])
    probs = {
        "saved_model": saved_model_classifier(folder / "saved_model")(images),
        "tflite_float32": TFLiteClassifier(folder / "model_float32.tflite")(images),
        "tflite_int8": TFLiteClassifier(folder / "model_int8.tflite")(images),
    }
    keras_classes = keras_probs.argmax(1)
    # The model's own accuracy, one view, as training reported it: what the views add shows.
    one_view = np.concatenate([model.predict_on_batch(b) for b in np.split(images, 10)]).argmax(1)
    result = {"accuracy": {"keras": float((keras_classes == labels).mean()),
                           "keras_one_view": float((one_view == labels).mean())}, "parity": {}}
    for name, p in probs.items():
        result["accuracy"][name] = float((p.argmax(1) == labels).mean())
        result["parity"][name] = {
            "same_class_as_keras": float((p.argmax(1) == keras_classes).mean()),
            "max_abs_probability_difference": float(np.abs(p - keras_probs).max()),
        }
    classes, names = mediapipe_classify(folder / "digit_classifier.tflite", images)
    result["accuracy"]["mediapipe"] = float((classes == labels).mean())
    result["parity"]["mediapipe"] = {
        "same_class_as_keras": float((classes == keras_classes).mean()),
        "same_class_as_tflite_int8": float((classes == probs["tflite_int8"].argmax(1)).mean()),
        "category_names": sorted(set(names)),
        "names_match_classes": bool(all(n == str(c) for n, c in zip(names, classes, strict=True))),
    }
    return result


def mediapipe_classifier(path: Path):
    """Opens `path` in MediaPipe Tasks' `ImageClassifier` (top class only), quietly."""
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from app.tflog import quiet_native_stderr

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    with quiet_native_stderr():  # MediaPipe announces its graph and delegate on stderr
        return vision.ImageClassifier.create_from_options(options)


def mediapipe_image(image: np.ndarray):
    """A gray image `[28, 28, 1]` (0..255) as the SRGB `mp.Image` an app would pass."""
    import mediapipe as mp

    rgb = np.ascontiguousarray(np.repeat(image.astype(np.uint8), 3, axis=-1))
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)


def mediapipe_classify(path: Path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Classifies gray images given as RGB through MediaPipe Tasks' `ImageClassifier`.

    Returns:
        The top class index and its category name for each image.
    """
    classes, names = [], []
    with mediapipe_classifier(path) as classifier:
        for image in images:
            top = classifier.classify(mediapipe_image(image)).classifications[0].categories[0]
            classes.append(top.index)
            names.append(top.category_name)
    return np.array(classes), names


def check_bar(scores: dict, min_accuracy: float = MIN_ACCURACY) -> list[str]:
    """Lists every way the scored formats fall short of the export bar (empty: all clear)."""
    problems = []
    accuracy, parity = scores["accuracy"], scores["parity"]
    for name in ("saved_model", "tflite_float32", "tflite_int8", "mediapipe"):
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
    mediapipe = parity["mediapipe"]
    if mediapipe["same_class_as_tflite_int8"] < MIN_MEDIAPIPE_AGREEMENT:
        problems.append(f"MediaPipe agrees with the int8 model on fewer than {100 * MIN_MEDIAPIPE_AGREEMENT:.1f}% "
                        "of test images")
    if not mediapipe["names_match_classes"] or not set(mediapipe["category_names"]) <= set(LABELS):
        problems.append("MediaPipe's category names are not the digits 0-9 of the labels file")
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
    with folder_lock(out.parent, command or "python -m app export", name=f".{out.name}.lock"), \
            atomic_folder(out) as staging:
        config = (made_by["provenance"] or made_by["metrics"] or {}).get("config")
        scores, floats = write_formats(model, staging, config)
        problems = check_bar(scores, min_accuracy)
        if floats:
            problems.append(f"an int8 model still has float tensors: {', '.join(floats[:3])}")
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
                "keras": "keras.Model.predict_on_batch of app.model.five_views(model)",
                "saved_model": "tf.saved_model.load(...).signatures['serving_default']",
                "tflite_float32": "ai_edge_litert.interpreter.Interpreter, one image per invoke",
                "tflite_int8": "ai_edge_litert.interpreter.Interpreter, one image per invoke",
                "mediapipe": "mediapipe.tasks.python.vision.ImageClassifier on digit_classifier.tflite, "
                             "each gray test image given as an SRGB mp.Image",
            },
            "tflite_io": {name: tensor_io(staging / name) for name in
                          ("model_float32.tflite", "model_int8.tflite", "digit_classifier.tflite")},
            "folded_batchnorm": config is not None and foldable(model, config) is not model,
            "tflite_anatomy": {name: anatomy((staging / name).read_bytes()) for name in
                               ("model_float32.tflite", "model_int8.tflite", "digit_classifier.tflite")},
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
        return metadata


def check_model_file(path: str | os.PathLike) -> None:
    """Raises `InputFileError` when `path` is no file (checked before TensorFlow's import)."""
    if not Path(path).is_file():
        raise InputFileError(f"no such model file: {path}; give the model.keras of a finished run")


def load_keras_model(path: Path):
    """Loads a `.keras` file, or says in one line why it cannot be used.

    Raises:
        InputFileError: when the file is missing, damaged or not a Keras model.
    """
    import keras

    check_model_file(path)
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


def write_files(model, folder: Path, config: dict | None = None, calibration: np.ndarray | None = None) -> None:
    """Writes every format into `folder`: SavedModel, the three `.tflite` files and the labels.

    Every format is the model reading five views of each image (`app.model.five_views`).

    Args:
        model: the Keras model.
        folder: the folder to write into.
        config: the model's `ModelConfig` as a dict (from its run), to fold BatchNorm for
            the `.tflite` files; None converts the model as it is.
        calibration: raw train images for the int8 ranges (default: `representative_images()`).
    """
    import shutil as sh

    from app.model import five_views

    save_saved_model(five_views(model), folder / "saved_model")
    sources = folder / ".tflite-sources"  # batch-1 graphs for the converter, removed below
    tflite_model = five_views(foldable(model, config))
    save_saved_model(tflite_model, sources / "gray", batch=1)
    save_saved_model(tflite_model, sources / "rgb", batch=1, rgb=True)
    calibration = representative_images() if calibration is None else calibration
    (folder / "model_float32.tflite").write_bytes(convert_tflite(sources / "gray"))
    (folder / "model_int8.tflite").write_bytes(convert_tflite(sources / "gray", calibration=calibration))
    rgb = convert_tflite(sources / "rgb", calibration=np.repeat(calibration, 3, axis=-1))
    labels_file = ("\n".join(LABELS) + "\n").encode()
    (folder / "digit_classifier.tflite").write_bytes(tflite_metadata.attach(
        rgb, tflite_metadata.metadata_flatbuffer(LABELS, version=version_of(model), **DESCRIPTION),
        {tflite_metadata.LABELS_FILE: labels_file}))
    (folder / "labels.txt").write_bytes(labels_file)
    sh.rmtree(sources)


def write_formats(model, staging: Path, config: dict | None = None) -> tuple[dict, list[str]]:
    """Writes every format into `staging` (`write_files`) and scores them on all 10,000 test images.

    Returns:
        The scores (see `evaluate_formats`, plus `test_images`) and the float tensors of the
        int8 models (none when they are fully integer).
    """
    write_files(model, staging, config)
    images, labels = test_set()
    scores = evaluate_formats(model, staging, images, labels)
    scores["test_images"] = int(len(labels))
    floats = [f"{name}: {t}" for name in ("model_int8.tflite", "digit_classifier.tflite")
              for t in float_ops(staging / name)]
    return scores, floats


def version_of(model) -> str:
    """The metadata's model version: the package version and the model's parameter count."""
    import app

    return f"{app.__version__} ({model.count_params():,} parameters)"


def foldable(model, config: dict | None):
    """The same function with each early MaxPooling moved after its BatchNorm, or `model` itself.

    With early pooling (`ModelConfig.early_pool`) a BatchNorm follows a MaxPooling, and the
    converter keeps it as a separate multiply and add. Max pooling commutes with a
    per-channel affine map whose scale is positive, so when every such BatchNorm's scale
    (gamma / sqrt(variance + epsilon)) is, the same weights in the `early_pool=False` layout
    compute the same function, and the converter folds every BatchNorm into its convolution.
    The export's parity check (float32 `.tflite` against Keras within 1e-5) confirms it.
    """
    import keras

    from app.config import ModelConfig
    from app.model import build_model

    if not config or not config.get("early_pool"):
        return model
    # The functional model lists its layers in order: a BatchNorm right after a pooling.
    for before, layer in zip(model.layers, model.layers[1:]):
        if isinstance(before, keras.layers.MaxPooling2D) and isinstance(layer, keras.layers.BatchNormalization):
            gamma, _, _, variance = (np.asarray(w) for w in layer.get_weights())
            if (gamma / np.sqrt(variance + layer.epsilon) <= 0).any():
                return model
    folded = build_model(ModelConfig.from_dict({**config, "early_pool": False, "budget": 10**9}))
    for layer in folded.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return folded


def anatomy(model: bytes) -> dict:
    """Where the bytes of a `.tflite` file go: constant data, tensor names, quantization, ops."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    tensors = [t for sub in graph.subgraphs for t in sub.tensors]
    metadata = {m.buffer for m in graph.metadata or []}
    quantization = 0
    for t in tensors:
        q = t.quantization
        if q is not None:  # float32 scales and int64 zero points, per tensor or per channel
            quantization += 4 * len(q.scale if q.scale is not None else []) + 8 * len(
                q.zeroPoint if q.zeroPoint is not None else [])
    return {
        "bytes": len(model),
        "constant_data_bytes": sum(len(b.data) for i, b in enumerate(graph.buffers)
                                   if b.data is not None and i not in metadata),
        "tensor_name_bytes": sum(len(t.name or b"") for t in tensors),
        "quantization_parameter_bytes": quantization,
        "tensors": len(tensors),
        "operators": len([op for sub in graph.subgraphs for op in sub.operators]),
        "operator_kinds": sorted({flatbuffer_utils.opcode_to_name(graph, op.opcodeIndex)
                                  for sub in graph.subgraphs for op in sub.operators}),
    }


def tensor_io(path: Path) -> dict:
    """The signature of a `.tflite` model: its input and output by name, shape, dtype, quantization."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")

    def describe(details):
        scale, zero_point = details["quantization"]
        return {
            "shape": [int(d) for d in details["shape"]],
            "dtype": np.dtype(details["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }

    [(input_name, input_details)] = runner.get_input_details().items()
    [(output_name, output_details)] = runner.get_output_details().items()
    return {
        "signature": "serving_default",
        "input": {"name": input_name, **describe(input_details)},
        "output": {"name": output_name, **describe(output_details)},
    }


