"""Trains the tinymnist CNN and writes a run folder.

The run folder holds `model.keras`, `history.csv`, `metrics.json`, `summary.txt`,
`accuracy.png`, `loss.png` and `parameters.png`. While training runs it also holds
`backup/` (Keras `BackupAndRestore`), so a killed run resumes from its last finished epoch.
"""

from __future__ import annotations

import csv
import json
import importlib.metadata
import platform
import time
from pathlib import Path

import keras
import tensorflow as tf

from app import data, plots
from app.config import ModelConfig, Recipe
from app.files import atomic_path, write_json, write_text
from app.model import build_model, parameter_counts

PACKAGES = ("tensorflow", "keras", "tensorflow-datasets", "numpy")


class RunFolderError(ValueError):
    """The output folder cannot take this run."""


class HeldOutCurve(keras.callbacks.Callback):
    """Evaluates held-out images after each epoch, only to draw the curve.

    Nothing reads these numbers during training (no early stopping, no checkpoint choice),
    so the held-out split never influences the model. Also logs each epoch's timings.

    Args:
        held_out: the batched test (or validation) pipeline.
        train_images: images seen per epoch, for the throughput column.
        prefix: the log name prefix, "test" or "val".
    """

    def __init__(self, held_out: tf.data.Dataset, train_images: int, prefix: str = "test"):
        super().__init__()
        self.held_out = held_out
        self.train_images = train_images
        self.prefix = prefix

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        loss, accuracy = self.model.evaluate(self.held_out, verbose=0)
        logs.update(
            {f"{self.prefix}_loss": loss, f"{self.prefix}_accuracy": accuracy},
            train_seconds=seconds,
            wall_seconds=time.perf_counter() - self.start,
            images_per_second=self.train_images / seconds,
        )


def compile_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> keras.Model:
    """Compiles `model` on a warm-up + cosine (one-cycle style) learning-rate schedule.

    Args:
        model: the model from `build_model`.
        recipe: the training recipe.
        steps_per_epoch: optimizer steps in one epoch.
    """
    total = recipe.epochs * steps_per_epoch
    warmup = max(1, int(0.2 * total))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.max_lr / 10,
        warmup_target=recipe.max_lr,
        warmup_steps=warmup,
        decay_steps=max(1, total - warmup),
        alpha=1e-3,
    )
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=recipe.steps_per_execution,
    )
    return model


def one_hot(images, labels):
    """Maps `(images, digit labels)` to `(images, one-hot labels)` for the categorical loss."""
    return images, tf.one_hot(labels, 10)


def read_history(path: Path) -> list[dict]:
    """Reads `history.csv` into one dict of floats per epoch (epochs counted from 1)."""
    with open(path, newline="") as f:
        # CSVLogger adds empty (NA) val_* columns when there is no validation data.
        rows = [{k: float(v) for k, v in row.items() if v != "NA"} for row in csv.DictReader(f)]
    for row in rows:
        row["epoch"] = int(row["epoch"]) + 1
    return rows


def finished_epochs(backup: Path) -> int:
    """Returns how many epochs the `BackupAndRestore` folder holds (0 when there is none)."""
    try:
        return int(json.loads((backup / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def trim_history(history_csv: Path, epochs: int) -> None:
    """Keeps the first `epochs` rows of `history.csv`, so a resumed run logs each epoch once.

    CSVLogger writes an epoch's row just before BackupAndRestore saves it; a kill between
    the two leaves one row more than the backup has, and that epoch is trained again.

    Args:
        history_csv: the CSVLogger file.
        epochs: the finished epochs to keep.
    """
    if not history_csv.exists():
        return
    lines = history_csv.read_text().splitlines(keepends=True)
    keep = lines[: epochs + 1] if epochs else []
    with atomic_path(history_csv) as tmp:
        tmp.write_text("".join(keep))


def train(
    config: ModelConfig = ModelConfig(),
    recipe: Recipe = Recipe(),
    out: str | Path = "runs/train",
    quick: bool = False,
    validation: bool = False,
    verbose: int | str = "auto",
    callbacks: list | None = None,
) -> dict:
    """Trains one model and writes the run folder; resumes when `out/backup/` exists.

    Args:
        config: the model configuration.
        recipe: the training recipe (epochs, batch size, schedule, seed).
        out: the run folder.
        quick: train and evaluate on small slices of the splits (a smoke test, not a result).
        validation: fit on the train split less its last 10,000 images and evaluate on those
            (`val_*` metrics) instead of on the test split; for recipe decisions.
        verbose: Keras `fit` verbosity (progress bars by default).
        callbacks: extra Keras callbacks, run after the run folder's own.

    Returns:
        The metrics written to `out/metrics.json`.

    Raises:
        RunFolderError: when `out` already holds a finished run.
        ValueError: when the config is over its budget.
        data.DataUnavailableError: when MNIST cannot be loaded.
    """
    out = Path(out)
    backup = out / "backup"
    if (out / "metrics.json").exists() and not backup.exists():
        raise RunFolderError(f"{out} already holds a finished run; choose another --out")
    keras.utils.set_random_seed(recipe.seed)
    model = build_model(config)  # raises on an over-budget config before any data is read
    # Summarise before compiling: afterwards Keras adds the optimizer's slots to the total.
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    summary = "\n".join(lines) + "\n"

    prefix = "val" if validation else "test"
    fit_split, held_out_split = data.split_names(quick=quick, validation=validation)
    train_raw, held_out_raw = data.load_split(fit_split), data.load_split(held_out_split)
    train_images = int(train_raw.cardinality())
    train_ds = data.train_pipeline(
        train_raw, recipe.batch_size, recipe.seed, shift=recipe.shift, rotation=recipe.rotation
    ).map(one_hot)
    held_out_ds = data.eval_pipeline(held_out_raw).map(one_hot)
    steps = -(-train_images // recipe.batch_size)
    compile_model(model, recipe, steps)

    out.mkdir(parents=True, exist_ok=True)
    history_csv = out / "history.csv"
    trim_history(history_csv, finished_epochs(backup))
    callbacks = [
        HeldOutCurve(held_out_ds, train_images, prefix),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.BackupAndRestore(str(backup)),
        *(callbacks or []),
    ]
    model.fit(train_ds, epochs=recipe.epochs, callbacks=callbacks, verbose=verbose)

    history = read_history(history_csv)
    params = parameter_counts(model)
    with atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    write_text(out / "summary.txt", summary)
    plots.curves(history, out, prefix)
    plots.parameters(model, out / "parameters.png")

    train_seconds = sum(row["train_seconds"] for row in history)
    metrics = {
        "parameters": params,
        f"final_{prefix}_accuracy": history[-1][f"{prefix}_accuracy"],
        # For information only: no epoch is ever chosen by it.
        f"best_epoch_{prefix}_accuracy": max(row[f"{prefix}_accuracy"] for row in history),
        f"{prefix}_accuracy_per_epoch": [row[f"{prefix}_accuracy"] for row in history],
        "epochs": len(history),
        "seed": recipe.seed,
        "batch_size": recipe.batch_size,
        "quick": quick,
        "splits": {"fit": fit_split, "evaluate": held_out_split},
        "train_images": train_images,
        # Training plus the per-epoch held-out evaluation, summed over epochs (so a resumed run
        # counts each finished epoch once); process start-up is not included.
        "wall_seconds": sum(row["wall_seconds"] for row in history),
        "train_seconds": train_seconds,
        "train_images_per_second": train_images * len(history) / train_seconds,
        "config": config.to_dict(),
        "recipe": recipe.to_dict(),
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
        "python": platform.python_version(),
    }
    write_json(out / "metrics.json", metrics)
    return metrics
