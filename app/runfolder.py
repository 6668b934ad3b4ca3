"""A run folder's claim and resume state, checked before any training (no TensorFlow here).

`claimed` takes a run folder for one command: it makes the folder, locks it, refuses a
finished run, another run's folder or damaged resume state, and yields where training
resumes. `python -m app train` claims the folder once before importing TensorFlow, so every
such refusal comes at once, then `train` claims it again for the run itself (claiming is
idempotent). Every refusal names the file concerned and the way out.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from app import provenance
from app.config import ModelConfig, Recipe
from app.errors import DamagedStateError, UsageError
from app.files import atomic_path, folder_lock, make_folder, write_json

BACKUP = "backup"
BACKUP_STATE = "training_metadata.json"
# Quick mode trains and evaluates on these small slices of the real splits.
QUICK_TRAIN = 2048
QUICK_TEST = 1024
# Validation mode holds out the last images of the train split; test is never read then.
VALIDATION_SIZE = 10_000


class RunFolderError(UsageError):
    """The output folder cannot take this run."""


def split_names(quick: bool = False, validation: bool = False) -> tuple[str, str]:
    """Returns the TFDS split strings `(fit, evaluate)` of a run.

    Args:
        quick: small slices, for smoke tests.
        validation: evaluate on images held out from the train split instead of on the test
            split, so recipe and tuning decisions never see the test set.
    """
    if validation:
        fit, held_out = f"train[:-{VALIDATION_SIZE}]", f"train[-{VALIDATION_SIZE}:]"
        if quick:
            fit, held_out = f"train[:{QUICK_TRAIN}]", f"train[-{QUICK_TEST}:]"
        return fit, held_out
    if quick:
        return f"train[:{QUICK_TRAIN}]", f"test[:{QUICK_TEST}]"
    return "train", "test"


def history_rows(history_csv: Path) -> int:
    """Counts the whole epoch rows of `history.csv` (a row cut short by a kill does not count)."""
    if not history_csv.exists():
        return 0
    lines = history_csv.read_text().splitlines(keepends=True)
    if not lines:
        return 0
    columns = len(lines[0].split(","))
    return sum(1 for line in lines[1:] if line.endswith("\n") and len(line.split(",")) == columns)


def backup_state(out: Path) -> tuple[int, Path | None]:
    """Reads and checks the resume state of a run folder.

    Returns:
        `(finished epochs, weights file)`; `(0, None)` when there is nothing to resume.

    Raises:
        DamagedStateError: when the backup cannot be trusted, naming the file and the way to
            start over.
    """
    backup, history_csv = out / BACKUP, out / "history.csv"
    rows = history_rows(history_csv)
    restart = "rerun with --restart to train from epoch 1, or choose another --out"
    if not backup.exists():
        # CSVLogger writes an epoch's row just before its backup: one row may lead the backup.
        if rows > 1:
            raise DamagedStateError(
                f"cannot resume {out}, {history_csv} holds {rows} finished epochs but {backup}/ is missing; {restart}")
        return 0, None
    state_path = backup / BACKUP_STATE
    try:
        state = json.loads(state_path.read_text())
        epoch, weights = int(state["epoch"]), backup / state["weights"]
    except FileNotFoundError:
        # A kill before the first backup finished: nothing to resume, nothing lost.
        if rows > 1:
            raise DamagedStateError(f"cannot resume {out}, {state_path} is missing; {restart}") from None
        return 0, None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedStateError(
            f"cannot resume {out}, {state_path} is damaged ({type(error).__name__}); {restart}") from None
    if not weights.is_file():
        raise DamagedStateError(f"cannot resume {out}, {weights} is missing; {restart}")
    if rows < epoch:
        raise DamagedStateError(
            f"cannot resume {out}, {history_csv} holds {rows} of the {epoch} finished epochs; {restart}")
    return epoch, weights


def keep_history(history_csv: Path, epochs: int) -> None:
    """Keeps the header and the first `epochs` rows of `history.csv`, so each epoch is logged once.

    CSVLogger writes an epoch's row just before the backup of that epoch; a kill between the
    two leaves one row more than the backup has (or a row cut short), and that epoch is
    trained again. Finished epochs' rows are never dropped.

    Args:
        history_csv: the CSVLogger file.
        epochs: the finished epochs to keep.
    """
    if not history_csv.exists():
        return
    lines = history_csv.read_text().splitlines(keepends=True)
    if len(lines) == epochs + 1:
        return
    if not epochs:
        history_csv.unlink()
        return
    with atomic_path(history_csv) as tmp:
        tmp.write_text("".join(lines[: epochs + 1]))


def start_over(out: Path) -> None:
    """Removes a run folder's resume state and history (`--restart`)."""
    shutil.rmtree(out / BACKUP, ignore_errors=True)
    for name in ("history.csv", "provenance.json"):
        (out / name).unlink(missing_ok=True)


def check_same_run(out: Path, record: dict) -> None:
    """Refuses to resume a folder that another config, recipe or data split started."""
    path = out / "provenance.json"
    if not path.exists():
        return
    try:
        started = json.loads(path.read_text())
    except ValueError:
        raise DamagedStateError(f"cannot resume {out}, {path} is damaged; rerun with --restart") from None
    if isinstance(started.get("config"), dict):  # one model has one form: `edges` 0 and [] alike
        try:
            started["config"] = ModelConfig.from_dict(started["config"]).to_dict()
        except (TypeError, ValueError):
            pass  # another config all the same: refused below
    for key in ("config", "recipe", "splits"):
        if started.get(key) != record[key]:
            raise RunFolderError(
                f"{out} was started with another {key} ({started.get('command')}); "
                "rerun that command to resume, or choose another --out")


@contextmanager
def claimed(out: Path, config: ModelConfig, recipe: Recipe, command: str, quick: bool = False,
            validation: bool = False, origin: dict | None = None, restart: bool = False):
    """Takes the run folder `out` for one run, holding its lock until the block ends.

    Args:
        out: the run folder (made when missing).
        config, recipe: what the run trains; a folder started with others is refused.
        command: the command line, recorded in `provenance.json` and named to a second command.
        quick, validation: the run's splits (see `split_names`).
        origin: where the config came from, for `provenance.json`.
        restart: discard the folder's resume state and history first.

    Yields:
        `(splits, first_epoch, weights)`: the `{"fit", "evaluate"}` split names, the finished
        epochs and the weights file to resume from (`0, None` for a fresh run).

    Raises:
        RunFolderError: when `out` already holds a finished run or another run's state.
        DamagedStateError: when the resume state cannot be trusted.
        BusyError: when another command is training into `out`.
    """
    make_folder(out)
    with folder_lock(out, command):
        if (out / "metrics.json").exists():
            shutil.rmtree(out / BACKUP, ignore_errors=True)  # left by a kill after the final files
            raise RunFolderError(f"{out} already holds a finished run; choose another --out")
        if restart:
            start_over(out)
        fit_split, held_out_split = split_names(quick=quick, validation=validation)
        splits = {"fit": fit_split, "evaluate": held_out_split}
        record = provenance.record(command, config.to_dict(), recipe.to_dict(), origin)
        record.update(splits=splits, quick=quick)
        check_same_run(out, record)
        first_epoch, weights = backup_state(out)
        keep_history(out / "history.csv", first_epoch)
        if not (out / "provenance.json").exists():
            write_json(out / "provenance.json", record)
        yield splits, first_epoch, weights
