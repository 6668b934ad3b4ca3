"""Trains the reader's learned stages on rendered pictures: `python -m app reader`.

1. Render: MNIST train digits drawn by the development set's renderers (`app.render`) with
   their own seeds, each picture with its ink; the validation pictures come from the train
   split's last 10,000 digits, which neither stage trains on.
2. The ink net (`app.reader.build_ink_net`) learns the ink of every picture (binary
   cross-entropy against the rendered coverage).
3. The classifier, started from the exported one, is fine-tuned on what the trained ink net
   and the fit make of the training pictures, beside MNIST's own digits, so it reads the
   reader's 28 x 28 as well as MNIST's (thicker strokes, squashed aspect, a stray speck).

Every stage is kept in the run folder as it finishes (renders, `ink_net.keras` with a
backup each epoch, `classifier.keras`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app import reader, render
from app.files import atomic_path, write_json, write_text

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ReaderRecipe:
    """How the reader's stages are trained (the defaults make the exported reader)."""

    # (name, train-split slice, seed): the training pictures, one per digit.
    renders: tuple = (("a", "train[:30000]", 101), ("b", "train[20000:50000]", 303))
    validation: tuple = ("val", "train[50000:54000]", 202)
    width: int = 24
    ink_epochs: int = 8
    ink_batch: int = 64
    ink_learning_rate: float = 0.003
    classifier_epochs: int = 4
    classifier_batch: int = 128
    classifier_learning_rate: float = 0.001
    mnist_digits: str = "train[:30000]"  # MNIST's own digits beside the rendered ones
    seed: int = 0


QUICK = ReaderRecipe(renders=(("a", "train[:256]", 101),), validation=("val", "train[50000:50128]", 202),
                     width=8, ink_epochs=1, classifier_epochs=1, mnist_digits="train[:256]")


def rendered(folder: Path, name: str, split: str, seed: int) -> dict:
    """The pictures of one render (made once, kept as `folder/renders/name.npz`)."""
    from app import data

    path = folder / "renders" / f"{name}.npz"
    if not path.exists():
        images, labels = data.in_memory(data.load_split(split))
        pixels, ink, labels = render.render(images.numpy()[..., 0], labels.numpy(), seed, reader.SIDE)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, pixels=pixels, ink=ink, labels=labels)
        print(f"rendered {len(labels):,} pictures of {split} (seed {seed}) into {path}", flush=True)
    return dict(np.load(path))


class EpochLine:
    """A Keras callback printing one line per epoch (and a bar when stdout is a terminal)."""

    def __new__(cls, stage: str, epochs: int):
        import keras

        class Line(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                values = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
                print(f"{stage} epoch {epoch + 1}/{epochs}: {values} ({time.perf_counter() - self.start:.0f}s)",
                      flush=True)

        return Line()


def train_ink_net(folder: Path, recipe: ReaderRecipe, pictures, inks, validation) -> keras.Model:
    """Trains the ink net, resuming from the last finished epoch; kept as `ink_net.keras`."""
    import keras

    path = folder / "ink_net.keras"
    if path.exists():
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(recipe.seed)
    net = reader.build_ink_net(width=recipe.width)
    steps = recipe.ink_epochs * max(1, len(pictures) // recipe.ink_batch)
    net.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(recipe.ink_learning_rate, steps)),
                loss="binary_crossentropy")
    net.fit(pictures, inks[..., None], batch_size=recipe.ink_batch, epochs=recipe.ink_epochs, verbose=0,
            validation_data=(validation["pixels"], validation["ink"][..., None]),
            callbacks=[keras.callbacks.BackupAndRestore(str(folder / "ink_backup")),
                       EpochLine("ink", recipe.ink_epochs)])
    with atomic_path(path) as tmp:
        net.save(tmp)
    return net


def fitted(ink_net, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the reader's classifier sees of each picture (28 x 28, 0..255), and its ink in all."""
    ink = ink_net.predict(pictures, batch_size=256, verbose=0)
    return np.asarray(reader.FitDigit()(ink)), ink.sum(axis=(1, 2, 3))


def fine_tune(folder: Path, recipe: ReaderRecipe, ink_net, train: dict, exported: Path) -> keras.Model:
    """Fine-tunes the exported classifier on the reader's view; kept as `classifier.keras`."""
    import keras

    from app import data

    path, source = folder / "classifier.keras", folder / "classifier_source.txt"
    # A new export brings a new classifier: the fine-tuning (not the ink net) is done again.
    if path.exists() and source.exists() and source.read_text() == classifier_source(exported):
        return keras.saving.load_model(path)
    digits, _ = fitted(ink_net, train["pixels"])
    keep = train["labels"] >= 0  # blank pictures are the refusal's, not the classifier's
    mnist, mnist_labels = (t.numpy() for t in data.in_memory(data.load_split(recipe.mnist_digits)))
    images = np.concatenate([digits[keep], mnist.astype(np.float32)])
    labels = np.concatenate([train["labels"][keep], mnist_labels])
    keras.utils.set_random_seed(recipe.seed)
    model = reader.exported_classifier(exported)
    steps = recipe.classifier_epochs * max(1, len(images) // recipe.classifier_batch)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(recipe.classifier_learning_rate,
                                                                               steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, batch_size=recipe.classifier_batch, epochs=recipe.classifier_epochs, verbose=0,
              shuffle=True, callbacks=[EpochLine("classifier", recipe.classifier_epochs)])
    with atomic_path(path) as tmp:
        model.save(tmp)
    write_text(source, classifier_source(exported))
    return model


def classifier_source(exported: Path) -> str:
    """The SHA-256 of the exported classifier's weights, which the fine-tuning starts from."""
    from app.export import sha256

    return sha256(Path(exported) / "saved_model" / "variables" / "variables.data-00000-of-00001")


def train_reader(out: str | Path, exported: str | Path = "exported", quick: bool = False,
                 command: str | None = None) -> dict:
    """Renders, trains the ink net, fine-tunes the classifier and scores the reader on validation.

    Args:
        out: the run folder (resumed when it holds finished stages).
        exported: the folder `python -m app export` wrote; its classifier is the starting point.
        quick: a tiny recipe (a smoke test).
        command: the command line, recorded in `reader.json`.

    Returns:
        The run's record, also written to `out/reader.json`: the recipe, the validation
        accuracy (pictures with a digit), the share of blank pictures refused and of digits
        wrongly refused, and the accuracy from the rendered ink itself (the ink net's ceiling).
    """
    from app.model import five_views

    folder = Path(out)
    recipe = QUICK if quick else ReaderRecipe()
    parts = [rendered(folder, *spec) for spec in recipe.renders]
    train = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    validation = rendered(folder, *recipe.validation)
    ink_net = train_ink_net(folder, recipe, train["pixels"], train["ink"], validation)
    classifier = fine_tune(folder, recipe, ink_net, train, Path(exported))
    digits, mass = fitted(ink_net, validation["pixels"])
    labels = validation["labels"]
    read = five_views(classifier)
    answers = read.predict(digits, batch_size=500, verbose=0).argmax(1)
    answers[mass < reader.MIN_INK] = -1
    has_digit = labels >= 0
    # The same pictures fitted from the ink the renderer drew: what a perfect ink net would give.
    exact = np.asarray(reader.FitDigit()(validation["ink"][has_digit][..., None]))
    exact_answers = read.predict(exact, batch_size=500, verbose=0).argmax(1)
    record = {
        "recipe": asdict(recipe),
        "validation_pictures": int(len(labels)),
        "validation_accuracy": float((answers[has_digit] == labels[has_digit]).mean()),
        "blank_refused": float((answers[~has_digit] == -1).mean()) if (~has_digit).any() else None,
        "digits_refused": float((answers[has_digit] == -1).mean()),
        "validation_accuracy_exact_ink": float((exact_answers == labels[has_digit]).mean()),
        "exported_from": str(exported),
        "classifier_source_sha256": classifier_source(Path(exported)),
        "command": command,
    }
    write_json(folder / "reader.json", record)
    return record


def load_run(run: str | Path) -> tuple:
    """The trained ink net and classifier of a finished reader run, and its record."""
    import keras

    run = Path(run)
    record = json.loads((run / "reader.json").read_text())
    return keras.saving.load_model(run / "ink_net.keras"), keras.saving.load_model(run / "classifier.keras"), record
