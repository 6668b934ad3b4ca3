"""Faults and bad input: kills, damaged state, busy folders, hostile files. Nothing is lost.

Each test reproduces one way a command could lose work or answer with a traceback, and
asserts the one-line message, the exit code, and that finished work is intact.
"""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from app.config import Recipe
from app.errors import DamagedStateError
from app.files import atomic_path, folder_lock, share
from app.train import train

from conftest import ROOT, Interrupt, epochs_seen, stop_at_epoch


def png_header(width: int, height: int) -> bytes:
    """A PNG file whose header claims `width` x `height` gray pixels (and holds no image)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def one_line_error(result, code, start):
    """The command failed with `code` and exactly one stderr line starting with `start`."""
    assert result.returncode == code, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(start), lines[0]
    return lines[0]


# --- predict -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(formats):
    return formats[1] / "model_int8.tflite"


@pytest.fixture(scope="module")
def good_digit(tmp_path_factory):
    from app import data

    image, label = next(iter(data.load_split("test[:1]")))
    path = tmp_path_factory.mktemp("good") / "seven.png"
    Image.fromarray(image.numpy()[..., 0]).save(path)
    return path, int(label)


def test_predict_refuses_huge_images_from_the_header_and_keeps_the_good_results(cli, model, good_digit, tmp_path):
    good, label = good_digit
    (tmp_path / "bomb.png").write_bytes(png_header(30_000, 30_000))
    (tmp_path / "big.png").write_bytes(png_header(10_000, 10_000))
    result = cli("predict", "--model", model, good, tmp_path / "bomb.png", tmp_path / "big.png", good)
    assert result.returncode == 3
    assert result.stdout.splitlines() == [f"{good}\t{label}\t" + result.stdout.splitlines()[0].split("\t")[2]] * 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'bomb.png'}: image too large (over 64,000,000 pixels); scale it down first",
        f"error: {tmp_path / 'big.png'}: image too large (10000x10000 pixels, at most 64,000,000); scale it down first",
    ]


def open_fifo_for_writing(fifo, seconds=30.0):
    """Opens a FIFO once its reader has; non-blocking, so a missing reader fails, not hangs."""
    deadline = time.time() + seconds
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody reads it yet
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_predict_prints_each_result_before_a_later_file_is_read(cli, model, good_digit, tmp_path):
    good, _ = good_digit
    fifo = tmp_path / "slow.png"
    os.mkfifo(fifo)  # reading it blocks until we write: the good result must already be out
    proc = subprocess.Popen([sys.executable, "-m", "app", "predict", "--model", str(model), str(good), str(fifo)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"{good}\t")
        writer = open_fifo_for_writing(fifo)
        os.write(writer, b"not an image")
        os.close(writer)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert stderr == f"error: {fifo}: not an image (UnidentifiedImageError)\n"


@pytest.mark.parametrize("name, pixels", [
    ("blank.png", np.zeros((28, 28), np.uint8)),
    ("white.png", np.full((50, 40), 255, np.uint8)),
    ("gray.png", np.full((30, 30), 97, np.uint8)),
    ("dot.png", np.zeros((1, 1), np.uint8)),
])
def test_predict_refuses_images_without_a_digit(cli, model, tmp_path, name, pixels):
    Image.fromarray(pixels).save(tmp_path / name)
    result = cli("predict", "--model", model, tmp_path / name)
    one_line_error(result, 3, f"error: {tmp_path / name}: no digit found")
    assert result.stdout == ""


def test_a_digit_drawn_only_in_the_alpha_channel_is_read(cli, model, good_digit, tmp_path):
    good, label = good_digit
    digit = np.asarray(Image.open(good))
    rgba = np.zeros((28, 28, 4), np.uint8)  # black everywhere; the stroke is only in alpha
    rgba[..., 3] = digit
    Image.fromarray(rgba, "RGBA").resize((280, 280), Image.BILINEAR).save(tmp_path / "canvas.png")
    result = cli("predict", "--model", model, tmp_path / "canvas.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[1] == str(label)


def test_invalid_tflite_is_one_line_naming_the_file(cli, good_digit, tmp_path):
    (tmp_path / "model.tflite").write_text("not a model")
    result = cli("predict", "--model", tmp_path / "model.tflite", good_digit[0])
    line = one_line_error(result, 3, f"error: {tmp_path / 'model.tflite'} is not a usable TFLite model")
    assert line.endswith("export it again")


# --- train: run folders --------------------------------------------------------------------

def stopped_run(folder, epochs_done=2, epochs=4):
    """A quick run folder killed after `epochs_done` finished epochs (backup in place)."""
    with pytest.raises(Interrupt):
        train(recipe=Recipe(epochs=epochs), out=folder, quick=True, verbose=0, callbacks=[stop_at_epoch(epochs_done)])
    return folder


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    return stopped_run(tmp_path_factory.mktemp("stopped") / "run")


def copy_of(folder, tmp_path):
    import shutil

    shutil.copytree(folder, tmp_path / "run")
    return tmp_path / "run"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage, names", [
    ("empty metadata", "training_metadata.json is damaged (JSONDecodeError)"),
    ("truncated weights", "epoch-0002.weights.h5 is damaged"),
    ("deleted weights", "epoch-0002.weights.h5 is missing"),
    ("deleted backup", "history.csv holds 2 finished epochs but"),
])
def test_damaged_resume_state_is_refused_and_history_kept(cli, stopped, tmp_path, damage, names):
    run = copy_of(stopped, tmp_path)
    backup = run / "backup"
    history = digest(run / "history.csv")
    if damage == "empty metadata":
        (backup / "training_metadata.json").write_text("")
    elif damage == "truncated weights":
        weights = backup / "epoch-0002.weights.h5"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "deleted weights":
        (backup / "epoch-0002.weights.h5").unlink()
    else:
        import shutil

        shutil.rmtree(backup)
    result = cli("train", "--quick", "--epochs", "4", "--out", run)
    line = one_line_error(result, 5, f"error: cannot resume {run}, ")
    assert names in line and line.endswith("rerun with --restart to train from epoch 1, or choose another --out")
    assert digest(run / "history.csv") == history  # never truncated
    assert not (run / "metrics.json").exists()


def test_restart_trains_a_damaged_run_from_epoch_one(stopped, tmp_path):
    run = copy_of(stopped, tmp_path)
    (run / "backup" / "training_metadata.json").write_text("")
    with pytest.raises(DamagedStateError):
        train(recipe=Recipe(epochs=4), out=run, quick=True, verbose=0)
    seen = epochs_seen()
    metrics = train(recipe=Recipe(epochs=4), out=run, quick=True, verbose=0, callbacks=[seen], restart=True)
    assert seen.seen == [0, 1, 2, 3] and metrics["epochs"] == 4


def test_a_busy_run_folder_is_refused_naming_the_holder(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with folder_lock(run, "python -m app train --out elsewhere"):
        result = cli("train", "--quick", "--out", run)
    holder = f"pid {os.getpid()} (python -m app train --out elsewhere)"
    line = one_line_error(result, 4, f"error: {run} is in use by {holder}")
    assert line.endswith("wait for it to finish or choose another folder")
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_kill_after_the_last_epoch_finishes_the_files_without_training_again(tmp_path, monkeypatch):
    from app import plots

    def killed(*args, **kwargs):
        raise Interrupt  # after model.keras, before metrics.json: as a kill there

    monkeypatch.setattr(plots, "curves", killed)
    with pytest.raises(Interrupt):
        train(recipe=Recipe(epochs=2), out=tmp_path, quick=True, verbose=0)
    assert (tmp_path / "backup").is_dir() and not (tmp_path / "metrics.json").exists()
    monkeypatch.undo()

    seen = epochs_seen()
    metrics = train(recipe=Recipe(epochs=2), out=tmp_path, quick=True, verbose=0, callbacks=[seen])
    assert seen.seen == []  # nothing trained again
    assert metrics["epochs"] == 2 and len((tmp_path / "history.csv").read_text().splitlines()) == 3
    assert not (tmp_path / "backup").exists()


def test_resuming_with_another_recipe_is_refused(stopped, tmp_path, cli):
    run = copy_of(stopped, tmp_path)
    result = cli("train", "--quick", "--epochs", "4", "--batch-size", "64", "--out", run)
    line = one_line_error(result, 2, f"error: {run} was started with another recipe (")
    assert line.endswith("rerun that command to resume, or choose another --out")


@pytest.mark.parametrize("where, message", [
    ("file", "cannot use {out} as a folder, it is a file; choose another --out"),
    ("under a file", "cannot create {out}, a part of the path is a file; choose another --out"),
    ("unwritable", "cannot write in {out} ("),
])
def test_train_out_that_cannot_be_a_folder_is_one_line(cli, tmp_path, where, message):
    (tmp_path / "notes.txt").write_text("keep me")
    out = {"file": tmp_path / "notes.txt", "under a file": tmp_path / "notes.txt" / "run",
           "unwritable": Path("/proc/1/run")}[where]
    result = cli("train", "--quick", "--out", out)
    one_line_error(result, 2, "error: " + message.format(out=out))
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_ctrl_c_prints_a_fresh_line_with_the_resume_command(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "app", "train", "--quick", "--epochs", "30", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "backup" / "training_metadata.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.splitlines()[-1] == (
        f"interrupted; run `python -m app train --quick --epochs 30 --out {out}` to resume")


INTERRUPT_WHILE_IMPORTING = """
import importlib.abc, os, signal, sys

class Interrupt(importlib.abc.MetaPathFinder):
    # Presses Ctrl-C the moment Python looks for the module named in INTERRUPT_AT.
    def find_spec(self, name, path, target=None):
        if name == os.environ["INTERRUPT_AT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
"""


@pytest.mark.parametrize("module, args", [("app", ["predict", "x.png"]), ("tuner", ["search", "--help"])])
def test_ctrl_c_while_the_modules_load_is_one_line(cli, tmp_path, module, args):
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_WHILE_IMPORTING)
    env = {"PYTHONPATH": str(tmp_path), "INTERRUPT_AT": f"{module}.cli"}
    result = cli(*args, module=module, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "interrupted\n")


def outcome_of(code: str) -> tuple[int, str, str]:
    """Runs `python -c code` from the repo root: its exit code, stdout and stderr."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


def test_ctrl_c_inside_quiet_native_stderr_still_reaches_the_terminal():
    code = ("import os, signal, time\n"
            "from app.errors import interrupt_exits\n"
            "from app.tflog import quiet_native_stderr\n"
            "with interrupt_exits():\n"
            "    pass\n"
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
            "with interrupt_exits(), quiet_native_stderr():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(30)\n"
            "print('not reached')\n")
    assert outcome_of(code) == (130, "", "interrupted\n")


def test_an_ignored_ctrl_c_stays_ignored_while_modules_load():
    # nohup and a script's background job start a process with SIGINT ignored.
    code = ("import os, signal\n"
            "from app.errors import interrupt_exits\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "with interrupt_exits():\n"
            "    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "print('still here')\n")
    assert outcome_of(code) == (0, "still here\n", "")


def test_training_leaves_an_ignored_ctrl_c_ignored():
    from app.train import StopAtCtrlC

    stop = StopAtCtrlC()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop.on_train_begin()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        stop.on_train_end()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop.on_train_begin()  # from a terminal it takes Ctrl-C over, and gives it back
        assert signal.getsignal(signal.SIGINT) == stop._press
        stop.on_train_end()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_tensorflow_log_stays_quiet_unless_verbose(cli, tmp_path):
    # A damaged model file is found only by loading it, after TensorFlow's import and its log.
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 this zip stops here")
    quiet = cli("export", "--model", tmp_path / "model.keras", "--out", tmp_path / "out")
    one_line_error(quiet, 3, f"error: cannot load {tmp_path / 'model.keras'} as a Keras model (")
    loud = cli("export", "--model", tmp_path / "model.keras", "--out", tmp_path / "out", "--verbose")
    assert loud.returncode == 3 and len(loud.stderr.splitlines()) > 1


# --- export --------------------------------------------------------------------------------

@pytest.mark.parametrize("content, kind", [
    (b"PK\x03\x04 this zip stops here", "damaged .keras"),
    (b"just some text\n", "text .h5"),
])
def test_a_damaged_model_file_is_one_line(cli, tmp_path, content, kind):
    name = "model.keras" if kind.endswith(".keras") else "model.h5"
    (tmp_path / name).write_bytes(content)
    result = cli("export", "--model", tmp_path / name, "--out", tmp_path / "out")
    line = one_line_error(result, 3, f"error: cannot load {tmp_path / name} as a Keras model (")
    assert line.endswith("give the model.keras of a finished run")
    assert not (tmp_path / "out").exists()


def test_files_are_shared_by_the_umask_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        folder = tmp_path / "set"
        (folder / "inner").mkdir(parents=True)
        os.chmod(folder, 0o700)
        (folder / "inner" / "f").write_text("x")
        os.chmod(folder / "inner" / "f", 0o600)
        share(folder)
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "inner" / "f").stat().st_mode & 0o777 == 0o644


def test_export_writes_shared_files_with_the_run_provenance(formats, tmp_path, monkeypatch):
    """A successful export from a run folder with a record (the bar lifted for a 2-epoch model)."""
    from app import export as ex
    from app.export import export
    from app.files import STAGING_PREFIX

    monkeypatch.setattr(ex, "check_bar", lambda scores, min_accuracy=0: [])
    from app.provenance import record

    model, _ = formats
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    made = record("python -m tuner search --budget 6000 --dir tuning/b6000  # retraining trial 05", {}, {},
                  origin={"kind": "search", "search_dir": "tuning/b6000", "trial": "05"})
    (run / "provenance.json").write_text(json.dumps(made))
    (tmp_path / f"{STAGING_PREFIX}exported-killed").mkdir()  # left by a killed export
    old = os.umask(0o022)
    try:
        metadata = export(run / "model.keras", tmp_path / "exported", command="python -m app export")
    finally:
        os.umask(old)
    out = tmp_path / "exported"
    assert metadata["provenance"]["origin"] == {"kind": "search", "search_dir": "tuning/b6000", "trial": "05"}
    assert metadata["commands"] == [made["command"], "python -m app export"]
    assert out.stat().st_mode & 0o777 == 0o755
    for path in out.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))  # the stale staging folder is gone too
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{STAGING_PREFIX}exported-x/"], cwd=ROOT)
    assert ignored.returncode == 0


# --- search --------------------------------------------------------------------------------

SEARCH = ["search", "--quick", "--budget", "6000", "--trials", "2", "--epochs", "1", "--retrain-epochs", "1"]


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search") / "s"
    result = subprocess.run([sys.executable, "-m", "tuner", *SEARCH, "--dir", str(folder)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder, result.stdout


def test_rerunning_a_finished_search_reprints_its_report_and_keeps_every_file(cli, finished_search):
    folder, first = finished_search
    files = {p: digest(p) for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    again = cli(*SEARCH, "--dir", folder, module="tuner")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    report = [line for line in first.splitlines() if line.startswith(("search done:", "retrained best"))]
    assert len(report) == 2 and all(line in again.stdout for line in report)
    assert {p: digest(p) for p in files} == files
    assert "retrained" in json.loads((folder / "search.json").read_text())


def test_a_search_folder_refuses_another_budget(cli, finished_search):
    folder, _ = finished_search
    result = cli(*[a if a != "6000" else "5000" for a in SEARCH], "--dir", folder, module="tuner")
    line = one_line_error(result, 2, f"error: {folder} holds a search with --budget 6000 (python -m tuner search")
    assert line.endswith("rerun that command to resume it, or choose another --dir")


def test_the_retrained_model_records_its_search_and_trial(finished_search):
    folder, _ = finished_search
    made = json.loads((folder / "best" / "provenance.json").read_text())
    summary = json.loads((folder / "search.json").read_text())
    assert made["origin"] == {"kind": "search", "search_command": summary["command"], "search_dir": str(folder),
                              "trial": summary["best_trial"]["trial"]}
    assert made["config"] == summary["best_config"]


def test_search_killed_during_a_trial_keeps_the_finished_ones(tmp_path):
    folder = tmp_path / "s"
    args = [sys.executable, "-m", "tuner", "search", "--quick", "--no-retrain", "--budget", "6000", "--trials", "3",
            "--epochs", "2", "--dir", str(folder)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # kill -9 once trial 0 is reported and trial 1 has begun
            lines.append(line)
            if line.startswith("trial 0:"):
                time.sleep(1.0)
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert any(line.startswith("trial 0:") for line in lines), "".join(lines)[-2000:]
    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ran = [line.split(":")[0] for line in resumed.stdout.splitlines() if line.startswith("trial ")]
    assert "trial 0" not in ran and sorted(ran) == ["trial 1", "trial 2"]
    assert "search done: 3 trials trained" in resumed.stdout


def test_export_killed_midway_leaves_the_destination_and_no_work_for_the_user(tmp_path, cli):
    from app.files import STAGING_PREFIX
    from app.model import build_model

    keras.utils.set_random_seed(0)
    build_model().save(tmp_path / "untrained.keras")
    dest = tmp_path / "exported"
    dest.mkdir()
    (dest / "model_int8.tflite").write_bytes(b"previous model")
    args = [sys.executable, "-m", "app", "export", "--model", str(tmp_path / "untrained.keras"), "--out", str(dest)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob(f"{STAGING_PREFIX}exported-*/saved_model")):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list(tmp_path.glob(f"{STAGING_PREFIX}exported-*")), "the kill came before the staging folder"
    assert sorted(p.name for p in dest.iterdir()) == ["model_int8.tflite"]
    assert (dest / "model_int8.tflite").read_bytes() == b"previous model"
    rerun = cli("export", "--model", tmp_path / "untrained.keras", "--out", dest)
    assert rerun.returncode == 1  # refused on its merits, and the killed run's staging is gone
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))
