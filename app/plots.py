"""Pictures of a run: accuracy and loss curves, and the parameters of each layer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on training machines
import matplotlib.pyplot as plt  # noqa: E402

from app.files import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def curves(history: list[dict], out: Path, prefix: str = "test") -> None:
    """Draws `accuracy.png` and `loss.png`: train vs held-out images per epoch.

    Args:
        history: one dict per epoch with `epoch`, `accuracy`, `loss`, `test_accuracy` and
            `test_loss` (or `val_*`), as `files.read_history` returns them.
        out: the folder to write into.
        prefix: "test", or "val" for a validation run.
    """
    label = {"test": "test", "val": "validation"}[prefix]
    epochs = [row["epoch"] for row in history]
    for metric, ylabel in (("accuracy", "accuracy (%)"), ("loss", "cross-entropy loss")):
        scale = 100.0 if metric == "accuracy" else 1.0
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [scale * r[metric] for r in history], "o-", label="train (augmented)")
        ax.plot(epochs, [scale * r[f"{prefix}_{metric}"] for r in history], "s-", label=label)
        if metric == "accuracy":
            ax.axhline(99.4, color="gray", linestyle="--", linewidth=1, label="99.40% target")
            # Zoom on the interesting top end unless the curves start far below it.
            lowest = min(min(r["accuracy"], r[f"{prefix}_accuracy"]) for r in history) * 100
            ax.set_ylim(95.0 if lowest > 95.0 else max(0.0, lowest - 1.0), 100.0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"tinymnist {metric}: final {label} {scale * history[-1][f'{prefix}_{metric}']:.2f}"
                     + ("%" if metric == "accuracy" else ""))
        ax.grid(alpha=0.3)
        ax.legend()
        _save(fig, out / f"{metric}.png")


def parameters(model, path: Path) -> None:
    """Draws a horizontal bar chart of the parameters of every layer that has any.

    Args:
        model: a built Keras model.
        path: the PNG to write.
    """
    names, counts = zip(*[(l.name, l.count_params()) for l in model.layers if l.count_params()])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    bars = ax.barh(names[::-1], counts[::-1], color="tab:blue")
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel("parameters")
    ax.set_title(f"{model.name}: {model.count_params():,} parameters in total")
    ax.set_xlim(0, max(counts) * 1.15)
    _save(fig, path)
