"""The graphics items of the canvas scene, apart from the view's own handling.

:class:`LayerStack` holds the image with the unselected layers flattened onto
it (:mod:`samdesk.views.composite`), one ``QGraphicsPixmapItem`` per selected
layer and the live candidate, fed from the
:class:`~samdesk.views.overlays.OverlayCache`. :class:`MarkerLayer` holds the
vector decorations drawn above the masks: prompt dots and box, the box tool's
rubber band, the brush cursor and the preview of a brush stroke in progress.
Scene coordinates are continuous image pixels of the full-resolution
upright frame (pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
)

from samdesk.views.composite import FlatImage
from samdesk.views.overlays import (
    CANDIDATE_STYLE,
    LayerView,
    Mask,
    Overlay,
    OverlayCache,
    build_overlay,
)

_Shape = TypeVar("_Shape", QGraphicsRectItem, QGraphicsEllipseItem)


def _inert(item: QGraphicsItem, z: float) -> QGraphicsItem:
    item.setZValue(z)
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    return item


def check_mask_size(mask: Mask, image_size: tuple[int, int] | None, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` when the mask is not ``image_size`` (width, height)."""
    if image_size is None:
        return
    shape = tuple(mask.get("size", ())) if isinstance(mask, dict) else tuple(np.shape(mask))
    width, height = image_size
    if shape != (height, width):
        shown = f"{shape[1]}x{shape[0]}" if len(shape) == 2 else f"of shape {shape}"
        raise ValueError(f"{what} mask is {shown} but the image is {width}x{height}")


class LayerStack:
    """The image with its mask layers, and the candidate (at ``candidate_z``).

    The unselected visible layers are blended into :attr:`picture` (a
    :class:`~samdesk.views.composite.FlatImage` at ``picture_z``), so a repaint
    draws one picture however many layers there are. Each selected layer is
    its own pixmap item above the picture (from ``z`` up, in list order) and
    the candidate is above those: the layer being edited is never hidden by
    the layers in front of it. Overlays come from :attr:`cache`, built once
    per mask, colour and selected state.
    """

    def __init__(self, scene: QGraphicsScene, picture_z: float, z: float,
                 candidate_z: float) -> None:
        self._scene = scene
        self._z = z
        self.cache = OverlayCache()
        self.picture = FlatImage()
        self.picture.setZValue(picture_z)
        scene.addItem(self.picture)
        self._layers: list[LayerView] = []
        self._overlays: dict[int, Overlay] = {}  # visible layers with a non-empty mask
        self._selected: dict[int, tuple[QGraphicsPixmapItem, Overlay]] = {}
        self.candidate = _inert(QGraphicsPixmapItem(), candidate_z)
        self.candidate.setVisible(False)
        scene.addItem(self.candidate)

    def set_image(self, picture: QImage | None) -> None:
        """Show ``picture`` with no layers (see :meth:`FlatImage.set_image`)."""
        self.picture.set_image(picture)
        self.set_layers([], None)

    def set_layers(self, layers: list[LayerView], image_size: tuple[int, int] | None) -> None:
        """Show ``layers`` back to front; only changed visible layers are rebuilt."""
        ids = [layer.id for layer in layers]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"layer id {duplicate} appears more than once")
        for layer in layers:
            check_mask_size(layer.mask, image_size, f"layer {layer.id}")
        self.cache.retain(set(ids))
        self._overlays = {}
        flat: list[tuple[int, Overlay]] = []
        selected: list[tuple[int, Overlay]] = []
        for layer in layers:
            overlay = self.cache.get(layer) if layer.visible else None
            if overlay is None:
                continue
            self._overlays[layer.id] = overlay
            (selected if layer.selected else flat).append((layer.id, overlay))
        self.picture.set_layers(flat)
        self._show_selected(selected)
        self._layers = list(layers)

    def _show_selected(self, selected: list[tuple[int, Overlay]]) -> None:
        """One pixmap item per selected layer, stacked in list order above the picture."""
        ids = {layer_id for layer_id, _ in selected}
        for stale in set(self._selected) - ids:
            self._scene.removeItem(self._selected.pop(stale)[0])
        for index, (layer_id, overlay) in enumerate(selected):
            item, shown = self._selected.get(layer_id, (None, None))
            if item is None:
                item = _inert(QGraphicsPixmapItem(), self._z)
                self._scene.addItem(item)
            if shown is not overlay:
                _show(item, overlay)
            self._selected[layer_id] = (item, overlay)
            item.setZValue(self._z + index)

    def set_candidate(self, mask: Mask | None, color: str,
                      image_size: tuple[int, int] | None, preview: bool = False) -> None:
        """Show ``mask`` (rebuilt on every call, over its box only) or hide the candidate.

        A ``preview`` mask may be smaller than the image: it is stretched over
        the whole ``image_size`` ``(width, height)``.
        """
        overlay = None
        scale = (1.0, 1.0)
        if mask is not None:
            if preview and image_size is not None:
                height, width = np.shape(mask)[-2:]
                scale = (image_size[0] / width, image_size[1] / height)
            else:
                check_mask_size(mask, image_size, "candidate")
            overlay = build_overlay(mask, color, CANDIDATE_STYLE)
        _show(self.candidate, overlay, scale)
        self.candidate.setVisible(overlay is not None)

    def layer_at(self, x: float, y: float) -> int | None:
        """Id of the front-most visible layer holding pixel ``(floor(x), floor(y))``."""
        for layer in reversed(self._layers):
            overlay = self._overlays.get(layer.id)
            if overlay is not None and overlay.crop.contains(x, y):
                return layer.id
        return None


def _show(item: QGraphicsPixmapItem, overlay: Overlay | None,
          scale: tuple[float, float] = (1.0, 1.0)) -> None:
    """Put ``overlay`` on ``item``, its mask pixels ``scale`` ``(x, y)`` image pixels each."""
    if overlay is None:
        item.setPixmap(QPixmap())
        return
    item.setPixmap(overlay.pixmap)
    item.setTransform(QTransform.fromScale(*scale))
    item.setPos(overlay.crop.x0 * scale[0], overlay.crop.y0 * scale[1])


POSITIVE_COLOR, NEGATIVE_COLOR, BOX_COLOR = "#2ecc40", "#ff4136", "#ffd400"
MARKER_RADIUS = 5.0  # screen pixels, whatever the zoom


def _dashed_pen(color: str, width: float = 2.0) -> QPen:
    pen = QPen(QColor(color), width, Qt.PenStyle.DashLine)
    pen.setCosmetic(True)  # width in screen pixels
    return pen


class MarkerLayer:
    """The vector decorations of a canvas scene: prompt dots, prompt box,
    rubber band and brush cursor, all stacked from ``z`` up.

    Dots keep their screen size when zooming (``ItemIgnoresTransformations``);
    boxes are drawn with cosmetic dashed pens; the brush cursor is a circle of
    the brush diameter in image pixels.
    """

    def __init__(self, scene: QGraphicsScene, z: float) -> None:
        self._scene = scene
        self._z = z
        self._dots: list[QGraphicsEllipseItem] = []
        self.box = self._add(QGraphicsRectItem(), _dashed_pen(BOX_COLOR),
                             QBrush(Qt.BrushStyle.NoBrush), z)
        self.rubber_band = self._add(QGraphicsRectItem(), _dashed_pen("#ffffff", 1.5),
                                     QBrush(QColor(255, 255, 255, 40)), z + 1)
        pen = QPen(QColor("#ffffff"), 1.5)
        pen.setCosmetic(True)
        self.brush = self._add(QGraphicsEllipseItem(), pen, QBrush(Qt.BrushStyle.NoBrush), z + 3)
        self.stroke = _inert(QGraphicsPathItem(), z - 1)
        scene.addItem(self.stroke)

    def _add(self, item: _Shape, pen: QPen, brush: QBrush, z: float) -> _Shape:
        item.setPen(pen)
        item.setBrush(brush)
        _inert(item, z).setVisible(False)
        self._scene.addItem(item)
        return item

    @property
    def dots(self) -> list[QGraphicsEllipseItem]:
        return list(self._dots)

    def set_prompts(self, points: list[tuple[float, float, bool]],
                    box: tuple[float, float, float, float] | None) -> None:
        """Replace the prompt dots ``(x, y, positive)`` and the prompt box (XYXY)."""
        for dot in self._dots:
            self._scene.removeItem(dot)
        self._dots = []
        r = MARKER_RADIUS
        for x, y, positive in points:
            dot = QGraphicsEllipseItem(-r, -r, 2 * r, 2 * r)
            dot.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            dot.setBrush(QColor(POSITIVE_COLOR if positive else NEGATIVE_COLOR))
            dot.setPen(QPen(QColor("#ffffff"), 1.5))
            dot.setPos(float(x), float(y))
            self._scene.addItem(_inert(dot, self._z + 2))
            self._dots.append(dot)
        self._set_rect(self.box, box)

    def set_rubber_band(self, box: tuple[float, float, float, float] | None) -> None:
        self._set_rect(self.rubber_band, box)

    @staticmethod
    def _set_rect(item: QGraphicsRectItem, box: tuple[float, float, float, float] | None) -> None:
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            item.setRect(QRectF(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
        item.setVisible(box is not None)

    def set_stroke(self, stroke: tuple[list[tuple[float, float]], int, bool] | None) -> None:
        """Preview a stroke in progress: ``(points, diameter, erase)`` in image pixels."""
        if stroke is None:
            self.stroke.setPath(QPainterPath())
            return
        points, size, erase = stroke
        path = QPainterPath(QPointF(*points[0]))
        for x, y in points[1:]:
            path.lineTo(x, y)
        if len(points) == 1:
            path.lineTo(points[0][0] + 1e-3, points[0][1])  # a single dab
        color = QColor(255, 255, 255, 110) if erase else QColor(0, 229, 255, 110)
        self.stroke.setPen(QPen(QBrush(color), size, Qt.PenStyle.SolidLine,
                                Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        self.stroke.setPath(path)

    def set_brush_size(self, size: float) -> None:
        r = size / 2
        self.brush.setRect(QRectF(-r, -r, 2 * r, 2 * r))

    def move_brush(self, pos: QPointF, visible: bool) -> None:
        self.brush.setPos(pos)
        self.brush.setVisible(visible)

    def show_brush(self, visible: bool) -> None:
        self.brush.setVisible(visible)
