"""The image view where prompts are made and mask layers are drawn.

Coordinates: every position the canvas takes or emits is in continuous image
pixels of the upright full-resolution frame: pixel ``(col, row)`` covers
``[col, col + 1) x [row, row + 1)``, so ``floor(x)`` is the column. Scene
coordinates are these image pixels, also when the picture shown is a smaller
display proxy (:meth:`Canvas.set_image_size`). Boxes are ``(x0, y0, x1, y1)``.

Interface (what the main window uses)::

    Tool: POINT, BOX, BRUSH, ERASER, TEXT, PAN   (TEXT behaves like PAN here)
    LayerView(id, mask, color, visible=True, selected=False)  mask: bool (H, W) or RLE

    signals
      point_added(x, y, positive)   left click = positive; right or shift+left = negative
      box_drawn(x0, y0, x1, y1)     after a BOX drag; x0 < x1, y0 < y1, clipped to the image
      brush_stroke(mask, erase)     bool (H, W) of one stroke, on mouse release
      layer_clicked(id)             front-most visible layer under a PAN/TEXT click or a
                                    ctrl+click in any tool (nothing when no layer is hit)
      cursor_moved(x, y)            image position under the mouse
      zoom_changed(scale)           screen pixels per image pixel          (extension)
      brush_size_changed(px)        after [ / ] or set_brush_size          (extension)
      background_clicked(x, y)      a layer-picking click that hit no layer (extension;
                                    e.g. to clear the selection)

    set_image(rgb | None)           (H, W, 3) or (H, W) uint8; clears layers, candidate and
                                    prompt markers, and fits the view. Call it first.
    set_image_size(width, height)   full-resolution size when rgb was a display proxy
    set_layers(layers)              back to front; overlays are cached per layer id, the
                                    unselected ones flattened onto the image, the
                                    selected ones drawn above all the others
    set_candidate(mask | None, color="#00e5ff", preview=False)   live candidate, above
                                    the layers (a preview: smaller, stretched over the image)
    shown_size() -> (h, w) | None   screen pixels the image is drawn at
    set_prompt_markers(points, box)  points [(x, y, positive)], box (x0, y0, x1, y1) | None
    set_pending_boxes(boxes)        [PendingBoxView]: dashed boxes in their label's colour
                                    (views.pending_items); pending_boxes -> what is drawn
    set_message(text | None)        a line drawn over the canvas ("Loading…", a file's error);
                                    message_text() -> str ("" when none)
    set_tool(tool) / tool; set_brush_size(px) / brush_size ([ and ] scale it by 20%)
    fit(); zoom_1to1(); zoom_by(factor, anchor_scene_pos=None); zoom (property)
                                    (these, shown_size, image_size, zoom_changed and
                                    render_to_image come from views.zoom_view.ZoomView)
    layer_at(x, y) -> id | None     front-most visible layer holding the pixel
    image_size -> (width, height) | None; overlay_cache (its ``rebuilds`` counter);
    flat_image (its ``flattened_px`` counter: picture pixels re-composited)
    render_to_image() -> QImage     paint the current view synchronously (benchmarks)

Mouse: the wheel zooms about the cursor; the middle button, space + left drag,
and left drag in PAN/TEXT pan. See :mod:`samdesk.views.tools` for what each
tool does with a click or a drag. Keys handled here: space (pan), ``[`` / ``]``
(brush size), Esc while dragging (drop the gesture); every other key goes on
to the parent window (Tab, Enter, Esc, number keys are the window's).

The canvas never runs a model: it only emits prompts and draws what it is given.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPoint, Qt, Signal
from PySide6.QtGui import QEnterEvent, QFocusEvent, QKeyEvent, QMouseEvent, QResizeEvent
from PySide6.QtWidgets import QApplication, QLabel, QWidget

from samdesk.views.composite import FlatImage
from samdesk.views.overlays import LayerView, Mask, OverlayCache
from samdesk.views.pending_items import PendingBoxLayer, PendingBoxView
from samdesk.views.qtutil import rgb_to_qimage
from samdesk.views.scene_items import LayerStack, MarkerLayer
from samdesk.views.tools import (
    AddPoint,
    Button,
    Drag,
    DrawBox,
    Modifiers,
    PaintStroke,
    PickLayer,
    Tool,
    ToolController,
)
from samdesk.views.zoom_view import ZoomView

__all__ = ["Canvas", "LayerView", "Tool"]

BRUSH_STEP = 1.2  # [ and ] divide or multiply the brush size by this
BRUSH_RANGE = (1, 1000)
PICTURE_Z, LAYER_Z, CANDIDATE_Z = 0.0, 1.0, 1.0e6  # selected layers from LAYER_Z up

_BUTTONS = {Qt.MouseButton.LeftButton: Button.LEFT, Qt.MouseButton.RightButton: Button.RIGHT,
            Qt.MouseButton.MiddleButton: Button.MIDDLE}
_TOOL_CURSORS = {Tool.POINT: Qt.CursorShape.CrossCursor, Tool.BOX: Qt.CursorShape.CrossCursor,
                 Tool.BRUSH: Qt.CursorShape.CrossCursor, Tool.ERASER: Qt.CursorShape.CrossCursor,
                 Tool.TEXT: Qt.CursorShape.OpenHandCursor, Tool.PAN: Qt.CursorShape.OpenHandCursor}


class Canvas(ZoomView):
    """The zoomable view (:class:`ZoomView`) of one image with its mask layers,
    candidate and prompts."""

    point_added = Signal(float, float, bool)
    box_drawn = Signal(float, float, float, float)
    brush_stroke = Signal(object, bool)
    layer_clicked = Signal(int)
    cursor_moved = Signal(float, float)
    brush_size_changed = Signal(int)
    background_clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stack = LayerStack(self.scene(), PICTURE_Z, LAYER_Z, CANDIDATE_Z)
        self._marks = MarkerLayer(self.scene(), CANDIDATE_Z + 2)
        self._pending = PendingBoxLayer(self.scene(), CANDIDATE_Z + 1)
        self._controller = ToolController()
        self._press_pos = QPoint()
        self._drag_button = Qt.MouseButton.NoButton
        self._pan_last = QPoint()
        self._space = False
        self._message = QLabel(self.viewport())
        self._message.setObjectName("canvas_message")
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setStyleSheet("QLabel { color: #f0f0f0; background: rgba(0, 0, 0, 150);"
                                    " padding: 12px; border-radius: 6px; }")
        self._message.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._message.hide()
        self.set_tool(Tool.POINT)
        self._update_scene_rect()

    # ----------------------------------------------------------------- content
    def set_image(self, rgb: np.ndarray | None) -> None:
        """Show ``rgb`` (uint8 (H, W, 3) or gray (H, W)); ``None`` clears the canvas.

        Layers, candidate and prompt markers are cleared and the view is fitted.
        """
        self.set_candidate(None)
        self.set_prompt_markers([], None)
        self.set_pending_boxes([])
        self._controller.cancel()
        if rgb is None:
            self._stack.set_image(None)
            self._set_size(None)
        else:
            array = np.asarray(rgb)
            self._stack.set_image(rgb_to_qimage(array))
            self._set_size((int(array.shape[1]), int(array.shape[0])))
        self.fit()

    def set_image_size(self, width: int, height: int) -> None:
        """Stretch the shown picture over ``width`` x ``height`` image pixels.

        For a display proxy of a huge image: the scene, the layers and every
        emitted coordinate use the full-resolution pixels.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if self._image_size != (width, height):
            self.set_layers([])
            self.set_candidate(None)
        self._set_size((width, height))
        self.fit()

    def _set_size(self, size: tuple[int, int] | None) -> None:
        self._image_size = size
        self._controller.image_size = None if size is None else (size[1], size[0])
        if size is not None:
            self._stack.picture.set_image_size(size)
        self._update_scene_rect()

    def set_layers(self, layers: list[LayerView]) -> None:
        """Draw ``layers`` back to front; overlays are rebuilt only for changed layers.

        Raises ``ValueError`` naming the layer when a mask's size is not the image's.
        """
        self._stack.set_layers(layers, self._image_size)

    @property
    def overlay_cache(self) -> OverlayCache:
        """The per-layer overlay cache (its ``rebuilds`` counter is observable)."""
        return self._stack.cache

    @property
    def flat_image(self) -> FlatImage:
        """The image with the unselected layers blended on (``flattened_px`` is observable)."""
        return self._stack.picture

    def set_candidate(self, mask: Mask | None, color: str = "#00e5ff",
                      preview: bool = False) -> None:
        """Show the live candidate mask above the layers, outlined; ``None`` hides it.

        A ``preview`` mask (see :meth:`shown_size`) is stretched over the image.
        """
        self._stack.set_candidate(mask, color, self._image_size, preview)

    def set_prompt_markers(self, points: list[tuple[float, float, bool]],
                           box: tuple[float, float, float, float] | None) -> None:
        """Green (positive) and red (negative) dots of constant screen size, dashed box."""
        self._marks.set_prompts(points, box)

    def set_pending_boxes(self, boxes: list[PendingBoxView]) -> None:
        """Draw the image's pending boxes (XYXY image pixels), dashed, under the prompts."""
        self._pending.set_boxes(boxes)

    @property
    def pending_boxes(self) -> PendingBoxLayer:
        """The pending-box items (``boxes``: what is drawn; ``items()``: the scene items)."""
        return self._pending

    def set_message(self, text: str | None) -> None:
        """Show ``text`` centred over the canvas (``None`` or "" hides it)."""
        self._message.setText(text or "")
        self._message.setVisible(bool(text))
        self._place_message()

    def message_text(self) -> str:
        """The text shown over the canvas, "" when none."""
        return "" if self._message.isHidden() else self._message.text()

    def _place_message(self) -> None:
        area = self.viewport().rect()
        width = max(120, min(area.width() - 40, 640))
        self._message.setFixedWidth(width)
        self._message.adjustSize()
        self._message.move(area.center().x() - width // 2,
                           area.center().y() - self._message.height() // 2)

    def layer_at(self, x: float, y: float) -> int | None:
        """Id of the front-most visible layer whose mask holds image pixel (floor(x), floor(y))."""
        return self._stack.layer_at(x, y)

    # ------------------------------------------------------------------- tools
    @property
    def tool(self) -> Tool:
        return self._controller.tool

    def set_tool(self, tool: Tool) -> None:
        """Switch tool; a gesture in progress is dropped."""
        self._cancel_gesture()
        self._controller.tool = tool
        self.viewport().setCursor(_TOOL_CURSORS[tool])
        self._marks.show_brush(tool in (Tool.BRUSH, Tool.ERASER) and self.underMouse())

    @property
    def brush_size(self) -> int:
        """Brush and eraser diameter in image pixels."""
        return self._controller.brush_size

    @brush_size.setter
    def brush_size(self, px: int) -> None:
        self.set_brush_size(px)

    def set_brush_size(self, px: int) -> None:
        size = int(min(max(int(round(px)), BRUSH_RANGE[0]), BRUSH_RANGE[1]))
        if size != self._controller.brush_size:
            self._controller.brush_size = size
            self._marks.set_brush_size(size)
            self.brush_size_changed.emit(size)

    def _cancel_gesture(self) -> None:
        self._controller.cancel()
        self._marks.set_rubber_band(None)
        self._marks.set_stroke(None)
        self.viewport().setCursor(_TOOL_CURSORS[self._controller.tool])

    # -------------------------------------------------------------------- view
    def _zoomed(self) -> None:
        self._stack.picture.set_smooth(self.zoom < 1.0)  # crisp pixels when zoomed in
        super()._zoomed()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if not self._message.isHidden():
            self._place_message()

    # ------------------------------------------------------------------ events
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        button = _BUTTONS.get(event.button(), Button.OTHER)
        mods = event.modifiers()
        scene = self._image_pos(event.position())
        drag = self._controller.press(scene.x(), scene.y(), button, Modifiers(
            shift=bool(mods & Qt.KeyboardModifier.ShiftModifier),
            ctrl=bool(mods & Qt.KeyboardModifier.ControlModifier), space=self._space))
        if drag is Drag.NONE:
            event.ignore()
            return
        self._press_pos = self._pan_last = event.position().toPoint()
        self._drag_button = event.button()
        if drag is Drag.PAN:
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        self._show_gesture()
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.mousePressEvent(event)  # the second click of a double click is a click

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position().toPoint()
        scene = self._image_pos(event.position())
        self.cursor_moved.emit(scene.x(), scene.y())
        self._marks.move_brush(scene, self._controller.tool in (Tool.BRUSH, Tool.ERASER))
        if self._controller.drag is Drag.PAN:
            self.pan_by(pos.x() - self._pan_last.x(), pos.y() - self._pan_last.y())
            self._pan_last = pos
        elif self._controller.drag is not Drag.NONE:
            self._controller.move(scene.x(), scene.y())
            self._show_gesture()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._controller.drag is Drag.NONE or event.button() != self._drag_button:
            event.ignore()
            return
        pos = event.position().toPoint()
        travel = (pos - self._press_pos).manhattanLength()
        scene = self._image_pos(event.position())
        action = self._controller.release(scene.x(), scene.y(),
                                          dragged=travel >= QApplication.startDragDistance())
        self._cancel_gesture()
        self._dispatch(action)
        event.accept()

    def _dispatch(self, action: object) -> None:
        if isinstance(action, AddPoint):
            self.point_added.emit(action.x, action.y, action.positive)
        elif isinstance(action, DrawBox):
            self.box_drawn.emit(action.x0, action.y0, action.x1, action.y1)
        elif isinstance(action, PaintStroke):
            self.brush_stroke.emit(action.mask, action.erase)
        elif isinstance(action, PickLayer):
            layer_id = self.layer_at(action.x, action.y)
            if layer_id is None:
                self.background_clicked.emit(action.x, action.y)
            else:
                self.layer_clicked.emit(layer_id)

    def _show_gesture(self) -> None:
        """Draw the rubber band or the stroke preview of the gesture in progress."""
        box = self._controller.box
        self._marks.set_rubber_band(None if box is None else (box.x0, box.y0, box.x1, box.y1))
        stroke = self._controller.stroke
        self._marks.set_stroke(None if stroke is None else (stroke.points, stroke.size,
                                                            stroke.erase))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            if self._controller.drag is Drag.NONE:
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif key == Qt.Key.Key_BracketRight:
            self.set_brush_size(max(self.brush_size + 1, round(self.brush_size * BRUSH_STEP)))
        elif key == Qt.Key.Key_BracketLeft:
            self.set_brush_size(min(self.brush_size - 1, round(self.brush_size / BRUSH_STEP)))
        elif key == Qt.Key.Key_Escape and self._controller.drag is not Drag.NONE:
            self._cancel_gesture()
        elif key != Qt.Key.Key_Space:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            if self._controller.drag is Drag.NONE:
                self.viewport().setCursor(_TOOL_CURSORS[self._controller.tool])
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        self._space = False
        self._cancel_gesture()
        super().focusOutEvent(event)

    def enterEvent(self, event: QEnterEvent) -> None:  # noqa: N802
        self._marks.show_brush(self._controller.tool in (Tool.BRUSH, Tool.ERASER))
        super().enterEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        self._marks.show_brush(False)
        super().leaveEvent(event)
