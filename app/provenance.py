"""What made an artifact: the command, the config, the recipe, the versions and the git commit.

A run folder's `provenance.json` is written before its first epoch; `export` and `bench`
read it instead of guessing how a model was made.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tensorflow", "keras", "keras-tuner", "tensorflow-datasets", "numpy", "ai-edge-litert")


def versions() -> dict:
    """Python's version and those of the packages that shape a model."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's commit, with `+dirty` when tracked files differ from it; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def record(command: str, config: dict, recipe: dict, origin: dict | None = None) -> dict:
    """The provenance of a run about to start.

    Args:
        command: the command line that started it.
        config: the model config, as `ModelConfig.to_dict()`.
        recipe: the training recipe, as `Recipe.to_dict()`.
        origin: where the config came from, e.g. the search command, folder and trial of a
            tuned model; None for a config given directly.
    """
    return {
        "command": command,
        "config": config,
        "recipe": recipe,
        "origin": origin or {"kind": "train"},
        "versions": versions(),
        "git_commit": git_commit(),
    }
