"""The errors a user can fix, their exit codes, and the one handler every command line uses.

Each error prints as one line, `error: <what>, <where>, <what to do>`, and exits with the
code of its kind (the README's table). Nothing here imports TensorFlow.

| exit code | kind                | example                                              |
|----------:|---------------------|------------------------------------------------------|
| 0         | success             |                                                      |
| 1         | refused             | an export below the accuracy bar; no trial finished  |
| 2         | bad usage           | an unknown flag, an over-budget config, a bad --out  |
| 3         | bad input file      | an image, model or JSON file that cannot be read     |
| 4         | busy                | another command holds the run or search folder       |
| 5         | damaged state       | a resume backup or search folder that cannot be used |
| 6         | missing data        | MNIST neither prepared nor downloadable              |
| 130       | interrupted         | Ctrl-C (the message gives the command to resume)     |
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager


class TinyError(Exception):
    """A failure the user can act on; `str()` is the whole one-line message."""

    exit_code = 1


class Refused(TinyError):
    """The work ran, but its result failed a check and was not kept (exit 1)."""

    exit_code = 1


class UsageError(TinyError):
    """A problem with the command line or its values (exit 2)."""

    exit_code = 2


class InputFileError(TinyError):
    """A file given as input is missing, unreadable or not what it should be (exit 3)."""

    exit_code = 3


class BusyError(TinyError):
    """Another command is using the folder (exit 4)."""

    exit_code = 4


class DamagedStateError(TinyError):
    """Saved state (a resume backup, a search folder) cannot be used as it is (exit 5)."""

    exit_code = 5


class MissingDataError(TinyError):
    """MNIST is neither prepared locally nor downloadable (exit 6)."""

    exit_code = 6


INTERRUPTED = 130


def command_line(argv: list[str] | None = None, program: str = "python -m app") -> str:
    """The command as a user would type it again, e.g. `python -m app train --seed 1`."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([program, *(shlex.quote(a) for a in argv)])


def handle(command, argv: list[str] | None = None, resume_hint: str | None = None) -> int:
    """Runs `command(argv)` and turns every error a user can fix into one line and an exit code.

    Args:
        command: parses `argv`, runs, and returns the exit code.
        argv: the arguments (default: `sys.argv[1:]`).
        resume_hint: what to run again after Ctrl-C; None when there is nothing to resume.
    """
    try:
        return command(argv)
    except TinyError as error:
        _fresh_line()
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except ValueError as error:  # a config or recipe value (e.g. a model over its budget)
        _fresh_line()
        print(f"error: {error}", file=sys.stderr, flush=True)
        return UsageError.exit_code
    except KeyboardInterrupt:
        _fresh_line()
        hint = f"; run `{resume_hint}` to resume" if resume_hint else ""
        print(f"interrupted{hint}", file=sys.stderr, flush=True)
        return INTERRUPTED


def sigint_ignored() -> bool:
    """Whether SIGINT is ignored: whoever started the process chose that, so Ctrl-C handlers stay off."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@contextmanager
def interrupt_exits():
    """While modules load, Ctrl-C ends the process at once: `interrupted`, exit 130.

    Python raises KeyboardInterrupt wherever the main thread happens to be: inside an import
    that shows as the import's traceback, and inside a compiled module's initialisation
    (LiteRT's, TensorFlow's) as an ImportError. Nothing is written while modules load, so
    leaving at once loses nothing, and the message goes to the terminal even while
    `quiet_native_stderr` has file descriptor 2 pointed elsewhere. A process started with
    SIGINT ignored (`nohup`, a script's background job) keeps ignoring it.
    """
    # Only the main thread can take signals.
    if threading.current_thread() is not threading.main_thread() or sigint_ignored():
        yield
        return
    terminal = os.dup(2)

    def leave(_signum, _frame):
        os.write(terminal, b"interrupted\n")
        os._exit(INTERRUPTED)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        os.close(terminal)


def _fresh_line() -> None:
    """Ends a progress bar's line so the message starts at the left margin."""
    sys.stdout.flush()
    if sys.stdout.isatty():
        sys.stdout.write("\n")
        sys.stdout.flush()
