"""Mobile-ready artifacts: batch-1 signatures by name, MediaPipe's classifier and its metadata."""

import numpy as np
import pytest

from app import tflite_metadata
from app.export import DESCRIPTION, LABELS, foldable, mediapipe_classify, tensor_io
from app.litert import TFLiteClassifier

TFLITE = ("model_float32.tflite", "model_int8.tflite", "digit_classifier.tflite")


@pytest.fixture(scope="module")
def test_images():
    from app import data

    images, labels = data.in_memory(data.load_split("test[:60]"))
    return images.numpy().astype(np.float32), labels.numpy()


@pytest.mark.parametrize("name", TFLITE)
def test_every_tflite_has_a_batch_1_signature_from_pixels_to_probabilities(formats, name):
    io = tensor_io(formats[1] / name)
    assert (io["signature"], io["input"]["name"], io["output"]["name"]) == ("serving_default", "pixels",
                                                                             "probabilities")
    assert io["input"]["shape"] == [1, 28, 28, 3 if name == "digit_classifier.tflite" else 1]
    assert io["output"]["shape"] == [1, 10]
    if name != "model_float32.tflite":  # full int8: raw bytes in, probability / 256 out
        assert (io["input"]["dtype"], io["input"]["scale"], io["input"]["zero_point"]) == ("uint8", 1.0, 0)
        assert (io["output"]["dtype"], io["output"]["scale"]) == ("uint8", 1 / 256)


@pytest.mark.parametrize("name", TFLITE)
def test_tensor_names_are_stripped_and_the_signature_still_runs(formats, name, test_images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(formats[1] / name))
    assert {t["name"] for t in interpreter.get_tensor_details()} == {""}
    runner = interpreter.get_signature_runner("serving_default")
    image = test_images[0][0][None]
    pixels = np.repeat(image, 3, axis=-1) if name == "digit_classifier.tflite" else image
    dtype = np.float32 if name == "model_float32.tflite" else np.uint8
    out = runner(pixels=pixels.astype(dtype))["probabilities"]
    assert out.shape == (1, 10) and int(out.argmax()) == int(test_images[1][0])


def test_the_classifier_metadata_reads_back(formats):
    meta = tflite_metadata.read((formats[1] / "digit_classifier.tflite").read_bytes())
    assert {k: meta[k] for k in ("name", "description", "author", "license")} == DESCRIPTION
    assert meta["version"].endswith("(7,862 parameters)")
    assert meta["files"] == {"labels.txt": ("\n".join(LABELS) + "\n").encode()} and meta["files_uncompressed"]
    assert (meta["input_name"], meta["color_space"], meta["mean"], meta["std"]) == ("pixels", "RGB", [0.0], [1.0])
    assert (meta["output_name"], meta["label_file_type"]) == ("probabilities", "TENSOR_AXIS_LABELS")
    assert tuple(map(int, meta["min_parser_version"].split("."))) <= (1, 5, 0)


def test_mediapipe_classifies_like_the_int8_model_with_digit_names(formats, test_images):
    images, labels = test_images
    classes, names = mediapipe_classify(formats[1] / "digit_classifier.tflite", images)
    int8 = TFLiteClassifier(formats[1] / "model_int8.tflite")(images).argmax(1)
    assert names == [str(c) for c in classes]
    assert (classes == int8).mean() >= 59 / 60
    assert (classes == labels).mean() >= 0.9  # a 2-epoch model


def test_folded_batchnorm_computes_the_same_function(formats):
    from app.config import ModelConfig

    model = formats[0]
    folded = foldable(model, ModelConfig().to_dict())
    assert folded is not model
    names = [layer.name for layer in folded.layers]
    assert names.index("edges_conv1_bn") < names.index("transition1_pool")  # BatchNorm before the pool
    x = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(folded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)
    assert foldable(model, None) is model


def test_the_readme_mediapipe_snippet_runs(formats, test_images, tmp_path):
    import contextlib
    import io
    import re

    from PIL import Image

    from conftest import ROOT

    images, labels = test_images
    Image.fromarray(images[0][..., 0].astype(np.uint8)).save(tmp_path / "digit.png")
    readme = (ROOT / "README.md").read_text()
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                 if "digit_classifier.tflite" in b and "vision.ImageClassifier" in b]
    snippet = snippet.replace("photo_of_a_digit.jpg", str(tmp_path / "digit.png")).replace(
        "exported/digit_classifier.tflite", str(formats[1] / "digit_classifier.tflite"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {})
    name, score = printed.getvalue().split()
    assert name == str(labels[0]) and 0.3 < float(score) <= 1.0
