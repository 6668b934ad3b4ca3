"""Files written whole or not at all, readable by others, and folders one command at a time."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from app.errors import BusyError, InputFileError, UsageError


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def share(path: str | os.PathLike) -> None:
    """Gives `path` (and everything under it) the modes a plain `open`/`mkdir` would have.

    `tempfile` makes files 600 and folders 700, which a web server or another user cannot
    read; files become 666 and folders 777, less the umask (644 and 755 under umask 022).
    """
    mask = current_umask()
    path = Path(path)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path beside `path` that is renamed onto `path` on success.

    On an exception (or a kill) `path` is left as it was; the temporary file is removed
    unless the process is killed, and its name starts with a dot and ends in `.partial`.

    Args:
        path: the final file path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the whole suffix (".weights.h5", ".keras"): some writers insist on it.
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        share(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


STAGING_PREFIX = ".staging-"  # git ignores folders named so


@contextmanager
def atomic_folder(path: str | os.PathLike):
    """Yields a staging folder beside `path` that replaces `path` whole, by renames, on success.

    Readers see the old set of files or the new one. On an exception `path` is left as it was
    and the staging folder is removed; one left by a kill (`.staging-NAME-*`) is removed by
    the next call. Callers that can run at the same time hold a `folder_lock` around it.

    Args:
        path: the final folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{STAGING_PREFIX}{path.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{path.name}-", dir=path.parent))
    try:
        yield staging
        share(staging)
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{path.name}-old-", dir=path.parent))
            os.replace(path, retired / path.name)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data) -> None:
    """Writes `data` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def make_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Creates `path` (and its parents) as a writable folder, or says in one line why not.

    Args:
        path: the folder.
        flag: the command-line flag that named it, for the message.

    Raises:
        UsageError: when `path` is a file, lies under a file, or cannot be written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test.")
        probe.close()
    except FileExistsError:
        raise UsageError(f"cannot use {path} as a folder, it is a file; choose another {flag}") from None
    except NotADirectoryError:
        raise UsageError(f"cannot create {path}, a part of the path is a file; choose another {flag}") from None
    except OSError as error:
        raise UsageError(f"cannot write in {path} ({error.strerror}); choose another {flag}") from None
    return path


@contextmanager
def folder_lock(folder: str | os.PathLike, holder: str, name: str = ".lock"):
    """Holds an exclusive lock on `folder` for one command; a second command is refused.

    The lock is `flock` on `folder/.lock`, so the kernel releases it when the holder exits,
    even on `kill -9`: no stale lock needs cleaning. The file names the holder for the message.

    Args:
        folder: the run or search folder (it must exist).
        holder: who holds it (the command line), written into the lock file.
        name: the lock file's name (workers of one search each lock their own).

    Raises:
        BusyError: when another process holds the lock.
    """
    path = Path(folder) / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = Path(path).read_text().strip() or "another process"
            raise BusyError(f"{folder} is in use by {other}; wait for it to finish or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({holder})\n".encode())
        yield
    finally:
        os.close(fd)


def read_json(path: str | None, what: str) -> dict:
    """Reads a JSON object from a file given on the command line ({} for None).

    Raises:
        InputFileError: when the file is missing, unreadable or not a JSON object.
    """
    if not path:
        return {}
    try:
        values = json.loads(Path(path).read_text())
    except OSError as error:
        raise InputFileError(f"cannot read the {what} file, {path} ({error.strerror}); check the path") from None
    except ValueError as error:
        raise InputFileError(f"{what} file {path} is not valid JSON ({error}); fix or replace it") from None
    if not isinstance(values, dict):
        raise InputFileError(f"{what} file {path} must hold a JSON object of field names and values")
    return values


def read_history(path: str | os.PathLike) -> list[dict]:
    """Reads a run's `history.csv` into one dict of floats per epoch (epochs counted from 1)."""
    with open(path, newline="") as f:
        # CSVLogger adds empty (NA) val_* columns when there is no validation data.
        rows = [{k: float(v) for k, v in row.items() if v != "NA"} for row in csv.DictReader(f)]
    for row in rows:
        row["epoch"] = int(row["epoch"]) + 1
    return rows
