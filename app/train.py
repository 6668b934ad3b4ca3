"""Trains the tinymnist CNN and writes a run folder.

The run folder holds `provenance.json` (what made it, written before the first epoch),
`history.csv`, `model.keras`, `metrics.json`, `summary.txt`, `accuracy.png`, `loss.png`,
`parameters.png` and `tensorboard/` (scalars per epoch, the graph, the run's settings).
While training runs it also holds `backup/`, the weights, optimizer state and epoch of the
last finished epoch, so a killed run resumes where it stopped.

A run is safe to kill at any moment and rerun with the same command:
- every file is written whole or not at all (a temporary file, then a rename);
- `backup/` names the weights file of its epoch, so a kill while it is written leaves the
  previous epoch's backup intact, and `history.csv` is cut back to that epoch's row;
- `backup/` is removed only after `model.keras` and `metrics.json` are written, so a kill
  after the last epoch finishes the files on rerun instead of training again;
- a lock on the folder refuses a second command while one runs;
- damaged resume state is refused with the file it concerns, never silently replaced.

The folder's checks and lock are `app.runfolder.claimed`, which `python -m app train` also
runs before importing TensorFlow, so a folder that cannot take the run is refused at once.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import tensorflow as tf

from app import data, plots, provenance
from app.config import ModelConfig, Recipe
from app.errors import DamagedStateError, sigint_ignored
from app.files import atomic_path, read_history, write_json, write_text
from app.model import build_model, parameter_counts
from app.runfolder import BACKUP, BACKUP_STATE, claimed

TENSORBOARD = "tensorboard"


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


class StopAtCtrlC(keras.callbacks.Callback):
    """Turns Ctrl-C during `fit` into a KeyboardInterrupt at the next batch boundary.

    Python raises KeyboardInterrupt wherever the main thread happens to be, and one raised
    inside a finalizer (TensorFlow runs many) is printed and dropped, so a run could go on
    as if nothing was pressed. The handler only takes note; the callback raises between
    training batches (every `steps_per_execution` steps) or as an epoch begins, where
    nothing is half-written and every finished epoch is backed up. A second
    Ctrl-C falls through to Python's default and interrupts at once. A process started with
    SIGINT ignored (`nohup`, a script's background job) keeps ignoring it.
    """

    def __init__(self):
        super().__init__()
        self.pressed = False
        self.previous = None

    def _press(self, signum, frame):
        self.pressed = True
        signal.signal(signal.SIGINT, self.previous)

    def _check(self, *args, **kwargs):
        if self.pressed:
            self.pressed = False
            raise KeyboardInterrupt

    # Not at an epoch's end: the backup of the epoch just finished comes first.
    on_train_batch_end = on_epoch_begin = _check

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread() and not sigint_ignored():
            self.previous = signal.signal(signal.SIGINT, self._press)

    def on_train_end(self, logs=None):
        self.restore()

    def restore(self):
        """Puts the previous Ctrl-C handler back (also when `fit` ends with an error)."""
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class EpochBackup(keras.callbacks.Callback):
    """Backs up the weights and optimizer state after each epoch, atomically.

    Keras's `BackupAndRestore` overwrites its weights file in place (a kill during the
    write leaves a truncated file) and deletes the backup when `fit` returns, before the
    run's own files exist. Here each epoch's weights go to a new file, and
    `training_metadata.json` is switched to it by a rename only once it is whole; the
    caller removes the backup when the run's final files are written.

    Args:
        folder: the backup folder.
    """

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        with atomic_path(self.folder / name) as tmp:
            self.model.save_weights(tmp)
        write_json(self.folder / BACKUP_STATE, {"epoch": epoch + 1, "weights": name})
        for old in self.folder.glob("*.weights.h5"):
            if old.name != name:
                old.unlink()


def log_hparams(logdir: Path, config: ModelConfig, recipe: Recipe) -> None:
    """Records the run's config and recipe for TensorBoard's HParams dashboard.

    With every run folder's `tensorboard/`, `tensorboard --logdir runs` lays runs side by side
    by their settings and final metrics.
    """
    from tensorboard.plugins.hparams import api as hparams

    values = {f"config.{k}": v for k, v in config.to_dict().items()}
    values.update({f"recipe.{k}": v for k, v in recipe.to_dict().items()})
    values = {k: str(v) if isinstance(v, list) else v for k, v in values.items()}
    with tf.summary.create_file_writer(str(logdir / "hparams")).as_default():
        hparams.hparams(values)


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


def make_deterministic() -> None:
    """Makes two runs of one seed bit-identical: deterministic TF ops on one thread.

    The shuffling and augmentation are already functions of the seed and the epoch
    (`data.train_pipeline`) and the weights and Dropout follow `keras.utils.set_random_seed`;
    what is left is the order of floating-point reductions, which op determinism and a single
    thread fix. Call it before TensorFlow runs any op: the thread counts cannot change after.
    """
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def progress_verbosity() -> int:
    """Keras `fit` verbosity: progress bars on a terminal, one line per epoch in a log."""
    return 1 if sys.stdout.isatty() else 2


def train(
    config: ModelConfig = ModelConfig(),
    recipe: Recipe = Recipe(),
    out: str | Path = "runs/train",
    quick: bool = False,
    validation: bool = False,
    verbose: int | str = "auto",
    callbacks: list | None = None,
    command: str | None = None,
    origin: dict | None = None,
    restart: bool = False,
) -> dict:
    """Trains one model and writes the run folder; resumes from `out/backup/` when there is one.

    Args:
        config: the model configuration.
        recipe: the training recipe (epochs, batch size, schedule, seed).
        out: the run folder.
        quick: train and evaluate on small slices of the splits (a smoke test, not a result).
        validation: fit on the train split less its last 10,000 images and evaluate on those
            (`val_*` metrics) instead of on the test split; for recipe decisions.
        verbose: Keras `fit` verbosity; "auto" is bars on a terminal, one line per epoch
            otherwise.
        callbacks: extra Keras callbacks, run after the run folder's own.
        command: the command line, recorded in `provenance.json`.
        origin: where the config came from (e.g. a search's trial), for `provenance.json`.
        restart: discard the folder's resume state and history and train from epoch 1.

    Returns:
        The metrics written to `out/metrics.json`.

    Raises:
        RunFolderError: when `out` already holds a finished run or another run's state.
        DamagedStateError: when the resume state cannot be trusted.
        BusyError: when another command is training into `out`.
        ValueError: when the config is over its budget.
        MissingDataError: when MNIST cannot be loaded.
    """
    out = Path(out)
    build_model(config)  # raises on an over-budget config before anything is written
    command = command or f"python -m app train --seed {recipe.seed} --out {out}"
    with claimed(out, config, recipe, command, quick, validation, origin, restart) as (splits, first_epoch, weights):
        return _fit_and_write(config, recipe, out, "val" if validation else "test", splits["fit"],
                              splits["evaluate"], first_epoch, weights, verbose, callbacks, quick)


def _fit_and_write(config, recipe, out, prefix, fit_split, held_out_split, first_epoch, weights, verbose,
                   callbacks, quick) -> dict:
    keras.utils.set_random_seed(recipe.seed)
    model = build_model(config)
    # Summarise before compiling: afterwards Keras adds the optimizer's slots to the total.
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    summary = "\n".join(lines) + "\n"

    train_raw, held_out_raw = data.load_split(fit_split), data.load_split(held_out_split)
    train_images = int(train_raw.cardinality())
    train_ds = data.train_pipeline(
        train_raw, recipe.batch_size, recipe.seed, shift=recipe.shift, rotation=recipe.rotation,
        first_epoch=first_epoch, stroke=recipe.stroke, blur=recipe.blur,
        clean_from=recipe.epochs - recipe.clean_epochs if recipe.clean_epochs else None,
    ).map(one_hot)
    held_out_ds = data.eval_pipeline(held_out_raw).map(one_hot)
    steps = -(-train_images // recipe.batch_size)
    compile_model(model, recipe, steps)
    if weights is not None:
        model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(weights)
        except Exception as error:  # h5py and Keras raise many kinds for a damaged file
            raise DamagedStateError(
                f"cannot resume {out}, {weights} is damaged ({type(error).__name__}); "
                "rerun with --restart to train from epoch 1, or choose another --out") from None

    history_csv = out / "history.csv"
    if first_epoch == 0:
        log_hparams(out / TENSORBOARD, config, recipe)
    ctrl_c = StopAtCtrlC()
    own = [
        ctrl_c,
        HeldOutCurve(held_out_ds, train_images, prefix),
        # After HeldOutCurve, so the held-out accuracy and the timings are among its scalars.
        keras.callbacks.TensorBoard(str(out / TENSORBOARD), write_graph=True, update_freq="epoch"),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        EpochBackup(out / BACKUP),
    ]
    if verbose == "auto":
        verbose = progress_verbosity()
    # shuffle=False: the pipeline already orders each epoch (see `data.train_pipeline`).
    try:
        model.fit(train_ds, epochs=recipe.epochs, initial_epoch=first_epoch, callbacks=[*own, *(callbacks or [])],
                  verbose=verbose, shuffle=False)
    finally:
        ctrl_c.restore()

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
        "versions": provenance.versions(),
    }
    write_json(out / "metrics.json", metrics)
    shutil.rmtree(out / BACKUP, ignore_errors=True)  # only now: the run's own files are whole
    return metrics
