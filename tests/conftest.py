"""Shared test setup: offline MNIST from ../shared when present, quiet TensorFlow, Ctrl-C on."""

import fcntl
import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TFDS = ROOT.parent / "shared" / "data" / "tensorflow_datasets"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "TFDS_DATA_DIR" not in os.environ and (SHARED_TFDS / "mnist").exists():
    os.environ["TFDS_DATA_DIR"] = str(SHARED_TFDS)
sys.path.insert(0, str(ROOT))
# The Ctrl-C tests press it in the commands they start, which must take it as from a terminal.
# A test run started as a script's background job has SIGINT ignored, and every process it
# started would inherit that (the commands keep an ignored SIGINT ignored); a handler here is
# reset to the default in each command instead.
from app.errors import sigint_ignored  # noqa: E402 (importable once the repo root is on the path)

if sigint_ignored():
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def cli(tmp_path):
    """Runs `python -m <module> ARGS...` from the repo root; returns the CompletedProcess."""
    import subprocess

    def run(*args, module="app", env=None, timeout=600):
        return subprocess.run(
            [sys.executable, "-m", module, *map(str, args)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    return run


def last_line(text: str) -> str:
    """The last non-empty line (TensorFlow may print start-up lines before our message)."""
    return [line for line in text.splitlines() if line.strip()][-1]


@contextmanager
def built_once(tmp_path_factory, name: str):
    """A folder that the first pytest-xdist worker to ask for builds and the others reuse.

    Session fixtures run once per worker; this is pytest-xdist's documented way to run an
    expensive one once per test run: a lock in the run's temporary folder, which every
    worker shares. Without xdist the folder is the session's own.

    Yields:
        (folder, built): fill `folder` when `built` is False. A build that raises leaves no
        mark, so the next worker builds again (and fails the same way).
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield tmp_path_factory.mktemp(name), False
        return
    root = tmp_path_factory.getbasetemp().parent  # pytest-N/, shared by popen-gw0, popen-gw1, ...
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the kernel releases it if the builder dies
        built = done.exists()
        if not built:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        yield folder, built
        done.touch()


@pytest.fixture(scope="session")
def formats(tmp_path_factory):
    """The default model after 2 epochs on 20,000 train images (~98%), in every export format.

    Built once per test run (`built_once`); the other workers load the saved Keras model.

    Returns:
        (keras model, folder with saved_model/, model_float32.tflite, model_int8.tflite,
        digit_classifier.tflite and labels.txt, as `make export` writes them).
    """
    import keras

    with built_once(tmp_path_factory, "formats") as (root, built):
        folder = root / "exported"
        if built:
            return keras.models.load_model(root / "model.keras"), folder

        from app import data
        from app.config import ModelConfig, Recipe
        from app.export import representative_images, write_files
        from app.model import build_model
        from app.train import compile_model, one_hot

        keras.utils.set_random_seed(0)
        recipe = Recipe(epochs=2, batch_size=128)
        train = data.train_pipeline(data.load_split("train[:20000]"), recipe.batch_size, seed=0).map(one_hot)
        model = compile_model(build_model(), recipe, steps_per_epoch=-(-20_000 // recipe.batch_size))
        model.fit(train, epochs=recipe.epochs, verbose=0)
        folder.mkdir()
        write_files(model, folder, ModelConfig().to_dict(), calibration=representative_images(200))
        model.save(root / "model.keras")
        return model, folder


class Interrupt(Exception):
    """Raised by `StopAtEpoch`, as a kill at that moment would stop a run."""


def stop_at_epoch(epoch: int):
    """A Keras callback that raises `Interrupt` when `epoch` (0-based) begins."""
    import keras

    def begin(begun, logs=None):
        if begun == epoch:
            raise Interrupt

    return keras.callbacks.LambdaCallback(on_epoch_begin=begin)


def epochs_seen():
    """A Keras callback whose `seen` lists the epochs (0-based) that began."""
    import keras

    callback = keras.callbacks.LambdaCallback()
    callback.seen = []
    callback.on_epoch_begin = lambda epoch, logs=None: callback.seen.append(epoch)
    return callback

