"""The timeline dock: one cell per frame for the selected track.

A cell is filled in the track's label colour where the track has a mask on
that frame: solid with a white dot for a mask a person made or edited (a
conditioning frame of the next propagation), shaded by the model's
object score for a propagated one (a faint cell is where tracking may have
drifted; the score is written in the cell when it is wide enough), crossed
for a frame a person marked "not here", dark where there is no mask. The
open frame is outlined and marked underneath in the highlight colour.
Clicking a cell emits :attr:`TimelineDock.frame_clicked` with its frame
index; the dock never touches the project.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QDockWidget, QLabel, QScrollArea, QVBoxLayout, QWidget

CellState = Literal["empty", "propagated", "edited", "absent"]
MIN_CELL_W, MAX_CELL_W, CELL_H = 6, 48, 30
SCORE_TEXT_W = 30  # cells at least this wide show the object score
MARK_H = 6  # the open frame's mark under the cells
EMPTY_COLOR, ABSENT_COLOR, CURRENT_COLOR = "#2b2b2b", "#5a2b2b", "#2a82da"
STATE_TEXT = {"empty": "no mask", "propagated": "propagated", "edited": "made by a person",
              "absent": "marked absent (not on this frame)"}


@dataclass(frozen=True)
class TimelineCell:
    """One frame of a track: its image id, what the track has there, and for a
    propagated mask the model's object score logit (None otherwise)."""

    image_id: int
    state: CellState = "empty"
    score: float | None = None


def presence(score: float | None) -> float:
    """The object score logit as a probability in [0, 1] (1 when there is none)."""
    if score is None:
        return 1.0
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, score))))


class TimelineStrip(QWidget):
    """The painted row of cells; cells stretch to the width, down to MIN_CELL_W."""

    frame_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cells: list[TimelineCell] = []
        self.color = "#b0b0b0"
        self.current: int | None = None
        self.setMinimumHeight(CELL_H + MARK_H + 6)
        self.setMouseTracking(True)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(max(200, len(self.cells) * MIN_CELL_W), CELL_H + MARK_H + 6)

    def set_cells(self, cells: list[TimelineCell], color: str, current: int | None) -> None:
        self.cells, self.color, self.current = list(cells), color, current
        self.setMinimumWidth(len(self.cells) * MIN_CELL_W)
        self.updateGeometry()
        self.update()

    def set_cell(self, index: int, cell: TimelineCell) -> None:
        if 0 <= index < len(self.cells):
            self.cells[index] = cell
            self.update(self.cell_rect(index).adjusted(-2, -2, 2, 2))

    def set_current(self, index: int | None) -> None:
        self.current = index
        self.update()

    def cell_width(self) -> float:
        return max(MIN_CELL_W, min(MAX_CELL_W, self.width() / max(1, len(self.cells))))

    def cell_rect(self, index: int) -> QRect:
        """Where cell ``index`` is drawn, in this widget's pixels."""
        w = self.cell_width()
        left = round(index * w)
        return QRect(left, 2, max(1, round((index + 1) * w) - left - 1), CELL_H)

    def index_at(self, x: float) -> int | None:
        index = int(x // self.cell_width())
        return index if 0 <= index < len(self.cells) else None

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        try:
            base = QColor(self.color)
            for index, cell in enumerate(self.cells):
                rect = self.cell_rect(index)
                if not rect.intersects(event.rect()):
                    continue
                self._paint_cell(painter, rect, cell, base)
            if self.current is not None and 0 <= self.current < len(self.cells):
                rect = self.cell_rect(self.current)
                painter.setPen(QPen(QColor(CURRENT_COLOR), 2))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(rect.adjusted(1, 0, -1, 0))
                painter.fillRect(QRect(rect.left(), rect.bottom() + 3, rect.width(), MARK_H),
                                 QColor(CURRENT_COLOR))
        finally:
            painter.end()

    def _paint_cell(self, painter: QPainter, rect: QRect, cell: TimelineCell,
                    base: QColor) -> None:
        if cell.state in ("propagated", "edited"):
            fill = QColor(base)
            if cell.state == "propagated":  # shade by the object score: faint = unsure
                fill.setAlphaF(0.25 + 0.75 * presence(cell.score))
            painter.fillRect(rect, QColor(EMPTY_COLOR))
            painter.fillRect(rect, fill)
            if cell.state == "edited":  # a key frame: a white dot
                radius = max(2, min(5, rect.width() // 2 - 1))
                painter.setPen(QPen(QColor("#202020"), 1))
                painter.setBrush(QColor("#ffffff"))
                painter.drawEllipse(QPoint(rect.center().x(), rect.center().y()), radius, radius)
            elif cell.score is not None and rect.width() >= SCORE_TEXT_W:
                painter.setPen(QColor("#000000" if base.lightnessF() > 0.5 else "#ffffff"))
                painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{cell.score:.1f}")
        elif cell.state == "absent":
            painter.fillRect(rect, QColor(ABSENT_COLOR))
            painter.setPen(QPen(QColor("#d0d0d0"), 1))
            painter.drawLine(rect.topLeft(), rect.bottomRight())
            painter.drawLine(rect.bottomLeft(), rect.topRight())
        else:
            painter.fillRect(rect, QColor(EMPTY_COLOR))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        index = self.index_at(event.position().x())
        if index is not None and event.button() == Qt.MouseButton.LeftButton:
            self.frame_clicked.emit(index)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        index = self.index_at(event.position().x())
        self.setToolTip("" if index is None else cell_tip(index, self.cells[index]))
        super().mouseMoveEvent(event)


def cell_tip(index: int, cell: TimelineCell) -> str:
    """What a cell's tooltip says: frame number (1-based), state and score."""
    text = f"frame {index + 1}: {STATE_TEXT[cell.state]}"
    if cell.state == "propagated" and cell.score is not None:
        text += f", object score {cell.score:.2f} ({100 * presence(cell.score):.0f}% present)"
    return text


class TimelineDock(QDockWidget):
    """The selected track across the frames; a click on a cell goes to that frame."""

    frame_clicked = Signal(int)  # frame index

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Timeline", parent)
        self.setObjectName("timeline_dock")
        self.title = QLabel()
        self.strip = TimelineStrip()
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.strip)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setFixedHeight(CELL_H + MARK_H + 26)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.scroll)
        body.setMaximumHeight(CELL_H + MARK_H + 60)  # the dock stays a strip
        self.setWidget(body)
        self.strip.frame_clicked.connect(self.frame_clicked)
        self.show_track(None, "", [], "#b0b0b0", None)

    def show_track(self, track_id: int | None, name: str, cells: list[TimelineCell],
                   color: str, current: int | None) -> None:
        """Show ``cells`` (one per frame, in frame order) of track ``track_id``."""
        if track_id is None:
            self.title.setText("No track selected: select a tracked mask, or make one "
                               "(Track > New track from selected layer)")
            self.strip.set_cells([], color, None)
            return
        made = sum(c.state == "edited" for c in cells)
        shown = sum(c.state in ("edited", "propagated") for c in cells)
        self.title.setText(f"Track {track_id} · {name}: a mask on {shown} of {len(cells)} "
                           f"frames ({made} made by a person)")
        self.strip.set_cells(cells, color, current)
        self.reveal(current)

    def set_cell(self, index: int, cell: TimelineCell) -> None:
        self.strip.set_cell(index, cell)

    def set_current(self, index: int | None) -> None:
        self.strip.set_current(index)
        self.reveal(index)

    def reveal(self, index: int | None) -> None:
        """Scroll so cell ``index`` is in view."""
        if index is not None and 0 <= index < len(self.strip.cells):
            rect = self.strip.cell_rect(index)
            self.scroll.ensureVisible(rect.center().x(), rect.center().y(), 40, 0)

    def cells(self) -> list[TimelineCell]:
        return list(self.strip.cells)
