"""Progress on stderr for long command-line work, readable in a terminal and in a log."""

from __future__ import annotations

import sys
import time
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
