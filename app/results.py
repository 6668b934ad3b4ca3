"""`make results`: a recipe on ten seeds, resumable, and the table of what it reached."""

from __future__ import annotations

import dataclasses
import shutil
import statistics
from pathlib import Path

from app.files import atomic_path, make_folder, read_json, write_text

BAR = 0.994  # the product's claim: 99.40% final test accuracy within 20 epochs
SEEDS = range(10)


def seed_runs(root: str | Path, seeds=SEEDS) -> list[Path]:
    """The run folders of the table: `root/seedN`."""
    return [Path(root) / f"seed{seed}" for seed in seeds]


def train_missing(runs: list[Path], preset: str | None = None) -> None:
    """Trains every seed run (`seed_runs`) that has no `metrics.json`, one after the other.

    A finished seed is skipped and an unfinished one resumes from its last finished epoch
    (`train`'s own resume), so `make results` can be killed and rerun at any moment.

    Args:
        runs: the seed runs, `root/seedN`.
        preset: a name of `config.PRESETS` (its model and recipe), or None for the defaults.
    """
    from app.config import PRESETS, ModelConfig, Recipe
    from app.train import train

    config, recipe = PRESETS[preset] if preset else (ModelConfig(), Recipe())
    option = f" --recipe {preset}" if preset else ""
    for run in runs:
        if (run / "metrics.json").exists():
            print(f"{run}: finished, kept", flush=True)
            continue
        seed = int(run.name.removeprefix("seed"))
        command = f"python -m app train{option} --seed {seed} --out {run}"
        metrics = train(config, dataclasses.replace(recipe, seed=seed), out=run, command=command)
        print(f"{run}: final test accuracy {100 * metrics['final_test_accuracy']:.2f}% "
              f"({metrics['train_seconds']:.0f} s of training)", flush=True)


def seeds_held(finals: list[float], bar: float = BAR) -> int:
    """How many final accuracies (in %) reach `bar` at the two decimals they are reported with."""
    return sum(round(value, 2) >= 100 * bar for value in finals)


def first_epoch_at(accuracies: list[float], bar: float = BAR) -> str:
    """The first epoch (counted from 1) whose test accuracy reached `bar`, for information."""
    return next((str(i + 1) for i, value in enumerate(accuracies) if round(value, 4) >= bar), "never")


def table(runs: list[Path]) -> str:
    """A Markdown table of finished test runs: one row per seed, then min / mean / max.

    Raises:
        InputFileError: a run without a readable `metrics.json`.
        UsageError: a validation run.
    """
    from app.errors import UsageError

    rows, finals, trains = [], [], []
    for run in runs:
        m = read_json(str(run / "metrics.json"), "metrics")
        if "final_test_accuracy" not in m:
            raise UsageError(f"{run} is a validation run, it has no test accuracy; give test runs only")
        final = m["final_test_accuracy"]
        finals.append(100 * final)
        trains.append(m["train_seconds"])
        rows.append(f"| {m['seed']} | {m['parameters']['total']:,} | {m['epochs']} | {100 * final:.2f}% | "
                    f"{first_epoch_at(m['test_accuracy_per_epoch'])} | {m['train_seconds']:.0f} s | "
                    f"{m['wall_seconds']:.0f} s |")
    held = seeds_held(finals)
    lines = [
        "| seed | parameters | epochs | final test accuracy | first epoch ≥ 99.40% (info only) "
        "| training | training + evaluation |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    for name, pick in (("min", min), ("mean", statistics.fmean), ("max", max)):
        lines.append(f"| **{name}** | | | {pick(finals):.2f}% | | {pick(trains):.0f} s | |")
    lines.append("")
    lines.append(f"{held} of {len(finals)} seeds at or above 99.40% final test accuracy; "
                 f"mean {statistics.fmean(finals):.3f}%.")
    return "\n".join(lines) + "\n"


def machines(runs: list[Path]) -> list[str]:
    """The CPUs the runs trained on, one line each (`provenance.describe`), in order of first use."""
    from app.provenance import describe

    named = []
    for run in runs:
        record = read_json(str(run / "provenance.json"), "provenance").get("machine")
        line = describe(record) if record else "not recorded"
        if line not in named:
            named.append(line)
    return named


def time_ratio(runs: list[Path], against: list[Path]) -> str:
    """The runs' mean training time as a share of the `against` runs', when both trained on one CPU."""
    mean = lambda rs: statistics.fmean(read_json(str(r / "metrics.json"), "metrics")["train_seconds"] for r in rs)  # noqa: E731
    ours, theirs = mean(runs), mean(against)
    cpus = machines(runs + against)
    if len(cpus) != 1 or cpus == ["not recorded"]:
        return (f"Mean training time {ours:.0f} s against {theirs:.0f} s for {against[0].parent}, "
                f"not on one recorded CPU ({'; '.join(cpus)}): no ratio.")
    return (f"Mean training time {ours:.0f} s, **{ours / theirs:.2f}** of the {theirs:.0f} s of "
            f"{against[0].parent} on the same CPU.")


def write(runs: list[Path], out: str | Path, command: str, against: list[Path] | None = None) -> str:
    """Writes the table to `out` (Markdown) and each run's `history.csv` beside it.

    Args:
        runs: the seed runs of the table.
        out: the Markdown file.
        command: the command that wrote it.
        against: other finished seed runs (the default recipe's) whose mean training time
            the table's is given as a share of; None for no ratio.

    Returns:
        The table.
    """
    out = Path(out)
    report = table(runs)
    if against:
        report += "\n" + time_ratio(runs, against) + "\n"
    histories = out.with_suffix("")
    make_folder(histories)
    for run in runs:
        target = histories / run.name / "history.csv"
        make_folder(target.parent)
        with atomic_path(target) as tmp:
            shutil.copyfile(run / "history.csv", tmp)
    commands = "\n".join(
        f"    {read_json(str(run / 'provenance.json'), 'provenance')['command']}" for run in runs)
    cpus = "; ".join(machines(runs))
    write_text(out, f"`{command}`\n\nTrained on: {cpus}.\n\n"
                    f"Each seed's run, one after the other on this machine:\n\n{commands}\n\n"
                    f"{report}\nPer-epoch figures: `{histories}/seedN/history.csv`.\n")
    return report
