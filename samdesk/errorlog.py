"""One line for a person, the whole traceback in a log file.

Every entry point (each command, each Qt slot that touches the project or a
model, each HTTP route) catches what it did not expect and calls
:func:`report`: the person gets one line naming the file or field at fault,
the traceback goes to ``samdesk.log`` in the user log folder (or
``$SAMDESK_LOG_DIR``), and the line ends with that file's path.

Messages are never cut mid-word: :func:`shorten` cuts at a word boundary and
says so with an ellipsis.
"""

from __future__ import annotations

import datetime
import errno
import os
import sqlite3
import traceback
from pathlib import Path

import platformdirs

from samdesk.errors import SamdeskError

LOG_NAME = "samdesk.log"
MAX_LOG_BYTES = 2_000_000  # the log is rotated once past this size (one old copy kept)


def log_dir() -> Path:
    """The folder holding ``samdesk.log``: ``$SAMDESK_LOG_DIR`` or the user log folder."""
    env = os.environ.get("SAMDESK_LOG_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_log_dir("samdesk", appauthor=False))


def shorten(text: str, limit: int = 200) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word boundary."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def describe(exc: BaseException) -> str:
    """One readable line for ``exc``, naming the file where the exception knows it."""
    if isinstance(exc, SamdeskError):
        return shorten(str(exc), 400)
    if isinstance(exc, OSError):
        name = exc.filename if exc.filename is not None else None
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason = "disk full"
        elif exc.errno == errno.EEXIST:
            reason = "already exists"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "not writable (permission denied or read-only)"
        if name is not None:
            return shorten(f"{os.fsdecode(name)}: {reason}", 400)
        return shorten(reason, 400)
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, RecursionError):
        return "input nested too deeply"
    if isinstance(exc, sqlite3.Error):
        return shorten(f"project store: {exc}", 400)
    text = str(exc) or type(exc).__name__
    return shorten(f"{type(exc).__name__}: {text}", 400)


def write_log(exc: BaseException, context: str = "") -> Path | None:
    """Append ``exc``'s traceback to the log file; its path, or None if it cannot be written."""
    folder = log_dir()
    path = folder / LOG_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            os.replace(path, folder / (LOG_NAME + ".1"))
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        body = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"--- {stamp} {context}\n{body}\n")
    except OSError:
        return None
    return path


def report(exc: BaseException, context: str = "") -> str:
    """The one line to show for an unexpected ``exc``; its traceback goes to the log.

    ``SamdeskError`` is an expected failure: its message alone is the line,
    and nothing is logged.
    """
    if isinstance(exc, SamdeskError):
        return describe(exc)
    path = write_log(exc, context)
    line = describe(exc)
    if path is not None:
        line = f"{line} (details in {path})"
    return line
