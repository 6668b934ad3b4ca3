"""Classifies image files with the exported int8 model through LiteRT, without TensorFlow.

Each file goes through the preprocessing contract (`app.preprocess`) and then the model;
results come one file at a time, in the files' order, so a bad file later in a folder cannot
lose the good ones. The contract is most of the work, so for many files it runs in one
worker process per CPU core while the model classifies in this one.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from app.litert import TFLiteClassifier
from app.preprocess import ImageFileError, NoDigitError, preprocess_file

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "exported" / "model_int8.tflite"
# Below this top probability an answer is marked "unsure" (the README reports how often such
# answers are right on the development set).
UNSURE_BELOW = 0.6
# Fewer files than this are preprocessed here: starting workers costs more than it saves.
PARALLEL_FROM = 64
# Files handed to a worker at a time: large enough to amortise the hand-over, small enough
# that results keep streaming.
CHUNK = 8


def default_jobs() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_method() -> str:
    """How worker processes start: "fork" on Linux, unless TensorFlow is loaded here.

    A forked worker starts at once with this process's imports (numpy, Pillow, the contract),
    where a spawned one spends most of a second importing them again: about a fifth of
    `predict`'s time on 1,000 photos. TensorFlow's thread pools must not be forked, and
    macOS's system libraries refuse it, so those start clean ("spawn").
    """
    return "fork" if sys.platform == "linux" and "tensorflow" not in sys.modules else "spawn"


def prepare(job: tuple[str, str]) -> tuple[np.ndarray | None, str | None]:
    """One file through the contract: `(pixels, None)`, or `(None, reason)` for a bad file."""
    path, polarity = job
    try:
        return preprocess_file(path, polarity), None
    except (ImageFileError, NoDigitError) as error:
        return None, str(error)


def ignore_interrupt() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (one message, no tracebacks)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def prepared(paths: list, polarity: str, jobs: int) -> Iterator[Iterable[tuple[np.ndarray | None, str | None]]]:
    """`prepare` over `paths` in order, in `jobs` worker processes when there are enough files."""
    work = [(str(path), polarity) for path in paths]
    if jobs <= 1 or len(work) < PARALLEL_FROM:
        yield map(prepare, work)
        return
    import multiprocessing

    method = start_method()
    if method == "fork":
        import scipy.ndimage  # noqa: F401  (the contract's filters: forked workers inherit them)
    # A Ctrl-C that lands while a worker forks is raised inside Python's after-fork hooks,
    # which report it and carry on: hold it until every worker has started (they inherit the
    # held signal and ignore it), then take it here, where it stops the pool.
    hold = hasattr(signal, "pthread_sigmask")
    if hold:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with multiprocessing.get_context(method).Pool(jobs, initializer=ignore_interrupt) as pool:
            if hold:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            yield pool.imap(prepare, work, chunksize=CHUNK)
    finally:
        if hold:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def predict_files(paths, model: str | os.PathLike = DEFAULT_MODEL, polarity: str = "auto", top: int = 1,
                  save: Path | None = None, jobs: int = 1) -> Iterator[dict]:
    """Classifies each file, yielding its result as soon as it is known, in the files' order.

    Args:
        paths: image file paths.
        model: the `.tflite` model.
        polarity: "auto" (detected per image), "light-on-dark" or "dark-on-light".
        top: how many of the likeliest digits to list.
        save: a folder to write each 28x28 input into (`<file name>.png`), or None.
        jobs: processes that run the contract; 1 runs it in this process. More start workers
            (`start_method`); where they are spawned they re-import the calling script, so
            guard its top level with `if __name__ == "__main__":` (`python -m app predict`
            uses one per CPU core).

    Yields:
        One dict per file: `file`, and `digit`, `probability`, `unsure` and `top` (the `top`
        likeliest `{digit, probability}`), or `error`.

    Raises:
        InputFileError: when the model file is missing or not a TFLite model.
    """
    paths = list(paths)
    classify = TFLiteClassifier(model)
    with prepared(paths, polarity, jobs) as inputs:
        for path, (pixels, error) in zip(paths, inputs):
            if error is not None:
                yield {"file": str(path), "error": error}
                continue
            if save is not None:
                Image.fromarray(pixels).save(Path(save) / f"{Path(path).name}.png")
            probabilities = classify(pixels[None, :, :, None].astype(np.float32))[0]
            order = np.argsort(-probabilities, kind="stable")[:top]
            digit = int(order[0])
            yield {
                "file": str(path),
                "digit": digit,
                "probability": round(float(probabilities[digit]), 4),
                "unsure": bool(probabilities[digit] < UNSURE_BELOW),
                "top": [{"digit": int(d), "probability": round(float(probabilities[d]), 4)} for d in order],
            }
