"""The reader: its stages' shapes and arithmetic, its renders, and the committed `digit_reader.tflite`."""

import json

import numpy as np
import pytest

from app import devset, reader, render
from tests.conftest import ROOT, last_line

EXPORTED = ROOT / "exported"


def test_the_ink_net_counts_its_parameters_and_keeps_the_pictures_side():
    net = reader.build_ink_net()
    # full 3x3 conv 3->12: 3*9*12 + 12 = 336; separable a->b: a*9 + a*b + b:
    # down1 12->24: 420; six 24->24 (half, down2, quarter, down3, context2, context4): 6 * 816;
    # mix0 and mix1 48->24: 2 * 1,608; mix2 36->12: 768; ink 1x1 12->1: 13.
    assert net.count_params() == 336 + 420 + 6 * 816 + 2 * 1608 + 768 + 13 == 9_649
    assert reader.build_ink_net(width=32).count_params() == 15_745  # the wider net, the same arithmetic
    ink = net(np.zeros((2, reader.SIDE, reader.SIDE, 3), np.float32))
    assert tuple(ink.shape) == (2, reader.SIDE, reader.SIDE, 1)
    assert float(np.min(ink)) >= 0 and float(np.max(ink)) <= 1


def test_the_fit_scales_the_box_to_20_pixels_and_centres_its_mass():
    ink = np.zeros((1, 96, 96, 1), np.float32)
    ink[0, 30:70, 50:70] = 1.0  # 40 rows by 20 columns: scaled by 20 / 40
    digit = np.asarray(reader.FitDigit()(ink))[0, ..., 0]
    # The centre of mass (row 50, column 60) lands on (14, 14): rows 4-23, columns 9-18, exactly.
    expected = np.zeros((28, 28), np.float32)
    expected[4:24, 9:19] = 255.0
    np.testing.assert_allclose(digit, expected, atol=1e-3)


def test_fit_weights_average_the_ink_under_each_output_pixel():
    weights = np.asarray(reader.fit_weights(np.array([48.0], np.float32), np.array([0.25], np.float32), 96))
    assert weights.shape == (1, 28, 96)
    # Output pixel 14 covers input pixels 48-51 (4 input pixels per output pixel): a quarter each.
    np.testing.assert_allclose(weights[0, 14, 48:52], 0.25)
    assert weights[0, 14].sum() == pytest.approx(1.0)
    assert weights[0, 0].sum() == pytest.approx(0.0)  # pixel 0 would cover inputs -8 to -4: outside


def test_a_picture_with_too_little_ink_is_refused_with_probability_1():
    probabilities = np.full((2, 10), 0.1, np.float32)
    ink = np.zeros((2, 8, 8, 1), np.float32)
    ink[1, :2, :] = 1.0  # 16 pixels of ink: at least MIN_INK
    out = np.asarray(reader.Refusal()(probabilities, ink))
    assert out.shape == (2, 11) and reader.LABELS[10] == "none"
    np.testing.assert_allclose(out[0], [0] * 10 + [1])
    np.testing.assert_allclose(out[1], [0.1] * 10 + [0])


def test_renders_are_reproducible_and_carry_their_ink():
    rng = np.random.default_rng(0)
    digits = np.zeros((6, 28, 28), np.uint8)
    digits[:, 6:22, 12:16] = rng.integers(128, 256, (6, 16, 4))
    first = render.render(digits, np.arange(6), seed=5, side=32, workers=1)
    again = render.render(digits, np.arange(6), seed=5, side=32, workers=1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    pixels, ink, labels = first
    assert pixels.shape == (6, 32, 32, 3) and pixels.dtype == np.uint8 and ink.shape == (6, 32, 32)
    assert 0 <= ink.min() and ink.max() <= 1
    assert (ink[labels >= 0].sum(axis=(1, 2)) > 0).all()


def test_a_blank_render_has_no_ink_and_the_no_digit_label():
    picture, ink, label = render.scene(np.full((28, 28), 255, np.uint8), 3, "blank", np.random.default_rng(1))
    assert label == devset.NO_DIGIT and ink.max() == 0 and picture.ndim == 3


@pytest.mark.parametrize("kind", ["tilted", "shadow", "canvas"])
def test_the_new_scenes_keep_the_digit_ink_inside_the_picture(kind):
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 10:18] = 255
    picture, ink, label = render.scene(digit, 7, kind, np.random.default_rng(2))
    assert label == 7 and picture.shape[:2] == ink.shape
    assert ink.max() > 0.9  # the whole stroke is still in the picture


@pytest.fixture(scope="module")
def record():
    return json.loads((EXPORTED / "reader.json").read_text())


def test_the_committed_reader_is_one_small_builtin_graph_for_mediapipe(record):
    from ai_edge_litert.interpreter import Interpreter

    from app import tflite_metadata

    content = (EXPORTED / "digit_reader.tflite").read_bytes()
    assert len(content) == record["bytes"] <= 64 * 1024
    interpreter = Interpreter(model_content=content)
    [signature] = interpreter.get_signature_list().values()
    assert signature == {"inputs": ["pixels"], "outputs": ["probabilities"]}
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape"]) == [1, reader.SIDE, reader.SIDE, 3] and detail["dtype"] == np.uint8
    assert list(interpreter.get_output_details()[0]["shape"]) == [1, 11]
    assert "FLEX" not in " ".join(record["anatomy"]["operator_kinds"]).upper()
    meta = tflite_metadata.read(content)
    assert meta["files"]["labels.txt"].decode().split() == reader.LABELS
    assert (meta["mean"], meta["std"], meta["color_space"]) == ([0.0], [1.0], "RGB")


def test_the_committed_reader_record_clears_its_bars(record):
    assert record["mnist_test"]["pictures"] == 10_000
    assert min(record["mnist_test"]["litert"], record["mnist_test"]["mediapipe"]) >= 0.994
    assert record["mnist_test"]["agreement"] >= 0.995
    # exported/metadata.json lists the reader's files and carries its figures.
    metadata = json.loads((EXPORTED / "metadata.json").read_text())
    assert metadata["files"]["digit_reader.tflite"]["bytes"] == record["bytes"]
    assert metadata["reader"]["mnist_test"] == record["mnist_test"]
    assert metadata["reader"]["parts"]["heldout"]["photo"] == record["parts"]["heldout"]["kinds"]["photo"]


def test_the_reader_is_recorded_in_the_exported_metadata(tmp_path):
    from app.export import sha256
    from app.reader_export import record_in_metadata

    (tmp_path / "metadata.json").write_text(json.dumps({"files": {"labels.txt": {"bytes": 20, "sha256": "x"}}}))
    (tmp_path / "digit_reader.tflite").write_bytes(b"reader!")
    (tmp_path / "reader.json").write_text("{}\n")
    parts = {"tight": {"kinds": {"tight": {"pictures": 4, "litert": 0.75, "mediapipe": 0.5}}, "agreement": 0.75,
                       "litert_pictures_per_second": 9.0}}
    mnist = {"pictures": 10, "litert": 0.9, "mediapipe": 0.8, "agreement": 0.9}
    record_in_metadata(tmp_path, {"bytes": 7, "input": [1, 96, 96, 3], "labels": reader.LABELS,
                                  "mnist_test": mnist, "parts": parts})
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["files"] == {
        "labels.txt": {"bytes": 20, "sha256": "x"},
        "digit_reader.tflite": {"bytes": 7, "sha256": sha256(tmp_path / "digit_reader.tflite")},
        "reader.json": {"bytes": 3, "sha256": sha256(tmp_path / "reader.json")},
    }
    assert metadata["reader"]["mnist_test"] == mnist
    assert metadata["reader"]["parts"] == {"tight": {"agreement": 0.75,
                                                     "tight": {"pictures": 4, "litert": 0.75, "mediapipe": 0.5}}}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A few development pictures of the harder kinds, written with the set's seed."""
    folder = tmp_path_factory.mktemp("devset")
    rows = []
    for part in ("desk", "shadow", "canvas", "blank"):
        rows += devset.read_labels(devset.write(folder, part, limit=6))
    return rows


def test_litert_and_mediapipe_give_the_reader_the_same_answers(pictures):
    from app.reader_export import litert_answers, mediapipe_answers, picture

    decoded = [picture(path) for path, *_ in pictures]
    litert = litert_answers(EXPORTED / "digit_reader.tflite", decoded)
    media = mediapipe_answers(EXPORTED / "digit_reader.tflite", decoded)
    assert (litert == media).mean() >= 0.9
    truth = np.array([10 if label == devset.NO_DIGIT else label for _, label, *_ in pictures])
    assert (media == truth).mean() >= 0.6  # the measured rates are in exported/reader.json


def test_export_reader_names_a_missing_run(cli, tmp_path):
    result = cli("export-reader", "--run", tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.returncode == 3
    assert last_line(result.stderr) == (f"error: {tmp_path / 'nothing'} holds no finished reader run; run "
                                        f"`python -m app reader --out {tmp_path / 'nothing'}` first")


def test_reader_needs_an_exported_classifier(cli, tmp_path):
    result = cli("reader", "--exported", tmp_path, "--out", tmp_path / "run")
    assert result.returncode == 3
    assert last_line(result.stderr) == f"error: no exported classifier in {tmp_path}; run `make export` first"


def test_the_readme_reader_snippet_reads_a_picture_file_as_it_is(tmp_path):
    import contextlib
    import io
    import re

    from PIL import Image

    from app import data

    images, labels = (t.numpy() for t in data.in_memory(data.load_split("test[:3]")))
    readme = (ROOT / "README.md").read_text()
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "digit_reader.tflite" in b]
    for i, (image, label) in enumerate(zip(images, labels)):
        path = tmp_path / f"digit{i}.png"  # one gray channel, as a scan is saved
        Image.fromarray(image[..., 0]).save(path)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(snippet.replace("photo_of_a_digit.jpg", str(path)).replace(
                "exported/digit_reader.tflite", str(EXPORTED / "digit_reader.tflite")), "README.md", "exec"), {})
        name, score = printed.getvalue().split()
        assert name == str(label) and 0.5 < float(score) <= 1.0
