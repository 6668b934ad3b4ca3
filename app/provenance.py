"""What made an artifact: the command, the config, the recipe, the versions and the git commit.

A run folder's `provenance.json` is written before its first epoch; `export` and `bench`
read it instead of guessing how a model was made.
"""

from __future__ import annotations

import importlib.metadata
import os
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


# The instruction sets that set a CPU's training speed here (about 4x between AVX2 and AVX-512).
INSTRUCTION_SETS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def machine(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The CPU a run trained on: its model name, family and model, instruction sets and cores.

    Seconds are only comparable on one CPU, so every run records it and every table of
    seconds names it. Without `/proc/cpuinfo` (not Linux) the model is `platform.processor()`.
    """
    fields = {}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    flags = set(fields.get("flags", "").split())
    return {"cpu": name, "instruction_sets": [f for f in INSTRUCTION_SETS if f in flags],
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def describe(machine: dict) -> str:
    """One line naming a `machine()` record, e.g. `AMD EPYC (family 25, model 17), 2 cores, avx2 fma`."""
    sets = " ".join(machine.get("instruction_sets") or []) or "no AVX2"
    cores = machine["cores"]
    return f"{machine['cpu']}, {cores} core{'' if cores == 1 else 's'}, {sets}"


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
        "machine": machine(),
    }
