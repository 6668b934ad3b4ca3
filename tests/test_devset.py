"""The development set: written from a seed, both polarities, disjoint parts, scored by realworld."""

import numpy as np
from PIL import Image

from app import devset
from app.preprocess import border
from app.realworld import markdown, score_part


def test_parts_are_reproducible_labelled_and_disjoint(tmp_path):
    dev = devset.write(tmp_path / "a", "dev", seed=3, limit=6)
    again = devset.write(tmp_path / "b", "dev", seed=3, limit=6)
    held = devset.write(tmp_path / "a", "heldout", seed=3, limit=6)
    rows = devset.read_labels(dev)
    assert [r[2] for r in rows] == ["photo"] * 6 + ["pen"] * 6
    assert all(0 <= r[1] <= 9 for r in rows)
    for (path, *_), (twin, *_) in zip(rows, devset.read_labels(again)):
        assert path.read_bytes() == twin.read_bytes()  # the seed decides every pixel
    held_rows = devset.read_labels(held)
    assert {p.name for p, *_ in held_rows}.isdisjoint({p.name for p, *_ in rows if p.name.startswith("pen")})
    # `final` draws the same second half of the pen digits as `heldout`, in new pictures.
    final_rows = devset.read_labels(devset.write(tmp_path / "a", "final", seed=3, limit=6))
    for (held_path, label, *_), (final_path, final_label, *_) in zip(held_rows[6:], final_rows[6:]):
        assert held_path.name == final_path.name and label == final_label
        assert held_path.read_bytes() != final_path.read_bytes()
    photo = np.asarray(Image.open(rows[0][0]))
    assert photo.ndim == 3 and min(photo.shape[:2]) >= 96  # a colour picture on a larger canvas


def test_lined_part_is_ink_photos_on_notebook_lines(tmp_path):
    rows = devset.read_labels(devset.write(tmp_path, "lined", seed=3, limit=8))
    assert [(kind, polarity) for _, _, kind, polarity in rows] == [("lined", "dark-on-light")] * 8  # no pens
    coverage = devset.ruling(120, 200, np.random.default_rng(0))
    assert coverage.shape == (120, 200) and coverage.max() == 1 and 0.02 < coverage.mean() < 0.3
    # Every line crosses the picture: each column (ruled) or row and column (squared) meets one.
    assert (coverage.max(axis=0) > 0.5).all()


def test_desk_part_is_a_sheet_with_the_desk_around_it(tmp_path):
    rows = devset.read_labels(devset.write(tmp_path, "desk", seed=3, limit=6))
    assert [(kind, polarity) for _, _, kind, polarity in rows] == [("desk", "dark-on-light")] * 6  # no pens
    for path, *_ in rows:
        gray = np.asarray(Image.open(path).convert("L"), np.float32)
        h, w = gray.shape
        # The sheet (55-90% of each side) is lighter than the desk that shows around it.
        assert np.median(gray[h // 4 : h - h // 4, w // 4 : w - w // 4]) > np.median(border(gray)) + 30


def test_tight_part_is_digits_cut_out_to_their_own_box(tmp_path):
    rows = devset.read_labels(devset.write(tmp_path, "tight", seed=3, limit=8))
    assert [kind for _, _, kind, _ in rows] == ["tight"] * 8  # no pens
    assert {polarity for *_, polarity in rows} == {"dark-on-light", "light-on-dark"}
    for path, _, _, polarity in rows:
        ink = np.asarray(Image.open(path), np.float32)
        ink = 255 - ink if polarity == "dark-on-light" else ink
        assert all(side.max() > 0 for side in (ink[0], ink[-1], ink[:, 0], ink[:, -1]))  # ink on every edge


def test_far_part_is_small_digits_in_large_photos(tmp_path):
    rows = devset.read_labels(devset.write(tmp_path, "far", seed=3, limit=4))
    assert [(kind, polarity) for _, _, kind, polarity in rows] == [("far", "dark-on-light")] * 4  # no pens
    for path, *_ in rows:
        with Image.open(path) as picture:
            assert 480 <= min(picture.size) and max(picture.size) < 1200  # 2-5x the other photos


def test_blank_part_is_photos_without_a_digit(tmp_path):
    rows = devset.read_labels(devset.write(tmp_path, "blank", seed=3, limit=12))
    assert [(label, kind) for _, label, kind, _ in rows] == [(devset.NO_DIGIT, "blank")] * 12
    sides = []
    for path, *_ in rows:
        with Image.open(path) as picture:
            sides.append(min(picture.size))
    assert min(sides) < 320 and max(sides) >= 480  # plain photos and large (far) ones


def test_refusing_a_picture_without_a_digit_is_its_right_answer(tmp_path):
    for name in ("empty.png", "three.png"):
        Image.new("L", (40, 40), 200).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text(f"file,label,kind,polarity\nempty.png,{devset.NO_DIGIT},blank,dark-on-light\n"
                                         "three.png,3,blank,dark-on-light\n")
    scored = score_part(tmp_path, classify=None)  # both refused: the model is never asked
    assert {k: scored["kinds"]["blank"][k] for k in ("images", "right", "no_digit")} == {
        "images": 2, "right": 1, "no_digit": 2}
    assert scored["kinds"]["blank"]["accuracy"] == 0.5


def test_both_polarities_are_there():
    rng = np.random.default_rng(0)
    digit = np.zeros((8, 8))
    digit[1:7, 3:5] = 16
    dark = np.asarray(devset.pen(digit, rng, dark_on_light=True))
    light = np.asarray(devset.pen(digit, rng, dark_on_light=False))
    assert dark[0, 0] == 255 and dark.min() < 64
    assert light[0, 0] == 0 and light.max() > 192


def test_realworld_scores_a_part_without_crashes(tmp_path, formats):
    from app.litert import TFLiteClassifier

    folder = devset.write(tmp_path, "dev", limit=10)
    scored = score_part(folder, TFLiteClassifier(formats[1] / "model_int8.tflite"))
    assert {k: v["images"] for k, v in scored["kinds"].items()} == {"photo": 10, "pen": 10}
    assert all(v["crashed"] == 0 for v in scored["kinds"].values())
    assert scored["kinds"]["photo"]["right"] >= 6  # a 2-epoch model, through the contract
    assert "| dev | photo | 10 |" in markdown({"parts": {"dev": scored}})
    a = scored["answers"]
    assert a["unsure"] + a["sure"] == 20 - sum(v["no_digit"] for v in scored["kinds"].values())
    assert a["unsure_right"] + a["sure_right"] == sum(v["right"] for v in scored["kinds"].values())
    assert f"- dev: {a['unsure']} of {a['unsure'] + a['sure']} answers unsure (probability under 0.6)" in markdown(
        {"parts": {"dev": scored}})


def test_realworld_scores_a_validation_run_without_reading_test(tmp_path):
    """`realworld --run` converts a run to int8 unverified, for recipe choices on `dev`."""
    from app.cli import main
    from app.config import ModelConfig, Recipe
    from app.train import train

    run = tmp_path / "val"
    train(ModelConfig(), Recipe(epochs=1), out=run, quick=True, validation=True, verbose=0)
    folder = devset.write(tmp_path / "set", "dev", limit=4)
    report = tmp_path / "rw.md"
    args = ["realworld", "--run", str(run), "--devset", str(folder.parent), "--parts", "dev", "--out", str(report)]
    assert main(args) == 2  # the MNIST check would read the test split
    assert main([*args, "--no-mnist"]) == 0
    text = report.read_text()
    assert "| dev | photo | 4 |" in text and "| dev | pen | 4 |" in text and "MNIST" not in text


def test_realworld_scores_written_parts_without_tensorflow(tmp_path):
    """Tuning the contract reruns `realworld --no-mnist` on written parts: no TensorFlow import."""
    import subprocess
    import sys

    from conftest import ROOT

    folder = devset.write(tmp_path / "set", "dev", limit=3)  # MNIST digits: TensorFlow, here
    report = tmp_path / "rw.md"
    args = ["realworld", "--devset", str(folder.parent), "--parts", "dev", "--no-mnist", "--out", str(report)]
    check = f"import sys; from app.cli import main; code = main({args!r}); print(code, 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-1].split() == ["0", "False"], result.stderr
    text = report.read_text()
    assert "| dev | photo | 3 |" in text and "| dev | pen | 3 |" in text and "MNIST" not in text


def test_boxed_part_is_ink_photos_of_a_digit_inside_a_box(tmp_path):
    rows = devset.read_labels(devset.write(tmp_path, "boxed", seed=3, limit=6))
    assert [(kind, polarity) for _, _, kind, polarity in rows] == [("boxed", "dark-on-light")] * 6  # no pens
    coverage = devset.box_around((40, 50, 100, 80), (200, 240), np.random.default_rng(0))
    assert coverage.shape == (200, 240) and 0.6 <= coverage.max() <= 1.0
    # A ring around the digit's place: nothing inside it, nothing far outside it.
    assert coverage[60:120, 70:110].max() == 0 and coverage[:20].max() == 0 and coverage[170:].max() == 0
    lit_rows = np.flatnonzero(coverage.max(axis=1) > 0.3)
    assert 40 - 15 - 2 <= lit_rows.min() <= 40 and 140 <= lit_rows.max() <= 140 + 15 + 2  # 0-15% of 100 off


def test_the_phone_style_parts_are_their_own_kinds(tmp_path):
    for part, polarity in (("canvas", "any"), ("tilted", "dark-on-light")):
        rows = devset.read_labels(devset.write(tmp_path, part, limit=4))
        assert [(kind, p) for _, _, kind, p in rows] == [(part, polarity)] * 4  # no pens
    rows = devset.read_labels(devset.write(tmp_path, "shadow", limit=4))
    assert [kind for _, _, kind, _ in rows] == ["shadow"] * 4
    assert all(path.suffix == ".png" for path, *_ in devset.read_labels(tmp_path / "canvas"))
