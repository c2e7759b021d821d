"""The status bar: model and device, embedding state, candidate score, cursor.

Permanent fields on the right; one-line messages on the left. A worker error
is shown once: the same message again within a short time is not repeated,
and nothing ever opens a modal box. While an embedding is computed the field
shows an estimated percentage, from how long the last encode took (the model
reports no progress within one forward pass), and the seconds so far; past
the estimate only the seconds so far and the last encode's time are shown,
never a percentage stuck near 100. Both are driven by a QTimer on the GUI
thread.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

EMBEDDING_TEXT = {
    "none": "no image",
    "loading": "waiting for the image file",
    "queued": "queued",
    "computing": "computing",
    "ready": "ready",
    "failed": "failed",
}
REPEAT_AFTER_S = 10.0


class StatusBar(QStatusBar):
    """Model · embedding · score · cursor, plus transient messages."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = QLabel("Model: none")
        self.embedding = QLabel("Embedding: no image")
        self.score = QLabel("")
        self.cursor = QLabel("")
        self.cursor.setMinimumWidth(220)
        for label in (self.score, self.cursor, self.embedding, self.model):
            self.addPermanentWidget(label)
        self._state = "none"
        self._since = 0.0
        self.last_encode_s: float | None = None  # how long the last encode took
        self._last_error: tuple[str, float] | None = None
        self.ticker = QTimer(self)
        self.ticker.setInterval(200)
        self.ticker.timeout.connect(self._tick)

    def set_model(self, name: str, device: str, loading: bool = False, runtime: str = "",
                  note: str = "") -> None:
        """``Model: NAME · DEVICE · RUNTIME`` (``runtime`` as shown, e.g. ``ONNX fp32``;
        empty for a model without one); ``note`` (why that runtime) as the tooltip."""
        shown = f"Model: {name} · {device}"
        self.model.setText(shown + (f" · {runtime}" if runtime else "")
                           + (" (loading…)" if loading else ""))
        self.model.setToolTip(note)

    def set_model_progress(self, done: int, total: int, what: str) -> None:
        """A model still loading: what it does (an ONNX export, the probe) and how far."""
        text = self.model.text().split(" (loading", 1)[0]
        step = f" {done}/{total}" if total else ""
        self.model.setText(f"{text} (loading: {what}{step})")

    def set_embedding(self, state: str) -> None:
        """``loading`` (the file), ``queued``, ``computing``, ``ready``, ``failed`` or ``none``."""
        if state != self._state:
            now = time.monotonic()
            if self._state == "computing" and state == "ready":
                self.last_encode_s = now - self._since
            self._since = now
        self._state = state
        if state in ("queued", "computing"):
            if not self.ticker.isActive():
                self.ticker.start()
        else:
            self.ticker.stop()
        self._tick()

    def _tick(self) -> None:
        text = EMBEDDING_TEXT.get(self._state, self._state)
        if self._state in ("queued", "computing"):
            elapsed = time.monotonic() - self._since
            last = self.last_encode_s if self._state == "computing" else None
            if last and elapsed < last:
                text += f" ~{int(100 * elapsed / last)}% {elapsed:.1f} s"
            elif last:
                text += f" {elapsed:.1f} s (the last encode took {last:.1f} s)"
            else:
                text += f" {elapsed:.1f} s"
        self.embedding.setText(f"Embedding: {text}")

    def set_score(self, score: float | None, index: int = 0, count: int = 0) -> None:
        if score is None:
            self.score.setText("")
        else:
            which = f" ({index + 1}/{count}, Tab)" if count > 1 else ""
            self.score.setText(f"Score {score:.2f}{which}")

    def set_cursor(self, x: float, y: float, under: str | None) -> None:
        text = f"x {int(x)}, y {int(y)}"
        self.cursor.setText(text + (f" · {under}" if under else ""))

    def error(self, message: str) -> None:
        """Show a worker error, unless the same one was just shown."""
        now = time.monotonic()
        if self._last_error is not None:
            last, when = self._last_error
            if last == message and now - when < REPEAT_AFTER_S:
                return
        self._last_error = (message, now)
        self.showMessage(f"Error: {message}", 10000)

    def note(self, message: str) -> None:
        self.showMessage(message, 5000)
