"""Shared pieces of the benchmarks: timing, result lines, random-weight checkpoints.

Every benchmark times samdesk's path and a reference path *in the same
process, on the same inputs, interleaved call by call*, so that the load of
a shared machine falls on both sides alike and the ratio stays meaningful
even when the absolute times do not. Times are wall-clock seconds from
``time.perf_counter``; figures are reported in milliseconds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (``bench/..``); put on ``sys.path`` so ``samdesk`` and
``tests.model_factories`` import from a fresh checkout."""

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Result:
    """One benchmark line: a ratio against a reference and the target it must stay under.

    ``figures`` holds the measured numbers (milliseconds unless the key says
    otherwise). ``ratio`` is samdesk's figure divided by the reference's;
    ``target`` the largest ratio that passes (``None``: timed, no target).
    ``note`` says what was compared, in a few words.
    """

    name: str
    figures: dict[str, Any]
    ratio: float | None
    target: float | None
    note: str = ""
    skipped: str | None = None

    @property
    def met(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target

    def as_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"name": self.name, **self.figures}
        line["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        line["target"] = self.target
        line["met"] = self.met
        if self.note:
            line["note"] = self.note
        if self.skipped:
            line["skipped"] = self.skipped
        return line


Emit = Callable[[Result], None]


def print_result(result: Result) -> None:
    """Print ``result`` as one JSON line and flush (so a long run shows progress)."""
    print(json.dumps(result.as_json()), flush=True)


@dataclass
class Timings:
    """Wall-clock seconds of repeated calls, per variant."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median_ms(self, variant: str) -> float:
        return 1000.0 * statistics.median(self.seconds[variant])

    def calls(self, variant: str) -> int:
        return len(self.seconds[variant])


def interleaved(variants: dict[str, Callable[[], Any]], calls: int, warmup: int = 2) -> Timings:
    """Time each variant ``calls`` times, round-robin, after ``warmup`` untimed rounds.

    Round-robin order means a burst of load from elsewhere on the machine
    slows every variant of that round, not one variant's whole series. Each
    round starts one variant later than the one before, so every variant
    follows every other equally often: a variant that leaves the memory
    allocator or the caches in a bad state (a 48 MB mask freed) does not
    always slow the same next one.
    """
    timings = Timings({name: [] for name in variants})
    names = list(variants)
    for round_index in range(warmup + calls):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                timings.seconds[name].append(elapsed)
    return timings


def work_dir() -> Path:
    """Where checkpoints and generated data are kept between runs.

    ``$SAMDESK_BENCH_DIR`` if set, else ``<tmp>/samdesk-bench``.
    """
    folder = Path(os.environ.get("SAMDESK_BENCH_DIR") or Path(tempfile.gettempdir())
                  / "samdesk-bench")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sam_checkpoint(arch: str = "vit_b") -> Path:
    """A seeded random-weight SAM checkpoint of ``arch`` in the official format (cached)."""
    from tests.model_factories import make_sam_checkpoint

    path = work_dir() / f"sam_{arch}_seed0.pth"
    if not path.exists():
        temp = path.with_suffix(".partial")
        make_sam_checkpoint(temp, arch=arch)
        temp.replace(path)
    return path


def sam2_checkpoint() -> Path:
    """A seeded random-weight SAM 2.1 hiera-tiny checkpoint (``{"model": ...}``, cached)."""
    from tests.model_factories import make_sam2_checkpoint

    path = work_dir() / "sam2.1_hiera_tiny_seed0.pt"
    if not path.exists():
        temp = path.with_suffix(".partial")
        make_sam2_checkpoint(temp)
        temp.replace(path)
    return path


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"samdesk-bench-{prefix}-") as name:
        yield Path(name)


def qt_app() -> Any:
    """The process's QApplication (offscreen), made once for every Qt benchmark.

    A widgets application, not a QCoreApplication: the canvas benchmark needs
    widgets and Qt allows one application object per process.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None and not isinstance(app, QApplication):
        raise RuntimeError("a QCoreApplication already exists; the canvas needs a QApplication")
    return app or QApplication([])


def median(values: list[float]) -> float:
    return float(statistics.median(values))
