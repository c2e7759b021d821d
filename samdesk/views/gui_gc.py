"""Python's cyclic garbage collector, run on the GUI thread only.

Automatic collection can start in whatever thread happens to allocate: the
inference worker or an export job. If it then frees a Qt widget caught in a
reference cycle, Qt deletes GUI objects from a non-GUI thread and the process
crashes. As pyqtgraph does, samdesk turns automatic collection off and
collects on a timer in the GUI thread instead, with the same generation
thresholds Python would have used.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadGarbageCollector(QObject):
    """Disables automatic ``gc`` and collects from a GUI-thread timer.

    Create it on the GUI thread once a QApplication exists and keep a
    reference; ``stop()`` turns automatic collection back on.
    """

    def __init__(self, interval_ms: int = 200, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int:
        """Collect the oldest generation whose count passed its threshold; returns
        the generation collected, or -1."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                return generation
        return -1

    def stop(self) -> None:
        self.timer.stop()
        gc.enable()
