"""Reading and decoding images off the GUI thread.

A 30000 x 30000 PNG takes seconds to decode; the window must keep painting
meanwhile. :class:`ImageLoader` runs each job (reading the file's header and
hash into the project, decoding the display image) on a small
``QThreadPool`` and hands the outcome back on the GUI thread through
:attr:`ImageLoader.finished`, tagged with the request id it was given. The
caller keeps the id of its latest request and drops any other: a person who
moves on before a decode ends never sees the stale image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

LOADER_THREADS = 2


class _Job(QRunnable):
    """Runs ``work()`` and reports ``(request_id, result, error)`` through ``done``."""

    def __init__(self, done: Any, request_id: int, work: Callable[[], Any]) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._done, self._request_id, self._work = done, request_id, work

    def run(self) -> None:
        try:
            result, error = self._work(), None
        except BaseException as exc:  # handed to the GUI thread, which reports it
            result, error = None, exc
        self._done.emit(self._request_id, result, error)


class ImageLoader(QObject):
    """Runs image jobs on pool threads; results come back on this object's thread."""

    finished = Signal(int, object, object)
    """``(request_id, result, error)``: ``error`` is the exception or None."""

    def __init__(self, parent: QObject | None = None, threads: int = LOADER_THREADS) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)

    def submit(self, request_id: int, work: Callable[[], Any]) -> None:
        """Run ``work()`` on a pool thread; jobs queued earlier and not started are dropped."""
        self.pool.clear()
        self.pool.start(_Job(self.finished, request_id, work))

    def wait(self, msecs: int = -1) -> bool:
        """Wait for the running jobs (used when closing); True when none is left."""
        self.pool.clear()
        return self.pool.waitForDone(msecs)
