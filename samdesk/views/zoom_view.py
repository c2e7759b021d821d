"""The canvas's view of one image: zoom, pan, fit and the scene rectangle.

:class:`ZoomView` is the part of :class:`samdesk.views.canvas.Canvas` that
knows nothing of layers, prompts or tools. Scene coordinates are continuous
image pixels of the upright full-resolution frame (see :mod:`samdesk.views.canvas`);
the scene reaches one image size past every edge so the image can be panned
off-centre and the wheel can zoom about a point near its edge.

Interface::

    zoom_changed(scale)             signal: screen pixels per image pixel
    image_size -> (width, height) | None
    zoom (property); fit(); zoom_1to1(); zoom_by(factor, anchor_scene_pos=None)
    shown_size() -> (h, w) | None   screen pixels the image is drawn at
    render_to_image() -> QImage     paint the current view synchronously

The wheel zooms about the cursor (:data:`WHEEL_STEP` per notch, clamped to
:data:`MIN_ZOOM` .. :data:`MAX_ZOOM`). A fitted view stays fitted while it
resizes, until the person zooms or pans (:meth:`ZoomView.pan_by`).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QResizeEvent, QTransform, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

__all__ = ["MAX_ZOOM", "MIN_ZOOM", "WHEEL_STEP", "ZoomView"]

MIN_ZOOM, MAX_ZOOM = 0.01, 64.0
WHEEL_STEP = 1.2  # zoom factor per wheel notch (120 eighths of a degree)


class ZoomView(QGraphicsView):
    """QGraphicsView over an image-sized scene that zooms, pans and fits.

    Subclasses set ``_image_size`` (``(width, height)`` in full-resolution
    pixels, or ``None``) and call :meth:`_update_scene_rect` after changing it.
    """

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor("#2b2b2b"))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)  # cursor_moved and the brush circle
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._image_size: tuple[int, int] | None = None  # (width, height), full resolution
        self._auto_fit = True

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the full-resolution image, or ``None``."""
        return self._image_size

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return float(self.transform().m11())

    def shown_size(self) -> tuple[int, int] | None:
        """``(h, w)`` screen pixels the whole image is drawn at now (at most its own size)."""
        if self._image_size is None:
            return None
        scale = abs(self.transform().m11()) * self.devicePixelRatioF()
        width, height = self._image_size
        return (max(1, min(height, round(height * scale))),
                max(1, min(width, round(width * scale))))

    def _image_rect(self) -> QRectF:
        if self._image_size is None:
            return QRectF(0, 0, 1, 1)
        return QRectF(0, 0, *self._image_size)

    def _update_scene_rect(self) -> None:
        # A margin of one image size on every side lets the image be panned
        # off-centre and the wheel zoom about a point near its edge.
        rect = self._image_rect()
        margin = max(rect.width(), rect.height())
        self.setSceneRect(rect.adjusted(-margin, -margin, margin, margin))

    def fit(self) -> None:
        """Zoom so the whole image shows, centred; it stays fitted while the view resizes."""
        if self._image_size is not None:
            self.fitInView(self._image_rect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._auto_fit = True
        self._zoomed()

    def zoom_1to1(self) -> None:
        """One image pixel per screen pixel, about the view's centre."""
        centre = self.mapToScene(self.viewport().rect().center())
        self.setTransform(QTransform())
        self.centerOn(centre)
        self._auto_fit = False
        self._zoomed()

    def zoom_by(self, factor: float, anchor_scene_pos: QPointF | None = None) -> None:
        """Scale by ``factor`` keeping ``anchor_scene_pos`` (default: view centre) in place."""
        current = self.zoom
        target = min(max(current * factor, MIN_ZOOM), MAX_ZOOM)
        if target == current or current <= 0:
            return
        anchor = (self.mapToScene(self.viewport().rect().center())
                  if anchor_scene_pos is None else QPointF(anchor_scene_pos))
        before = self.mapFromScene(anchor)
        self.scale(target / current, target / current)
        after = self.mapFromScene(anchor)
        self._scroll_by(before.x() - after.x(), before.y() - after.y())
        self._auto_fit = False
        self._zoomed()

    def pan_by(self, dx: int, dy: int) -> None:
        """Move the picture by (dx, dy) screen pixels; the view is no longer fitted."""
        self._scroll_by(dx, dy)
        self._auto_fit = False

    def _zoomed(self) -> None:
        """Called after every change of scale; subclasses extend it."""
        self.zoom_changed.emit(self.zoom)

    def _scroll_by(self, dx: int, dy: int) -> None:
        """Move the picture by (dx, dy) screen pixels."""
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() - dx)
        vbar.setValue(vbar.value() - dy)

    def _image_pos(self, pos: QPointF) -> QPointF:
        """Scene (image pixel) position of viewport position ``pos``."""
        return self.mapToScene(pos.toPoint())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if self._auto_fit:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta:
            self.zoom_by(WHEEL_STEP ** (delta / 120.0), self._image_pos(event.position()))
        event.accept()

    def render_to_image(self) -> QImage:
        """Paint what the view shows into a new ARGB32 image, synchronously.

        The same drawing a repaint does (image, layers, candidate, markers),
        so a benchmark can time repaints without an event loop.
        """
        size = self.viewport().size()
        image = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        try:
            self.render(painter, QRectF(image.rect()), self.viewport().rect())
        finally:
            painter.end()
        return image
