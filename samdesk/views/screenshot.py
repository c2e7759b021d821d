"""``samdesk --screenshot PNG FOLDER``: save the window once its first image is shown, then quit.

A hidden option for checking that the window really starts on a display (CI
runs it under Xvfb with ``QT_QPA_PLATFORM=xcb``, see ``scripts/check_window.py``).
The PNG holds the pixels the display server has for the main window
(``QScreen.grabWindow``), not a re-render of the widgets.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QTimer
from PySide6.QtWidgets import QMainWindow

POLL_MS = 100
SETTLE_S = 0.5  # after the window is exposed with its image, time for it to paint
GIVE_UP_S = 120.0  # no image shown by then: exit 1 and say so


class WindowScreenshot(QObject):
    """Polls until ``window`` is exposed and shows an image, saves the PNG and closes it.

    ``exit_code`` is None while waiting, then 0 (saved) or 1 (not saved; one
    line on stderr says why). The caller returns it after the event loop ends.
    """

    def __init__(self, window: QMainWindow, path: str | Path) -> None:
        super().__init__(window)
        self.window = window
        self.path = Path(path)
        self.exit_code: int | None = None
        self._start = time.monotonic()
        self._ready_since: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    def _image_shown(self) -> bool:
        session = getattr(self.window, "session", None)
        handle = self.window.windowHandle()
        return (session is not None and session.image is not None and handle is not None
                and not session.loading and handle.isExposed())  # pixels decoded, not "Loading…"

    def _poll(self) -> None:
        now = time.monotonic()
        if not self._image_shown():
            self._ready_since = None
            if now - self._start > GIVE_UP_S:
                self._finish(1, f"no image was shown within {GIVE_UP_S:.0f} s")
            return
        if self._ready_since is None:
            self._ready_since = now
        if now - self._ready_since < SETTLE_S:
            return
        screen = self.window.screen()
        pixmap = screen.grabWindow(self.window.winId()) if screen is not None else None
        if pixmap is None or pixmap.isNull():
            self._finish(1, "the display returned no pixels for the window")
        elif not pixmap.save(str(self.path), "PNG"):
            self._finish(1, f"{self.path}: cannot write the PNG")
        else:
            self._finish(0, None)

    def _finish(self, code: int, problem: str | None) -> None:
        self._timer.stop()
        self.exit_code = code
        if problem is not None:
            print(f"samdesk: error: screenshot: {problem}", file=sys.stderr)
        self.window.close()
        QCoreApplication.quit()
