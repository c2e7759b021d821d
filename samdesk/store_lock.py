"""The OS file lock a project is held by while one samdesk writes it.

One process at a time may write a project: the first holds an exclusive lock
on ``FOLDER/.samdesk/lock`` (``flock`` on POSIX, ``msvcrt.locking`` on
Windows) and writes its pid there; a second is refused with a message naming
that pid. The lock goes with the process, so a killed samdesk leaves none.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from samdesk.errors import ProjectLockedError


class ProjectLock:
    """An exclusive OS lock on ``lock_path`` held while a project is open for writing."""

    def __init__(self, lock_path: Path, project: Path) -> None:
        self.path = lock_path
        self.project = project
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            _lock_file(fh)
        except OSError:
            fh.seek(0)
            holder = fh.read().decode("ascii", "replace").strip() or "unknown"
            fh.close()
            raise ProjectLockedError(
                f"{self.project} is already open in another samdesk (pid {holder}); "
                "close it there first"
            ) from None
        try:  # the holder's pid, for the message a second samdesk gets
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()).encode("ascii"))
            fh.flush()
        except OSError:  # a full disk: the lock holds all the same, the pid reads "unknown"
            pass
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            try:
                _unlock_file(self._fh)
            finally:
                self._fh.close()
                self._fh = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(fh) -> None:  # type: ignore[no-untyped-def]
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(fh) -> None:  # type: ignore[no-untyped-def]
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fh) -> None:  # type: ignore[no-untyped-def]
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(fh) -> None:  # type: ignore[no-untyped-def]
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
