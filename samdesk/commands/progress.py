"""Progress on stderr for long command-line work, readable in a terminal and in a log."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO


class Progress:
    """Callable ``(done, total)``: redraws one line on a terminal, prints every few
    seconds otherwise, and always prints the last step."""

    def __init__(self, what: str, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.every = every
        self._tty = self.stream.isatty()
        self._last = 0.0
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if not final and now - self._last < (0.1 if self._tty else self.every):
            return
        self._last = now
        percent = 100.0 * done / total if total else 100.0
        rate = done / max(now - self._start, 1e-9)
        text = f"{self.what}: {done}/{total} ({percent:.0f}%, {rate:.1f}/s)"
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Steps:
    """Live lines on a terminal for steps of unknown length (loading a model, encoding).

    On a terminal (``stream.isatty()``) :meth:`step` draws
    ``samdesk: loading sam2.1_hiera_large…``, redraws it with the seconds so
    far whenever the tick it yields is called (at most every 0.1 s), and ends
    it as ``samdesk: loading sam2.1_hiera_large: 3.2 s``. A step that fails
    erases its line, so the error is the only line left. Anywhere else (a
    pipe, a log file) nothing is written: stderr then holds errors alone.
    ``stream`` is looked up when a step starts (default ``sys.stderr``).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[Callable[[], None]]:
        """Show ``what`` while the block runs; yields a ``tick()`` to call now and then."""
        stream = self._stream or sys.stderr
        if not stream.isatty():
            yield lambda: None
            return
        start = last = time.monotonic()
        width = 0

        def draw(text: str, end: str = "") -> None:
            nonlocal width
            stream.write("\r" + text.ljust(width) + end)
            stream.flush()
            width = 0 if end else len(text)

        def tick() -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= 0.1:
                last = now
                draw(f"samdesk: {what}… {now - start:.0f} s")

        draw(f"samdesk: {what}…")
        try:
            yield tick
        except BaseException:
            stream.write("\r" + " " * width + "\r")
            stream.flush()
            raise
        draw(f"samdesk: {what}: {time.monotonic() - start:.1f} s", "\n")
