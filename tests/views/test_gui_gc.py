"""Garbage cycles are collected on the GUI thread, never by a worker thread."""

from __future__ import annotations

import gc
import threading
import weakref

from samdesk.views.gui_gc import GuiThreadGarbageCollector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_cycles_are_freed_by_the_gui_thread_timer(qtbot):
    collector = GuiThreadGarbageCollector(interval_ms=10)
    try:
        assert not gc.isenabled()
        freed_on: list[str] = []
        probe = Node()
        weakref.finalize(probe, lambda: freed_on.append(threading.current_thread().name))
        del probe

        def allocate_in_a_worker() -> None:  # enough to pass gen-0's threshold many times
            junk = [Node() for _ in range(5 * collector.thresholds[0])]
            del junk

        worker = threading.Thread(target=allocate_in_a_worker, name="worker")
        worker.start()
        worker.join()
        assert freed_on == []  # the worker's allocations did not start a collection
        qtbot.waitUntil(lambda: bool(freed_on), timeout=5000)
        assert freed_on == [threading.main_thread().name]
    finally:
        collector.stop()
        gc.disable()  # the test session keeps automatic collection off (conftest)


def test_check_collects_the_generation_past_its_threshold():
    collector = GuiThreadGarbageCollector(interval_ms=60_000)
    try:
        gc.collect()
        assert collector.check() == -1
        junk = [Node() for _ in range(collector.thresholds[0] + 10)]
        del junk
        assert collector.check() == 0
    finally:
        collector.stop()
        gc.disable()
