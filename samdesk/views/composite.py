"""The picture the canvas shows: the image with its unselected layers flattened onto it.

Drawing 200 layer overlays on every repaint costs 200 blends of whatever part
of each overlay is on screen. :class:`FlatImage` instead keeps one RGB32 copy
of the image with the overlays of the unselected visible layers already
blended on, back to front, so a repaint draws one opaque picture whatever the
number of layers. The selected layers and the candidate stay separate items
above it (:class:`~samdesk.views.scene_items.LayerStack`).

The flattened copy is brought up to date incrementally: :func:`changed_boxes`
compares the stack drawn last with the new one and returns only the image
boxes whose pixels can differ (a layer added, removed or given a new overlay:
its old and new box; a layer moved in the z-order: its box). Each box is
restored from the untouched picture and the overlays overlapping it are
blended again, in order.

Coordinates: boxes are ``(x0, y0, x1, y1)`` in image pixels of the
full-resolution upright frame, ends exclusive. When the picture is a smaller
display proxy the flattened copy has the proxy's size and the overlays are
scaled onto it (smoothly), so layers in the proxy are as sharp as the proxy;
the selected layers and the candidate are always drawn at full resolution.
A scaled blend clipped to a box rounds a few pixels by a few levels (of 255)
differently from the same blend over the whole picture; at full resolution the
incremental result is exact.
"""

from __future__ import annotations

import bisect
import math

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from samdesk.views.overlays import Overlay

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in image pixels, ends exclusive."""

Flat = tuple[int, Overlay]
"""A flattened layer: its id and the overlay drawn for it."""

MAX_BOXES = 16
"""More changed boxes than this are flattened as one box around them all."""


def overlay_box(overlay: Overlay) -> Box:
    """The image box an overlay covers."""
    height, width = overlay.crop.mask.shape
    return (overlay.crop.x0, overlay.crop.y0, overlay.crop.x0 + width, overlay.crop.y0 + height)


def _in_order(positions: list[int]) -> set[int]:
    """Indices into ``positions`` of one longest strictly increasing subsequence."""
    tails: list[int] = []  # tails[k]: smallest end value of an increasing run of length k + 1
    tail_index: list[int] = []
    previous = [-1] * len(positions)
    for i, value in enumerate(positions):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[k], tail_index[k] = value, i
        previous[i] = tail_index[k - 1] if k > 0 else -1
    kept: set[int] = set()
    i = tail_index[-1] if tail_index else -1
    while i >= 0:
        kept.add(i)
        i = previous[i]
    return kept


def changed_boxes(old: list[Flat], new: list[Flat]) -> list[Box]:
    """Image boxes whose flattened pixels may differ between stack ``old`` and ``new``.

    Both are back to front. A layer only in one stack, or holding another
    overlay object, changes its old and new boxes. Of the layers kept with the
    same overlay, those outside a longest run still in the old relative order
    have moved in the z-order and change their box; elsewhere the layers
    covering a pixel, and their order, are the same.
    """
    old_overlays, new_overlays = dict(old), dict(new)
    boxes = [overlay_box(overlay) for layer_id, overlay in old
             if new_overlays.get(layer_id) is not overlay]
    boxes += [overlay_box(overlay) for layer_id, overlay in new
              if old_overlays.get(layer_id) is not overlay]
    kept = [(layer_id, overlay) for layer_id, overlay in new
            if old_overlays.get(layer_id) is overlay]
    position = {layer_id: i for i, (layer_id, _) in enumerate(old)}
    still = _in_order([position[layer_id] for layer_id, _ in kept])
    boxes += [overlay_box(overlay) for i, (_, overlay) in enumerate(kept) if i not in still]
    return boxes


def _overlaps(a: tuple[float, float, float, float], b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class FlatImage(QGraphicsItem):
    """The image with the unselected visible layers blended on, drawn as one item.

    Item coordinates are the picture's own pixels; the item's transform
    stretches a display proxy over the full-resolution image
    (:meth:`set_image_size`). ``flattened_px`` counts the picture pixels
    re-composited so far, which a single-layer change keeps to that layer's box.
    """

    def __init__(self) -> None:
        super().__init__()
        self._picture = QImage()  # the image as given, never drawn on
        self._flat = QImage()  # Format_RGB32, the picture's size: what is shown
        self._size: tuple[int, int] | None = None  # (width, height) of the full image
        self._stack: list[Flat] = []
        self._smooth = False
        self.flattened_px = 0
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    # ------------------------------------------------------------- content
    def set_image(self, picture: QImage | None) -> None:
        """Show ``picture`` (any QImage format) with no layers; ``None`` shows nothing."""
        self.prepareGeometryChange()
        self._picture = QImage() if picture is None else picture
        self._flat = (QImage() if picture is None
                      else picture.convertToFormat(QImage.Format.Format_RGB32))
        self._stack = []
        self._size = None if picture is None else (picture.width(), picture.height())
        self.setTransform(QTransform())
        self.update()

    def set_image_size(self, size: tuple[int, int]) -> None:
        """Stretch the picture over ``size`` = (width, height) image pixels."""
        if size == self._size:
            return
        self._size = size
        if not self._picture.isNull():
            self.setTransform(QTransform.fromScale(size[0] / self._picture.width(),
                                                   size[1] / self._picture.height()))
        if self._stack:  # the overlays land elsewhere on the picture now
            self._flatten([(0, 0, size[0], size[1])])

    def set_smooth(self, smooth: bool) -> None:
        """Filter the picture bilinearly when drawn (for zoom below 1:1)."""
        if smooth != self._smooth:
            self._smooth = smooth
            self.update()

    @property
    def picture_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the picture as given (a proxy's own size), or ``None``."""
        return None if self._picture.isNull() else (self._picture.width(), self._picture.height())

    def set_layers(self, stack: list[Flat]) -> None:
        """Blend ``stack`` (back to front) onto the picture, redoing only what changed."""
        boxes = changed_boxes(self._stack, stack)
        self._stack = list(stack)
        self._flatten(boxes)

    # ---------------------------------------------------------- flattening
    def _flatten(self, boxes: list[Box]) -> None:
        if not boxes or self._flat.isNull() or self._size is None:
            return
        width, height = self._size
        if len(boxes) > MAX_BOXES:
            boxes = [(min(b[0] for b in boxes), min(b[1] for b in boxes),
                      max(b[2] for b in boxes), max(b[3] for b in boxes))]
        sx, sy = self._flat.width() / width, self._flat.height() / height
        for x0, y0, x1, y1 in boxes:  # to picture pixels, rounded outwards
            rect = QRect(math.floor(x0 * sx), math.floor(y0 * sy), 0, 0)
            rect.setRight(math.ceil(x1 * sx) - 1)
            rect.setBottom(math.ceil(y1 * sy) - 1)
            rect = rect.intersected(self._flat.rect())
            if not rect.isEmpty():
                self._flatten_rect(rect, sx, sy)

    def _flatten_rect(self, rect: QRect, sx: float, sy: float) -> None:
        """Restore picture pixels ``rect`` and blend every overlay overlapping it."""
        area = (rect.x() / sx, rect.y() / sy, (rect.right() + 1) / sx, (rect.bottom() + 1) / sy)
        painter = QPainter(self._flat)
        try:
            painter.setClipRect(rect)  # device pixels; kept when the transform changes
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
            painter.drawImage(rect.topLeft(), self._picture, rect)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
            if (sx, sy) != (1.0, 1.0):
                painter.setTransform(QTransform.fromScale(sx, sy))
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            for _, overlay in self._stack:
                if _overlaps(area, overlay_box(overlay)):
                    painter.drawPixmap(QPointF(overlay.crop.x0, overlay.crop.y0), overlay.pixmap)
        finally:
            painter.end()
        self.flattened_px += rect.width() * rect.height()
        self.update(QRectF(rect))

    # -------------------------------------------------------------- drawing
    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt override)
        return QRectF(self._flat.rect())

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._flat.isNull():
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._smooth)
        painter.drawImage(QPointF(0, 0), self._flat)
