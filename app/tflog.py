"""Keeps TensorFlow's and LiteRT's C++ start-up log off the terminal unless the user asks.

TF 2.21 logs through absl before it reads `TF_CPP_MIN_LOG_LEVEL` (oneDNN and CUDA notices,
a failed `cuInit` on a machine without a GPU), and LiteRT announces its XNNPACK delegate:
that variable alone leaves several lines before every message of ours. Loading them with
file descriptor 2 silenced keeps errors one line; `--verbose` (or `TINYMNIST_VERBOSE=1`)
shows everything.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from app.errors import interrupt_exits


def verbose() -> bool:
    """Whether the user asked for the runtimes' own log (TINYMNIST_VERBOSE=1)."""
    return os.environ.get("TINYMNIST_VERBOSE", "") not in ("", "0")


@contextmanager
def quiet_native_stderr():
    """Silences what C++ code writes to file descriptor 2 (Python's own errors still show)."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> None:
    """Imports TensorFlow and probes its devices quietly (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose() else "3")
    with interrupt_exits(), quiet_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # probes CUDA now, while it cannot print
