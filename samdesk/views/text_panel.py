"""The text prompt panel: a phrase, two thresholds, and what the detector found.

"Find" asks the session to run the detector (GroundingDINO) on the open
image with the phrase; each object found becomes a candidate mask, listed here
with its phrase and score and ticked. "Accept all" turns every candidate into
a mask layer labelled by its phrase; "Accept ticked" keeps only the ticked
ones. Clicking a row shows that candidate on the canvas. Enter in the phrase
box runs Find (the window's Enter, accept, does not take it). The panel only
emits requests; the session does the work, and :meth:`TextPanel.set_state`
replaces "Looking for…" with the outcome.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from samdesk.inference.engines import packages

DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25
HINT = "Type what to find; separate names with '.'"


def _threshold(value: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 1.0)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setValue(value)
    return spin


class PhraseEdit(QLineEdit):
    """A line edit that keeps Return and Enter for itself (window shortcuts use them)."""

    def event(self, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier):
            event.accept()
            return True
        return super().event(event)


class TextPanel(QDockWidget):
    """Phrase + box threshold + text threshold + find; accept all or the ticked ones."""

    run_requested = Signal(str, float, float)  # phrase, box threshold, text threshold
    accept_requested = Signal(list)  # indices of the candidates to keep
    candidate_shown = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Text prompt", parent)
        self.setObjectName("text_panel")
        self.phrase = PhraseEdit()
        self.phrase.setPlaceholderText("e.g. dog . red car")
        self.box_threshold = _threshold(DEFAULT_BOX_THRESHOLD)
        self.text_threshold = _threshold(DEFAULT_TEXT_THRESHOLD)
        self.run_button = QPushButton("Find")
        self.results = QListWidget()
        # without the text extra the panel says so before anything is typed
        self.hint = packages.missing("groundingdino") or HINT
        self.state = QLabel(self.hint)
        self.state.setWordWrap(True)
        self.accept_all = QPushButton("Accept all")
        self.accept_ticked = QPushButton("Accept ticked")

        form = QFormLayout()
        form.addRow("Phrase", self.phrase)
        form.addRow("Box threshold", self.box_threshold)
        form.addRow("Text threshold", self.text_threshold)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_all)
        buttons.addWidget(self.accept_ticked)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.state)
        layout.addWidget(self.results, 1)
        layout.addLayout(buttons)
        self.setWidget(body)

        self.run_button.clicked.connect(self._run)
        self.phrase.returnPressed.connect(self._run)
        self.accept_all.clicked.connect(
            lambda: self.accept_requested.emit(list(range(self.results.count()))))
        self.accept_ticked.clicked.connect(lambda: self.accept_requested.emit(self.ticked()))
        self.results.currentRowChanged.connect(self._shown)
        self.set_detections([])

    def set_detections(self, found: list[tuple[str, float]]) -> None:
        """List the candidates: ``(phrase, detector score)`` each, all ticked."""
        self.results.clear()
        for phrase, score in found:
            item = QListWidgetItem(f"{phrase}  {score:.2f}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.results.addItem(item)
        self.accept_all.setEnabled(bool(found))
        self.accept_ticked.setEnabled(bool(found))

    def set_state(self, text: str | None = None) -> None:
        """One line under Find: the outcome of the last search (``None``: the hint, or
        the line saying the text detector is not installed)."""
        self.state.setText(text or self.hint)

    def ticked(self) -> list[int]:
        return [i for i in range(self.results.count())
                if self.results.item(i).checkState() == Qt.CheckState.Checked]

    def _run(self) -> None:
        phrase = self.phrase.text().strip()
        if not phrase:
            self.set_state("Type a phrase first.")
            return
        self.set_state(f"Looking for {phrase!r}…")
        self.run_requested.emit(phrase, self.box_threshold.value(), self.text_threshold.value())

    def _shown(self, row: int) -> None:
        if row >= 0:
            self.candidate_shown.emit(row)
