"""Shared test setup: offline MNIST from ../shared when present, quiet TensorFlow."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TFDS = ROOT.parent / "shared" / "data" / "tensorflow_datasets"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "TFDS_DATA_DIR" not in os.environ and (SHARED_TFDS / "mnist").exists():
    os.environ["TFDS_DATA_DIR"] = str(SHARED_TFDS)
sys.path.insert(0, str(ROOT))


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
