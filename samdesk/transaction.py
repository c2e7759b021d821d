"""One write transaction on the project store, and the one line a failed one gives.

:func:`write_transaction` wraps ``BEGIN IMMEDIATE`` … ``COMMIT``. When
anything inside fails, what SQLite has not already rolled back is rolled back
(a full disk or an I/O error ends the transaction inside SQLite, so a plain
``ROLLBACK`` would raise "no transaction is active" over the real error), and
the store faults a person can act on become one line naming the store file:

* a full disk: ``FILE: disk full: the edit was not saved``
  (:class:`~samdesk.errors.StoreFullError`);
* another program holding the file's write lock for longer than
  :data:`samdesk.storage.BUSY_TIMEOUT_MS`:
  ``FILE is locked by another program; the edit was not saved``
  (:class:`~samdesk.errors.StoreLockedError`);
* an I/O error: ``FILE: cannot be written (disk I/O error); the edit was not saved``.

Other exceptions (a refused edit, a bug) pass through unchanged, after the
rollback.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from samdesk.errors import StoreFullError, StoreLockedError, StoreWriteError

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13
"""SQLite's primary result codes (the low byte of an extended code)."""
_FULL_BELOW = 256 * 1024
"""Free bytes under which an I/O error on the store is taken for a full disk (SQLite
reports a ``-shm`` or ``-wal`` file it cannot grow as a plain I/O error)."""


def store_error(exc: BaseException, db_path: Path | str,
                what: str = "the edit") -> StoreWriteError | None:
    """The one-line error for ``exc`` raised while writing the store at ``db_path``.

    None when ``exc`` is not a fault of the store's file (a full disk, a lock
    held by another program, an I/O error). ``what`` names what was lost.
    """
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return StoreFullError(f"{db_path}: disk full: {what} was not saved")
        return None
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc).lower()
    if primary == _SQLITE_FULL or "disk is full" in text:
        return StoreFullError(f"{db_path}: disk full: {what} was not saved")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "is locked" in text:
        return StoreLockedError(f"{db_path} is locked by another program; {what} was not saved")
    if (primary == _SQLITE_IOERR or "disk i/o error" in text) and _nearly_full(db_path):
        return StoreFullError(f"{db_path}: disk full: {what} was not saved")  # e.g. the -shm
    if primary == _SQLITE_IOERR or "disk i/o error" in text:
        return StoreWriteError(f"{db_path}: cannot be written (disk I/O error); "
                               f"{what} was not saved")
    return None


def _nearly_full(db_path: Path | str) -> bool:
    """True when the disk holding ``db_path`` has less room than a few SQLite pages."""
    try:
        return shutil.disk_usage(Path(db_path).parent).free < _FULL_BELOW
    except OSError:
        return False


def rollback(conn: sqlite3.Connection, error: BaseException | None = None) -> None:
    """Roll back whatever is left of a failed transaction (nothing, if SQLite already did).

    A failing ``ROLLBACK`` is noted on ``error`` (shown with its traceback)
    instead of hiding it.
    """
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as failed:
        if error is not None:
            error.add_note(f"the rollback failed too: {failed}")


@contextmanager
def write_transaction(conn: sqlite3.Connection, db_path: Path | str,
                      what: str = "the edit") -> Iterator[None]:
    """Run the body in one ``BEGIN IMMEDIATE`` transaction, committed at the end.

    On any exception nothing of the body stays in the store; store faults are
    raised as the :class:`~samdesk.errors.StoreWriteError` of :func:`store_error`.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")  # nothing started if this fails: nothing to roll back
    except sqlite3.Error as exc:
        _raise_translated(exc, db_path, what)
        raise
    try:
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        rollback(conn, exc)
        _raise_translated(exc, db_path, what)
        raise


def _raise_translated(exc: BaseException, db_path: Path | str, what: str) -> None:
    """Raise the store fault ``exc`` is, if it is SQLite's (an OSError of the body is not)."""
    error = store_error(exc, db_path, what) if isinstance(exc, sqlite3.Error) else None
    if error is not None:
        raise error from exc
