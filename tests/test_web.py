"""The web page in a real headless Chromium: LiteRT.js parity, the contract in JS, drawing.

One browser session (web/test/drive.mjs) classifies 200 MNIST test images, 50 photos and
50 pen digits of the development set and 8 of its small digits in large photos, 10 MNIST
digits cut out to their own box, two sevens drawn with a fine pen on a large canvas, a blank
ruled page, a blank image and a non-image, and three digits drawn with pointer strokes; the
tests below compare its answers with Python's.
"""

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app import preprocess as pp

from conftest import ROOT, built_once

WEB = ROOT / "web"
MODEL = ROOT / "exported" / "model_int8.tflite"
MNIST_IMAGES = 200
PHOTOS = 50
TIGHT = 10
FAR = 8
BOXED = 8
CASE_PICTURES = ["thin_7.png", "hairline_7.png", "ruled_blank.png", "shadow_0.png", "ring_0.png", "dash.png"]

# Strokes in 0..1 of the canvas, drawn with the mouse (pointer events) as a user would.
DRAWINGS = {
    "1": [[(0.52, 0.12), (0.50, 0.50), (0.48, 0.88)]],
    "7": [[(0.25, 0.18), (0.75, 0.18), (0.60, 0.50), (0.45, 0.88)]],
    "0": [[(0.5 + 0.22 * np.sin(t), 0.5 - 0.36 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 25)]],
}


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the browser test needs Chromium: apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)")
    return path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Runs the page once over every input; returns (request inputs, Python's answers, browser's).

    Built once per test run (`built_once`): the other worker reads the same folder.
    """
    with built_once(tmp_path_factory, "web") as (tmp, built):
        if not built:
            run_page(tmp)
        files = [tmp / name for name in json.loads((tmp / "files.json").read_text())]
        # predict answers each file with a JSON line: a digit, or an error.
        lines = (tmp / "predict.jsonl").read_text().splitlines()
        answers = {Path(item["file"]).name: item for item in map(json.loads, lines)}
        return {"mnist_images": np.load(tmp / "mnist.npy"), "files": files,
                "predicted": {name: item for name, item in answers.items() if "error" not in item},
                "refused": {name: item["error"] for name, item in answers.items() if "error" in item},
                "seen": tmp / "seen", "screenshot": screenshot_path(tmp),
                **json.loads((tmp / "result.json").read_text())}


def screenshot_path(tmp: Path) -> Path:
    return Path(os.environ.get("TINYMNIST_SCREENSHOT", tmp / "page.png")).resolve()


def run_page(tmp: Path) -> None:
    """Writes the inputs into `tmp`, classifies them with `predict` and with the page in Chromium."""
    from app import data, devset

    if not (WEB / "node_modules" / "@litertjs" / "core").is_dir():
        pytest.fail("web/node_modules is missing: run `make test` (it runs `npm ci` in web/)")

    images, labels = data.in_memory(data.load_split(f"test[:{MNIST_IMAGES}]"))
    mnist = images.numpy()[..., 0]
    np.save(tmp / "mnist.npy", mnist)

    folder = devset.write(tmp / "devset", "dev", limit=PHOTOS)
    files = [path for path, *_ in devset.read_labels(folder)]
    # Small digits in large photos (contract step 7's sparse peak, step 14's second look).
    for i, (path, *_) in enumerate(devset.read_labels(devset.write(tmp / "devset", "far", limit=FAR))):
        files.append(tmp / f"far_{i}.jpg")
        shutil.copy(path, files[-1])
    # Digits inside a box drawn around them (contract step 8's box).
    for i, (path, *_) in enumerate(devset.read_labels(devset.write(tmp / "devset", "boxed", limit=BOXED))):
        files.append(tmp / f"boxed_{i}.jpg")
        shutil.copy(path, files[-1])
    # MNIST digits cut out to their own box (contract step 10), x4, half of them dark on light.
    for i, image in enumerate(mnist[:TIGHT]):
        ys, xs = np.nonzero(image)
        tight = np.kron(image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], np.ones((4, 4), np.uint8))
        files.append(tmp / f"tight_{i:02d}.png")
        Image.fromarray(255 - tight if i % 2 else tight).save(files[-1])
    # From the contract's conformance cases: a "7" drawn with a fine pen on a large white canvas
    # (step 11 widens it) and one so fine that under 0.5% of the pixels are ink (step 7's sparse
    # peak), a ruled page with nothing written (refused), a "0" on a shadow's edge (step 8's
    # cores), a circle whose centre of mass lies on a half pixel (step 13), a dash (step 15).
    for name in CASE_PICTURES:
        files.append(tmp / name)
        shutil.copy(ROOT / "tests" / "contract" / "pictures" / name, files[-1])
    # A "7" inside a box drawn around it, turned 3 degrees: step 8 clears the box.
    boxed = Image.new("L", (320, 300), 230)
    draw = ImageDraw.Draw(boxed)
    draw.rectangle([70, 50, 250, 260], outline=60, width=4)
    draw.line([(110, 90), (210, 90), (150, 230)], fill=30, width=10, joint="curve")
    files.append(tmp / "boxed_7.png")
    boxed.rotate(3, resample=Image.BILINEAR, fillcolor=230).save(files[-1])
    # A dark square on paper: read as ink, refused by step 15 as no digit's shape.
    paper = np.full((240, 240), 230, np.uint8)
    paper[100:140, 90:130] = 40
    files.append(tmp / "patch.png")
    Image.fromarray(paper).save(files[-1])
    (tmp / "files.json").write_text(json.dumps([str(p.relative_to(tmp)) for p in files]))
    blank = tmp / "blank.png"
    Image.new("L", (64, 64), 230).save(blank)
    not_image = tmp / "notes.png"
    not_image.write_text("not a picture")

    out = subprocess.run(
        [sys.executable, "-m", "app", "predict", "--json", "--model", MODEL, "--save-preprocessed", tmp / "seen",
         *files],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    (tmp / "predict.jsonl").write_text(out.stdout)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    refused = [item for item in answers if "error" in item]
    assert out.returncode == (3 if refused else 0), out.stderr  # 3: some file was refused
    assert len(answers) == len(files) and len(refused) < len(files) // 10

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    request = {
        "url": f"http://127.0.0.1:{server.server_address[1]}/",
        "mnist": mnist.reshape(len(mnist), -1).tolist(),
        "images": [{"name": p.name, "base64": base64.b64encode(p.read_bytes()).decode()}
                   for p in [*files, blank, not_image]],
        "drawings": [[[list(map(float, point)) for point in stroke] for stroke in strokes]
                     for strokes in DRAWINGS.values()],
        "screenshot": str(screenshot_path(tmp)),
    }
    request["reader"] = reader_request(tmp)
    (tmp / "request.json").write_text(json.dumps(request))
    try:
        run = subprocess.run(["node", "test/drive.mjs", tmp / "request.json", tmp / "result.json"], cwd=WEB,
                             env={**os.environ, "CHROMIUM": chromium()}, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr[-2000:]


READER = ROOT / "exported" / "digit_reader.tflite"
READER_PARTS = ("heldout", "desk", "tilted", "shadow", "lined", "canvas", "blank")
READER_PICTURES = 10  # of each kind


def reader_request(tmp: Path) -> dict:
    """Development pictures for the reader: as files, and stretched by Python (for exact parity)."""
    from app import devset
    from app.reader_export import picture, stretched

    rows = []
    for part in READER_PARTS:
        rows += devset.read_labels(devset.write(tmp / "reader", part, limit=READER_PICTURES))
    (tmp / "reader.json").write_text(json.dumps([[str(path), label] for path, label, *_ in rows]))
    return {"stretched": [stretched(picture(path))[0].reshape(-1).tolist() for path, *_ in rows[:20]],
            "files": [{"name": str(path), "base64": base64.b64encode(path.read_bytes()).decode()}
                      for path, *_ in rows]}


def test_the_reader_in_the_browser_computes_what_python_litert_computes(browser):
    from app.litert import TFLiteClassifier
    from app.reader_export import picture, stretched

    rows = json.loads((browser["seen"].parent / "reader.json").read_text())
    run = TFLiteClassifier(READER)
    expected = np.stack([run(stretched(picture(path)))[0] for path, _ in rows[:20]])
    assert np.abs(np.array(browser["reader"]["pixels"]) - expected).max() < 1e-4
    # Files decoded and stretched by the browser itself: the same label on nearly all.
    python = [("0123456789" + "n")[run(stretched(picture(path)))[0].argmax()] for path, _ in rows]
    page = [item["label"][0] for item in browser["reader"]["labels"]]
    assert len(page) == len(rows) == len(READER_PARTS) * READER_PICTURES + READER_PICTURES  # heldout: photos and pens
    assert np.mean(np.array(python) == np.array(page)) >= 0.95


def test_browser_int8_output_bytes_equal_python_litert(browser):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(MODEL))
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    expected = []
    for image in browser["mnist_images"]:
        interpreter.set_tensor(given["index"], image[None, :, :, None])
        interpreter.invoke()
        expected.append(interpreter.get_tensor(taken["index"])[0])
    assert np.array_equal(np.array(browser["mnist"], np.uint8), np.array(expected))
    assert len(expected) == MNIST_IMAGES
    # The page's digit must be the likeliest one of real answers, not a constant.
    assert (np.argmax(expected, axis=1) == np.argmax(browser["mnist"], axis=1)).all()
    assert len(set(np.argmax(expected, axis=1))) == 10


def test_int8_model_takes_pixels_and_gives_probabilities_in_256ths():
    """web/tinymnist.js reads the int8 model's input as raw pixels and its output as byte / 256."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(MODEL))
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(given["shape"]) == [1, 28, 28, 1] and given["dtype"] == np.uint8
    assert given["quantization"] == (1.0, 0)
    assert taken["dtype"] == np.uint8 and taken["quantization"] == (1 / 256, 0)
    assert "OUTPUT_SCALE = 1 / 256" in (WEB / "tinymnist.js").read_text()


def test_contract_in_javascript_agrees_with_predict(browser):
    answers = {item["name"]: item for item in browser["images"]}
    photos = [p for p in browser["files"] if p.name.startswith("photo_")]
    assert len(photos) >= PHOTOS
    tight = [p.name for p in browser["files"] if p.name.startswith("tight_")]
    assert len(tight) == TIGHT and not set(tight) & set(browser["refused"])
    # Step 14 reads most of the far photos again from their full-size pixels, in both runtimes.
    zoomed = 0
    for path in (p for p in browser["files"] if p.name.startswith("far_") and p.name not in browser["refused"]):
        image = pp.decode(path)
        _, (rows, cols), _ = pp.digit_of(pp.to_gray(pp.reduce_to(image, pp.WORK_SIDE)))
        zoomed += max(rows.stop - rows.start, cols.stop - cols.start) <= pp.ZOOM_SIDE
    assert zoomed >= FAR // 2
    assert browser["refused"]["ruled_blank.png"] == answers["ruled_blank.png"]["error"] == (
        "no digit found (only specks or noise)")
    for name in ("dash.png", "patch.png"):
        assert browser["refused"][name] == answers[name]["error"] == (
            "no digit found (a bar or a block, not a digit's shape)"), name
    for name, digit in (("thin_7.png", 7), ("hairline_7.png", 7), ("boxed_7.png", 7), ("shadow_0.png", 0),
                        ("ring_0.png", 0)):
        assert name not in browser["refused"], browser["refused"].get(name)
        assert browser["predicted"][name]["digit"] == answers[name]["digit"] == digit, name
    close = total = 0
    for path in browser["files"]:
        answer = answers[path.name]
        if path.name in browser["refused"]:  # both runtimes refuse it, for the same reason
            assert answer.get("error") == browser["refused"][path.name], path.name
            continue
        assert "error" not in answer, f"{path.name}: {answer.get('error')}"
        assert answer["digit"] == browser["predicted"][path.name]["digit"], path.name
        assert abs(sum(answer["probabilities"]) - 1) < 0.02
        python = np.asarray(Image.open(browser["seen"] / f"{path.name}.png"), np.int16)
        javascript = np.array(answer["pixels"], np.int16).reshape(28, 28)
        close += int((np.abs(python - javascript) <= 1).sum())
        if path.name in ("thin_7.png", "hairline_7.png", "boxed_7.png", "shadow_0.png", "ring_0.png"):  # PNGs
            assert np.abs(python - javascript).max() <= 1 and javascript.max() == 255
        total += python.size
    assert close / total >= 0.99, f"only {close / total:.4f} of the pixels within one grey level"


def test_page_rejects_blank_and_non_images_with_a_message(browser):
    answers = {item["name"]: item for item in browser["images"]}
    assert answers["blank.png"]["error"] == "no digit found (blank or uniform image)"
    assert answers["notes.png"]["error"] == "not an image (the browser cannot decode it)"


def test_drawn_digits_are_read(browser):
    assert browser["drawings"] == list(DRAWINGS)


def test_page_runs_without_errors_and_leaves_a_screenshot(browser):
    # LiteRT's wasm logs its start-up (INFO/WARNING) as console errors; anything else is ours.
    own = [e for e in browser["errors"] if not re.match(r"(INFO|WARNING): ", e)]
    assert own == []
    with Image.open(browser["screenshot"]) as shot:
        assert shot.size == (800, 560)


def test_conformance_cases_in_javascript_give_their_expected_28x28s(tmp_path):
    """The committed cases (`python -m app cases`) through web/preprocess.js under node, from the
    pixels Python decodes: as another port would check itself."""
    from app.conformance import read, rgba

    cases = read(ROOT / "tests" / "contract")
    request = []
    for i, case in enumerate(cases):
        data, width, height = rgba(case["picture"])
        (tmp_path / f"{i}.rgba").write_bytes(data)
        request.append({"file": f"{i}.rgba", "width": width, "height": height})
    (tmp_path / "request.json").write_text(json.dumps(request))
    run = subprocess.run(["node", WEB / "test" / "contract.mjs", tmp_path / "request.json", tmp_path / "result.json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "result.json").read_text())
    assert len(results) == len(cases) == 24
    for case, result in zip(cases, results):
        name = case["picture"].name
        if "refusal" in case:
            assert result == {"refusal": case["refusal"]}, name
            continue
        assert "pixels" in result, f"{name}: {result.get('refusal')}"
        pixels = np.array(result["pixels"], np.int16).reshape(28, 28)
        assert np.abs(pixels - case["pixels"]).max() <= 1, name  # float32 and float64 round apart


def test_javascript_constants_equal_python():
    from app import preprocess

    source = (WEB / "preprocess.js").read_text()
    constants = dict(re.findall(r"^export const ([A-Z_]+) = ([\d._]+);", source, re.M))
    python = {name: getattr(preprocess, name) for name in constants}
    assert {k: float(v.replace("_", "")) for k, v in constants.items()} == python
    names = re.findall(r"^([A-Z_]+) = ", Path(preprocess.__file__).read_text(), re.M)
    assert sorted(constants) == sorted(names) and len(names) == 46


def test_javascript_module_imports_resolve_locally():
    """Offline: the import map and every URL point into web/, never to a CDN."""
    html = (WEB / "index.html").read_text()
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"]
    for target in imports.values():
        assert (WEB / target).is_file(), target
    for path in WEB.glob("*.js"):
        assert "http" not in re.sub(r"^\s*//.*$", "", path.read_text(), flags=re.M), path.name
    assert (WEB / "model_int8.tflite").resolve() == MODEL.resolve()
    assert (WEB / "digit_reader.tflite").resolve() == READER.resolve()
