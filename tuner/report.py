"""The search's report: trials table (CSV and Markdown) and val accuracy against parameters."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from app.files import atomic_path, write_text


def write_tables(rows: list[dict], out: Path) -> None:
    """Writes `trials.csv` and `trials.md`, best validation accuracy first.

    Args:
        rows: one dict per trial, as `tuner.search.trial_row` returns them.
        out: the folder to write into.
    """
    # Ties in the order `tuner.cli.best_row` breaks them: the smaller model, then the earlier trial.
    rows = sorted(rows, key=lambda r: (-(r["val_accuracy"] or 0.0), r["parameters"] or 0, r["trial"]))
    # Promoted Hyperband trials have one more column than the others: take them all, in order.
    columns = list(dict.fromkeys(c for r in rows for c in r)) or ["trial"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "trials.csv", text.getvalue())

    def cell(column, value):
        if value is None:
            return ""
        if column == "val_accuracy":
            return f"{100 * value:.2f}%"
        if column == "seconds":
            return f"{value:.0f}"
        return f"{value:,}" if column == "parameters" else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    write_text(out / "trials.md", "\n".join(lines) + "\n")


def plot_trials(rows: list[dict], budget: int, path: Path, best: dict | None = None) -> None:
    """Draws validation accuracy against total parameters, with the budget marked.

    The same trials give the same picture whatever their order (a reloaded search returns
    them in another), so rerunning a finished search leaves the file as it was.

    Args:
        rows: the trials, as for `write_tables`.
        budget: the parameter budget (a vertical line).
        path: the PNG to write.
        best: the trial to mark as the best (`tuner.cli.best_row`), or None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = sorted((r for r in rows if r["val_accuracy"] is not None), key=lambda r: r["trial"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.scatter([r["parameters"] for r in done], [100 * r["val_accuracy"] for r in done], label="trial")
    if best is not None:
        ax.scatter([best["parameters"]], [100 * best["val_accuracy"]], color="tab:red", s=80, label="best")
    ax.axvline(budget, color="gray", linestyle="--", label=f"budget {budget:,}")
    ax.set_xlabel("total parameters (model.count_params())")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{len(done)} trials under a {budget:,}-parameter budget")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
