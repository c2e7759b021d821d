"""Pending boxes drawn on the canvas: dashed rectangles in their label's colour.

A pending box (:class:`samdesk.project_boxes.PendingBox`) waits for a
segmenter to make its mask; the canvas shows each as a dashed outline
(cosmetic pen: the same width on screen at any zoom) in the colour of its
label (:data:`UNLABELLED_COLOR` without one), with the label's name at its
top-left corner, under the prompt markers and above the masks. The items
take no mouse buttons, so clicks and drags go to the tools underneath.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
)

UNLABELLED_COLOR = "#ffffff"
"""The outline of a pending box without a label."""


@dataclass(frozen=True)
class PendingBoxView:
    """What the canvas draws for one pending box: XYXY image pixels, a colour, a caption."""

    id: int
    box: tuple[float, float, float, float]
    color: str = UNLABELLED_COLOR
    caption: str = ""


def _dash_pen(color: str) -> QPen:
    pen = QPen(QColor(color), 2.0, Qt.PenStyle.DashLine)
    pen.setCosmetic(True)  # width in screen pixels
    return pen


class PendingBoxLayer:
    """The pending-box items of a canvas scene, at ``z``."""

    def __init__(self, scene: QGraphicsScene, z: float) -> None:
        self._scene = scene
        self._z = z
        self._items: dict[int, tuple[QGraphicsRectItem, QGraphicsSimpleTextItem]] = {}
        self._shown: list[PendingBoxView] = []

    @property
    def boxes(self) -> list[PendingBoxView]:
        """The boxes drawn now, in the order given."""
        return list(self._shown)

    def items(self) -> list[QGraphicsRectItem]:
        """The outline items, by box id order given (for tests and screenshots)."""
        return [self._items[view.id][0] for view in self._shown]

    def set_boxes(self, boxes: list[PendingBoxView]) -> None:
        """Draw exactly ``boxes`` (an empty list clears them)."""
        if boxes == self._shown:
            return
        for rect, text in self._items.values():
            self._scene.removeItem(rect)
            self._scene.removeItem(text)
        self._items = {}
        for view in boxes:
            x0, y0, x1, y1 = (float(v) for v in view.box)
            rect = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
            rect.setPen(_dash_pen(view.color))
            rect.setBrush(QBrush(Qt.BrushStyle.NoBrush))
            rect.setZValue(self._z)
            rect.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            rect.setData(0, view.id)
            text = QGraphicsSimpleTextItem(view.caption)
            text.setBrush(QBrush(QColor(view.color)))
            text.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            text.setPos(x0, y0)
            text.setZValue(self._z)
            text.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            text.setVisible(bool(view.caption))
            self._scene.addItem(rect)
            self._scene.addItem(text)
            self._items[view.id] = (rect, text)
        self._shown = list(boxes)
