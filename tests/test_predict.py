"""`python -m app predict`: real MNIST digits as image files, and its error paths."""

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def model(formats):
    """The int8 `.tflite` of the shared, briefly trained default model (see conftest)."""
    return formats[1] / "model_int8.tflite"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Real MNIST test digits saved as image files in several guises, with their labels."""
    from app import data

    folder = tmp_path_factory.mktemp("digits")
    images, labels = next(iter(data.load_split("test[:6]").batch(6)))
    images, labels = images.numpy()[..., 0], labels.numpy().tolist()
    files = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        files[folder / f"plain_{i}.png"] = label
        Image.fromarray(image).save(folder / f"plain_{i}.png")
    Image.fromarray(images[0]).resize((140, 140), Image.BILINEAR).save(folder / "big.png")
    files[folder / "big.png"] = labels[0]
    Image.fromarray(images[1]).convert("RGB").save(folder / "rgb.jpg", quality=95)
    files[folder / "rgb.jpg"] = labels[1]
    return folder, files, images, labels


def test_plain_resized_and_rgb_digits_get_the_models_own_answer(cli, digits, model):
    from app.litert import TFLiteClassifier

    _, files, images, _ = digits
    # The contract leaves MNIST digits alone: each file gets the answer the model gives the
    # raw 28x28 pixels (big.png is digit 0 upscaled, rgb.jpg digit 1 as a colour JPEG).
    raw = TFLiteClassifier(model)(images[..., None].astype(np.float32)).argmax(1).tolist()
    expected = raw + [raw[0], raw[1]]
    result = cli("predict", "--model", model, *files)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(files)
    for line, path, answer in zip(lines, files, expected):
        name, digit, probability, *unsure = line.split("\t")
        assert name == str(path) and int(digit) == answer, line
        assert 0.3 < float(probability) <= 1.0
        assert unsure == (["unsure"] if float(probability) < 0.6 else [])


def test_dark_on_light_is_detected_and_the_options_work(cli, digits, model, tmp_path):
    _, _, images, labels = digits
    Image.fromarray(255 - images[2]).save(tmp_path / "paper.png")
    result = cli("predict", "--model", model, "--json", "--top", "3", "--save-preprocessed", tmp_path / "seen",
                 tmp_path / "paper.png")
    assert result.returncode == 0, result.stderr
    [entry] = [json.loads(line) for line in result.stdout.splitlines()]
    assert entry["file"] == str(tmp_path / "paper.png") and entry["digit"] == labels[2]
    assert [t["digit"] for t in entry["top"]][0] == labels[2] and len(entry["top"]) == 3
    assert entry["top"][0]["probability"] >= entry["top"][1]["probability"] >= entry["top"][2]["probability"]
    assert entry["unsure"] == (entry["probability"] < 0.6)
    seen = np.asarray(Image.open(tmp_path / "seen" / "paper.png.png"))
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    # What the model saw is the MNIST digit itself (light on black), not its negative.
    assert np.abs(seen.astype(int) - images[2].astype(int)).mean() < 10


def test_forced_polarity_and_the_deprecated_flag(cli, digits, model, tmp_path):
    _, _, images, labels = digits
    Image.fromarray(255 - images[2]).save(tmp_path / "paper.png")
    forced = cli("predict", "--model", model, "--polarity", "dark-on-light", tmp_path / "paper.png")
    old = cli("predict", "--model", model, "--dark-on-light", tmp_path / "paper.png")
    assert forced.returncode == old.returncode == 0
    assert forced.stdout == old.stdout and forced.stdout.split("\t")[1] == str(labels[2])
    assert old.stderr == "note: --dark-on-light is deprecated; use --polarity dark-on-light\n"


def test_bad_files_get_one_line_each_and_the_rest_are_classified(cli, digits, model, tmp_path):
    _, files, _, labels = digits
    good = next(iter(files))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    result = cli("predict", "--model", model, "--json", tmp_path / "missing.png", tmp_path, tmp_path / "empty.png",
                 tmp_path / "notes.png", good)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.png'}: no such file",
        f"error: {tmp_path}: is a directory",
        f"error: {tmp_path / 'empty.png'}: empty file",
        f"error: {tmp_path / 'notes.png'}: not an image (UnidentifiedImageError)",
    ]
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert {k: entries[-1][k] for k in ("file", "digit")} == {"file": str(good), "digit": files[good]}
    assert entries[-1]["top"] == [{"digit": files[good], "probability": entries[-1]["probability"]}]
    assert [("error" in e) for e in entries] == [True, True, True, True, False]


def test_worker_processes_give_the_same_answers_in_the_same_order(cli, digits, model, tmp_path):
    from app.predict import PARALLEL_FROM

    _, files, _, _ = digits
    # Enough files for workers to start; a bad file in the middle must stay in its place.
    (tmp_path / "notes.png").write_text("not a picture")
    paths = (list(files) * (PARALLEL_FROM // len(files) + 1))[:PARALLEL_FROM]
    paths.insert(PARALLEL_FROM // 2, tmp_path / "notes.png")
    alone = cli("predict", "--model", model, "--json", "--jobs", "1", *paths)
    workers = cli("predict", "--model", model, "--json", "--jobs", "2", *paths)
    assert alone.returncode == workers.returncode == 3
    assert workers.stdout == alone.stdout and workers.stderr == alone.stderr
    entries = [json.loads(line) for line in workers.stdout.splitlines()]
    assert [e["file"] for e in entries] == [str(p) for p in paths]
    assert sum("digit" in e for e in entries) == PARALLEL_FROM
    assert workers.stderr.strip() == f"error: {tmp_path / 'notes.png'}: not an image (UnidentifiedImageError)"


def test_workers_fork_on_linux_unless_tensorflow_is_loaded(monkeypatch):
    import sys
    import types

    from app.predict import start_method

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert start_method() == "fork"  # as in `python -m app predict`
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    assert start_method() == "spawn"
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert start_method() == "spawn"


def test_spawned_workers_give_the_answers_of_one_process(digits, model, monkeypatch):
    from app import predict

    _, files, _, _ = digits
    paths = (list(files) * (predict.PARALLEL_FROM // len(files) + 1))[:predict.PARALLEL_FROM]
    alone = list(predict.predict_files(paths, model, jobs=1))
    monkeypatch.setattr(predict, "start_method", lambda: "spawn")
    assert list(predict.predict_files(paths, model, jobs=2)) == alone
    assert sum("digit" in result for result in alone) == predict.PARALLEL_FROM


def test_ctrl_c_while_the_workers_fork_stops_predict(digits, model):
    """Python's after-fork hooks report a KeyboardInterrupt raised in them and carry on:
    SIGINT is held while the workers start, then stops the run."""
    import subprocess
    import sys

    from app import predict

    from conftest import ROOT

    _, files, _, _ = digits
    paths = [str(p) for p in (list(files) * predict.PARALLEL_FROM)[:predict.PARALLEL_FROM]]
    code = (
        "import os, signal, sys\n"
        "# Ctrl-C raises KeyboardInterrupt as in a terminal, also under a shell that started\n"
        "# this in the background with SIGINT ignored.\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from app import predict\n"
        "assert predict.start_method() == 'fork'\n"
        "sent = []\n"
        "def ctrl_c():  # as if Ctrl-C landed while the first worker forked\n"
        "    if not sent:\n"
        "        sent.append(True)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "os.register_at_fork(after_in_parent=ctrl_c)\n"
        "try:\n"
        "    results = list(predict.predict_files(sys.argv[2:], sys.argv[1], jobs=2))\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped')\n"
        "else:\n"
        "    print(f'ran to the end: {len(results)} files')\n")
    out = subprocess.run([sys.executable, "-c", code, str(model), *paths], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "stopped", out.stderr[-500:]
    assert "Exception ignored" not in out.stderr


def test_predict_does_not_import_tensorflow(digits, model):
    import subprocess
    import sys

    from conftest import ROOT

    _, files, _, _ = digits
    args = ["predict", "--model", str(model), str(next(iter(files)))]
    code = (f"import sys; from app.cli import main; rc = main({args!r}); "
            "print(rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False False"


def test_missing_model_is_one_line(cli, digits, tmp_path):
    _, files, _, _ = digits
    result = cli("predict", "--model", tmp_path / "none.tflite", next(iter(files)))
    assert result.returncode == 3
    assert result.stderr == f"error: no model at {tmp_path / 'none.tflite'}; run `make export` or pass --model\n"





def test_the_readme_litert_snippet_runs(digits, model, tmp_path):
    import contextlib
    import io
    import re

    from conftest import ROOT

    _, files, _, _ = digits
    path, label = next(iter(files.items()))
    readme = (ROOT / "README.md").read_text()
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                 if "preprocess_file(" in block and "Interpreter(" in block]
    snippet = snippet.replace("photo_of_a_digit.jpg", str(path)).replace("exported/model_int8.tflite", str(model))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {})
    digit, probability = printed.getvalue().split()
    assert int(digit) == label and 0.5 < float(probability) <= 1.0
