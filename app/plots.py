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


def test_curve(per_epoch: list[float], path: Path, title: str) -> None:
    """Draws the test accuracy after each epoch of one run, with the 99.40% target.

    Args:
        per_epoch: test accuracy (fraction) after epochs 1, 2, ...
        path: the PNG to write.
        title: the chart's title.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(per_epoch) + 1)
    ax.plot(epochs, [100 * a for a in per_epoch], "s-", label="test (final epoch reported)")
    ax.axhline(99.4, color="gray", linestyle="--", linewidth=1, label="99.40% target")
    ax.set_ylim(max(0.0, min(95.0, 100 * min(per_epoch) - 1.0)), 100.0)
    ax.set_xticks(list(epochs))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save(fig, path)


def shipped(exported: Path, out: Path) -> list[Path]:
    """The shipped model's parameter chart and accuracy curve, from `exported/metadata.json`.

    The chart is drawn from the model its configuration builds (the same parameters, layer by
    layer); the curve from the test accuracy its training run recorded after each epoch.

    Returns:
        The two PNG files written (`out/parameters.png`, `out/accuracy.png`).
    """
    import json

    from app.config import ModelConfig
    from app.model import build_model

    metadata = json.loads((Path(exported) / "metadata.json").read_text())
    run = metadata["run_metrics"]
    model = build_model(ModelConfig.from_dict(run["config"]))
    parameters(model, Path(out) / "parameters.png")
    per_epoch = run["test_accuracy_per_epoch"]
    test_curve(per_epoch, Path(out) / "accuracy.png",
               f"{metadata['source_run']} (seed {run['seed']}): final test {100 * per_epoch[-1]:.2f}%")
    return [Path(out) / "parameters.png", Path(out) / "accuracy.png"]
