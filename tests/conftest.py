"""Shared test set-up: offscreen Qt, and no QThread left running after a test."""

from __future__ import annotations

import gc
import os
import tempfile
import traceback
import weakref
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt
# tracebacks reported by samdesk.errorlog go to a throw-away folder, not the user's
os.environ.setdefault("SAMDESK_LOG_DIR", tempfile.mkdtemp(prefix="samdesk-test-log-"))
# models run torch unless a test picks a runtime (auto would export and probe every model),
# and exported graphs go to a throw-away folder, not the user's cache
os.environ.setdefault("SAMDESK_RUNTIME", "torch")
os.environ.setdefault("SAMDESK_RUNTIME_CACHE", tempfile.mkdtemp(prefix="samdesk-test-rt-"))


@pytest.fixture(autouse=True, scope="session")
def _collect_garbage_on_the_main_thread_only() -> Iterator[None]:
    """As the app does (samdesk.views.gui_gc): a collection started by a worker
    thread could free Qt widgets off the GUI thread and crash; collect between
    tests on the main thread instead."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(autouse=True)
def _collect_after_each_test() -> Iterator[None]:
    yield
    gc.collect()
    # What survived is long-lived (modules, torch, Qt): freeze it, so the next
    # test's collection scans only what that test made (a full collection of
    # the whole heap after every test cost about 0.5 s each).
    gc.freeze()


@pytest.fixture(autouse=True)
def _no_dangling_qthreads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that leaves a QThread running (as napari's conftest does).

    Every ``QThread.start`` during the test is recorded with where it was
    called from; at teardown a thread still running is stopped (quit, wait)
    and the test fails naming that place.
    """
    try:
        from PySide6.QtCore import QThread
    except ImportError:  # no Qt installed: nothing can be left running
        yield
        return
    started: weakref.WeakKeyDictionary[QThread, str] = weakref.WeakKeyDictionary()
    original_start = QThread.start

    def recording_start(self: QThread, *args: object) -> None:
        started[self] = "".join(traceback.format_stack(limit=6)[:-1])
        original_start(self, *args)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    dangling = []
    for thread, where in list(started.items()):
        try:
            if thread.isRunning():
                dangling.append(where)
                thread.quit()
                thread.wait(2000)
        except RuntimeError:  # the C++ thread is already deleted, so it is not running
            continue
    if dangling:
        pytest.fail("QThread still running after the test; started at:\n" + "\n".join(dangling))
