"""Quick-mode training writes a complete run folder; an interrupted run resumes."""

import csv
import json
import signal
import subprocess
import sys
import time

import keras
import pytest

from app.config import ModelConfig, Recipe
from app.errors import UsageError
from app.train import train

from conftest import ROOT, Interrupt, epochs_seen, stop_at_epoch

RUN_FILES = {"model.keras", "history.csv", "metrics.json", "summary.txt", "provenance.json",
             "accuracy.png", "loss.png", "parameters.png", "tensorboard", ".lock"}


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    metrics = train(ModelConfig(), Recipe(epochs=3, seed=0), out=out, quick=True, verbose=0)
    return out, metrics


def test_quick_run_writes_every_file(quick_run):
    out, _ = quick_run
    assert {p.name for p in out.iterdir()} == RUN_FILES  # backup/ is gone once finished
    for png in ("accuracy.png", "loss.png", "parameters.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Total params: 7,862" in (out / "summary.txt").read_text()


def test_quick_run_lowers_the_loss_and_records_metrics(quick_run):
    out, metrics = quick_run
    history = rows(out / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1, 2]
    losses = [float(r["loss"]) for r in history]
    assert losses[-1] < losses[0] * 0.8
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["parameters"] == {"total": 7862, "trainable": 7682, "non_trainable": 180}
    assert on_disk["epochs"] == 3 and on_disk["seed"] == 0 and on_disk["batch_size"] == 256
    assert on_disk["train_images"] == 2048
    assert on_disk["test_accuracy_per_epoch"] == [float(r["test_accuracy"]) for r in history]
    assert on_disk["final_test_accuracy"] == on_disk["test_accuracy_per_epoch"][-1]
    assert on_disk["wall_seconds"] > 0 and on_disk["train_images_per_second"] > 0
    assert {"python", "tensorflow", "keras", "keras-tuner"} <= set(on_disk["versions"])


def test_tensorboard_logs_every_epoch_the_graph_and_the_settings(quick_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    out, metrics = quick_run
    train_log = EventAccumulator(str(out / "tensorboard" / "train"), size_guidance={"tensors": 0})
    train_log.Reload()
    test_accuracy = [float(make_ndarray(e.tensor_proto)) for e in train_log.Tensors("epoch_test_accuracy")]
    assert test_accuracy == pytest.approx(metrics["test_accuracy_per_epoch"], abs=1e-6)  # one per epoch
    assert "keras" in train_log.Tags()["tensors"]  # the model's graph (TensorBoard's conceptual view)
    settings = EventAccumulator(str(out / "tensorboard" / "hparams"))
    settings.Reload()
    assert "_hparams_/session_start_info" in settings.PluginTagToContent("hparams")


def test_saved_model_reloads_with_identical_predictions(quick_run):
    import numpy as np

    out, _ = quick_run
    model = keras.models.load_model(out / "model.keras")
    x = np.random.default_rng(1).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
    again = keras.models.load_model(out / "model.keras")
    np.testing.assert_array_equal(model.predict_on_batch(x), again.predict_on_batch(x))
    assert model.count_params() == 7862


def test_finished_run_folder_is_not_overwritten(quick_run):
    out, _ = quick_run
    with pytest.raises(UsageError, match=f"{out} already holds a finished run; choose another --out"):
        train(out=out, quick=True, recipe=Recipe(epochs=1), verbose=0)


def test_run_stopped_after_epoch_1_continues_at_epoch_2(tmp_path):
    recipe = Recipe(epochs=3, seed=0)
    with pytest.raises(Interrupt):
        train(recipe=recipe, out=tmp_path, quick=True, verbose=0, callbacks=[stop_at_epoch(1)])
    first = rows(tmp_path / "history.csv")
    assert len(first) == 1 and (tmp_path / "backup").is_dir()

    seen = epochs_seen()
    metrics = train(recipe=recipe, out=tmp_path, quick=True, verbose=0, callbacks=[seen])
    assert seen.seen == [1, 2]  # 0-based: epochs 2 and 3 of 3 ran, epoch 1 was not repeated
    history = rows(tmp_path / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1, 2]
    assert history[0] == first[0]
    assert metrics["epochs"] == 3 and not (tmp_path / "backup").exists()


def test_killed_cli_run_resumes_without_losing_finished_epochs(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "app", "train", "--quick", "--epochs", "6", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # kill as soon as the first epoch is backed up
            if (out / "backup" / "training_metadata.json").exists():
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = json.loads((out / "backup" / "training_metadata.json").read_text())["epoch"]
    assert 1 <= finished < 6

    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Epoch {finished + 1}/6" in resumed.stdout
    assert "Epoch 1/6" not in resumed.stdout
    assert [int(r["epoch"]) for r in rows(out / "history.csv")] == [0, 1, 2, 3, 4, 5]


def test_results_table_comes_from_metrics(quick_run, capsys):
    from app.cli import main

    out, metrics = quick_run
    assert main(["results", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    accuracy = f"{100 * metrics['final_test_accuracy']:.2f}%"
    # A quick run (2,048 images, 3 epochs) never reaches 99.40%.
    assert lines[2] == (f"| 0 | 7,862 | 3 | {accuracy} | never | {metrics['train_seconds']:.0f} s | "
                        f"{metrics['wall_seconds']:.0f} s |")
    assert lines[4] == f"| **mean** | | | {accuracy} | | {metrics['train_seconds']:.0f} s | |"
    mean = f"{100 * metrics['final_test_accuracy']:.3f}%"
    assert lines[-1] == f"0 of 1 seeds at or above 99.40% final test accuracy; mean {mean}."
    assert main(["results", str(out / "nothing")]) == 3


def test_results_keeps_finished_seeds_and_writes_the_table_and_histories(quick_run, tmp_path, capsys):
    import shutil

    from app.cli import main

    out, metrics = quick_run
    root, report = tmp_path / "runs", tmp_path / "results" / "seeds.md"
    for seed in (0, 1):
        shutil.copytree(out, root / f"seed{seed}", ignore=shutil.ignore_patterns("tensorboard", "*.keras"))
    assert main(["results", "--root", str(root), "--seeds", "2", "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert f"{root / 'seed0'}: finished, kept" in printed and f"{root / 'seed1'}: finished, kept" in printed
    text = report.read_text()
    assert text.startswith(f"`python -m app results --root {root} --seeds 2 --out {report}`")
    assert f"    python -m app train --seed 0 --out {out}" in text
    assert "0 of 2 seeds at or above 99.40% final test accuracy" in text
    assert (report.with_suffix("") / "seed1" / "history.csv").read_bytes() == (out / "history.csv").read_bytes()
    from app.provenance import describe, machine

    assert f"Trained on: {describe(machine())}.\n" in text  # the quick run trained on this machine

    # The fast table's time as a share of the default's: here the same runs, so exactly 1.00.
    fast = tmp_path / "results" / "seeds-fast.md"
    assert main(["results", "--root", str(root), "--seeds", "2", "--out", str(fast), "--against", str(root)]) == 0
    seconds = metrics["train_seconds"]
    assert (f"Mean training time {seconds:.0f} s, **1.00** of the {seconds:.0f} s of {root} on the same CPU."
            in fast.read_text())
    assert main(["results", "--root", str(root), "--seeds", "3", "--out", str(fast), "--against", str(root)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --against {root}: no finished run in {root / 'seed2'}")


def test_the_machine_record_names_the_cpu_and_its_instruction_sets(tmp_path):
    from app.provenance import describe, machine

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                    "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC\n")
    record = machine(info)
    assert (record["cpu"], record["instruction_sets"]) == ("AMD EPYC (family 25, model 17)", ["avx2", "fma", "avx512f"])
    assert describe({**record, "cores": 2}) == "AMD EPYC (family 25, model 17), 2 cores, avx2 fma avx512f"
    assert describe({"cpu": "x", "cores": 1, "instruction_sets": []}) == "x, 1 core, no AVX2"


def test_first_epoch_at_the_bar_counts_from_one():
    from app.results import first_epoch_at

    assert first_epoch_at([0.99, 0.9940000176, 0.995]) == "2"
    assert first_epoch_at([0.9939, 0.9938]) == "never"


def test_deterministic_runs_of_one_seed_are_bit_identical(tmp_path):
    import numpy as np

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = [sys.executable, "-m", "app", "train", "--quick", "--epochs", "2", "--deterministic", "--out", str(out)]
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(out)
    weights = [keras.models.load_model(out / "model.keras").get_weights() for out in runs]
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    history = [[{k: v for k, v in r.items() if "seconds" not in k and k != "images_per_second"}
                for r in rows(out / "history.csv")] for out in runs]
    assert history[0] == history[1]


def test_ctrl_c_during_fit_stops_at_the_next_batch_and_restores_the_handler():
    from app.train import StopAtCtrlC

    before = signal.getsignal(signal.SIGINT)
    stop = StopAtCtrlC()
    stop.on_train_begin()
    assert signal.getsignal(signal.SIGINT) == stop._press
    stop.on_train_batch_end(0)  # nothing pressed: training goes on
    signal.raise_signal(signal.SIGINT)  # noted by the handler, not raised where it lands
    assert stop.pressed and signal.getsignal(signal.SIGINT) == before  # a second press interrupts at once
    with pytest.raises(KeyboardInterrupt):
        stop.on_train_batch_end(1)
    stop.restore()
    assert signal.getsignal(signal.SIGINT) == before
