"""Benchmark 4: opening a folder of 100,000 image files.

The folder holds 100,000 empty ``.jpg`` files (listing never opens a file,
so their content does not matter); it is kept in the bench work folder.

- ``folder.first_open``: ``Project.open`` of a folder with no project yet
  (creates the store, lists and records every image) plus ``images()``, the
  list the image dock shows, against a plain recursive ``os.scandir`` walk
  collecting the names. Target 5x. ``peak_mb`` is tracemalloc's peak of
  Python allocations during open + list, in a separate untimed pass.
- ``folder.reopen``: the same with the project already there (a rescan that
  finds nothing new). Same target.
"""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
from pathlib import Path

from bench.common import Emit, Result, median, work_dir


def make_folder(count: int) -> Path:
    folder = work_dir() / f"folder_{count}"
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"IMG_{i:06d}.jpg").touch()
        done.touch()
    return folder


def scandir_walk(folder: Path) -> list[str]:
    """Every file name under ``folder`` (the floor: one scandir per folder)."""
    names: list[str] = []
    stack = [os.fspath(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    names.append(entry.name)
    return names


def open_and_list(folder: Path) -> int:
    from samdesk.project import Project

    with Project.open(folder) as project:
        return len(project.images())


def _forget_project(folder: Path) -> None:
    shutil.rmtree(folder / ".samdesk", ignore_errors=True)


def run(quick: bool, emit: Emit) -> None:
    count = 100_000
    rounds = 2 if quick else 5
    folder = make_folder(count)
    first, again, walks = [], [], []
    listed = 0
    for _ in range(rounds):
        _forget_project(folder)
        start = time.perf_counter()
        scandir_walk(folder)
        walks.append(time.perf_counter() - start)
        start = time.perf_counter()
        listed = open_and_list(folder)
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        open_and_list(folder)
        again.append(time.perf_counter() - start)
    _forget_project(folder)
    tracemalloc.start()
    open_and_list(folder)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    _forget_project(folder)
    floor = median(walks)
    figures = {"files": count, "listed": listed, "scandir_ms": round(1000 * floor, 1),
               "rounds": rounds}
    emit(Result("folder.first_open", {**figures, "open_ms": round(1000 * median(first), 1),
                                      "peak_mb": round(peak / 1e6, 1)},
                median(first) / floor, 5.0, "Project.open + images() vs os.scandir walk"))
    emit(Result("folder.reopen", {**figures, "open_ms": round(1000 * median(again), 1)},
                median(again) / floor, 5.0, "project already recorded; rescan finds nothing"))
