"""What a mouse gesture means for each canvas tool, without Qt.

The canvas turns Qt mouse events into calls on :class:`ToolController`
(``press``, ``move``, ``release``) with positions in continuous image
coordinates: pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``,
so ``floor(x)`` is the column. The controller answers with the kind of drag
that started (:class:`Drag`) and, on release, an action: :class:`AddPoint`,
:class:`DrawBox`, :class:`PaintStroke` or :class:`PickLayer`. Panning is a
drag the canvas carries out itself.

Gestures, by tool (``ctrl`` + left click picks a layer in every tool; the
middle button, or space + left, pans in every tool):

* POINT: left click adds a positive point, right or shift + left a negative one.
* BOX: left drag draws a box; a click that is not a drag adds a point as the
  POINT tool would, so a box can be refined without switching tools.
* BRUSH / ERASER: left drag paints (BRUSH) or erases (ERASER); right drag in
  BRUSH erases. The stroke is rasterised with OpenCV into a bool mask.
* PAN / TEXT: left drag pans; a left click picks the layer under it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np


class Tool(enum.Enum):
    """The canvas tools. TEXT behaves like PAN on the canvas (the phrase is typed in a panel)."""

    POINT = "point"
    BOX = "box"
    BRUSH = "brush"
    ERASER = "eraser"
    TEXT = "text"
    PAN = "pan"


class Button(enum.Enum):
    LEFT = "left"
    RIGHT = "right"
    MIDDLE = "middle"
    OTHER = "other"


@dataclass(frozen=True)
class Modifiers:
    """Keys held during a press; ``space`` is the space bar (pan)."""

    shift: bool = False
    ctrl: bool = False
    space: bool = False


class Drag(enum.Enum):
    """What a press started."""

    NONE = "none"    # nothing (ignored button, no image to paint on)
    CLICK = "click"  # acts on release, if the mouse did not travel
    PAN = "pan"      # the canvas scrolls with the mouse
    BOX = "box"      # rubber band, see ToolController.box
    STROKE = "stroke"  # painting, see ToolController.stroke


@dataclass(frozen=True)
class AddPoint:
    x: float
    y: float
    positive: bool


@dataclass(frozen=True)
class DrawBox:
    """A box with ``x0 < x1`` and ``y0 < y1``, image coordinates."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, eq=False)
class PaintStroke:
    """A finished stroke: bool (H, W) mask of the painted pixels; erase or paint."""

    mask: np.ndarray
    erase: bool


@dataclass(frozen=True)
class PickLayer:
    x: float
    y: float


Action = AddPoint | DrawBox | PaintStroke | PickLayer


class BrushStroke:
    """A brush stroke rasterised as it is drawn.

    ``size`` is the brush diameter in image pixels. A pixel is painted when its
    centre ``(col + 0.5, row + 0.5)`` lies within ``size / 2`` of the polyline
    through the stroke's points (a round brush dragged along it, the shape the
    canvas previews), and the pixel under each point is always painted, so a
    1 px brush leaves a mark wherever it goes. Each segment touches only its
    own bounding box, so a stroke on a 12 MP image stays cheap.
    """

    def __init__(self, height: int, width: int, size: int, erase: bool = False) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"stroke image size must be positive, got {width}x{height}")
        self.size = max(1, int(size))
        self.erase = erase
        self.points: list[tuple[float, float]] = []
        self._mask = np.zeros((height, width), dtype=bool)

    def add(self, x: float, y: float) -> None:
        """Extend the stroke to image position ``(x, y)``."""
        start = self.points[-1] if self.points else (x, y)
        self._paint_segment(start, (x, y))
        col, row = math.floor(x), math.floor(y)
        height, width = self._mask.shape
        if 0 <= col < width and 0 <= row < height:
            self._mask[row, col] = True
        self.points.append((x, y))

    def _paint_segment(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        radius = self.size / 2
        (ax, ay), (bx, by) = a, b
        height, width = self._mask.shape
        x0 = max(0, math.floor(min(ax, bx) - radius))
        x1 = min(width, math.ceil(max(ax, bx) + radius))
        y0 = max(0, math.floor(min(ay, by) - radius))
        y1 = min(height, math.ceil(max(ay, by) + radius))
        if x0 >= x1 or y0 >= y1:
            return
        xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - ax
        ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - ay
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.clip((xs * dx + ys * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        inside = (xs - t * dx) ** 2 + (ys - t * dy) ** 2 <= radius * radius
        self._mask[y0:y1, x0:x1] |= inside

    @property
    def mask(self) -> np.ndarray:
        """Bool (H, W): the pixels painted so far (the live array; copy to keep)."""
        return self._mask


class ToolController:
    """The state machine behind the canvas's mouse handling (see the module docstring)."""

    def __init__(self, tool: Tool = Tool.POINT, brush_size: int = 20) -> None:
        self.tool = tool
        self.brush_size = brush_size
        self.image_size: tuple[int, int] | None = None  # (height, width)
        self.drag = Drag.NONE
        self.stroke: BrushStroke | None = None
        self._start: tuple[float, float] = (0.0, 0.0)
        self._current: tuple[float, float] = (0.0, 0.0)
        self._on_click: Action | None = None

    @property
    def box(self) -> DrawBox | None:
        """The rubber band while a box is dragged, else ``None``.

        Normalised (``x0 <= x1``, ``y0 <= y1``) and clipped to the image when its
        size is known.
        """
        if self.drag is not Drag.BOX:
            return None
        (ax, ay), (bx, by) = self._start, self._current
        x0, y0, x1, y1 = min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)
        if self.image_size is not None:  # a box dragged past the edge stops at the edge
            height, width = self.image_size
            x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
            y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        return DrawBox(x0, y0, x1, y1)

    def press(self, x: float, y: float, button: Button, mods: Modifiers | None = None) -> Drag:
        """A button went down at image position ``(x, y)``; returns the drag it starts."""
        if self.drag is not Drag.NONE:
            return Drag.NONE  # a second button during a drag is ignored
        self._start = self._current = (x, y)
        self._on_click = None
        drag = self._classify(x, y, button, mods or Modifiers())
        self.drag = drag
        return drag

    def _classify(self, x: float, y: float, button: Button, mods: Modifiers) -> Drag:
        left, right = button is Button.LEFT, button is Button.RIGHT
        if button is Button.MIDDLE or (left and mods.space):
            return Drag.PAN
        if left and mods.ctrl:
            self._on_click = PickLayer(x, y)
            return Drag.CLICK
        tool = self.tool
        if tool in (Tool.PAN, Tool.TEXT):
            if not left:
                return Drag.NONE
            self._on_click = PickLayer(x, y)
            return Drag.PAN
        if tool in (Tool.POINT, Tool.BOX):
            if not (left or right):
                return Drag.NONE
            self._on_click = AddPoint(x, y, positive=left and not mods.shift)
            return Drag.BOX if tool is Tool.BOX and left and not mods.shift else Drag.CLICK
        if tool in (Tool.BRUSH, Tool.ERASER) and (left or (right and tool is Tool.BRUSH)):
            if self.image_size is None:
                return Drag.NONE
            erase = tool is Tool.ERASER or right
            self.stroke = BrushStroke(*self.image_size, self.brush_size, erase=erase)
            self.stroke.add(x, y)
            return Drag.STROKE
        return Drag.NONE

    def move(self, x: float, y: float) -> None:
        """The mouse moved to ``(x, y)`` with a button held."""
        if self.drag is Drag.NONE:
            return
        self._current = (x, y)
        if self.drag is Drag.STROKE and self.stroke is not None:
            last = self.stroke.points[-1]
            if math.hypot(x - last[0], y - last[1]) > 0:
                self.stroke.add(x, y)

    def release(self, x: float, y: float, dragged: bool) -> Action | None:
        """The button came up at ``(x, y)``; ``dragged`` says the mouse travelled
        past the drag threshold (in screen pixels, judged by the canvas)."""
        drag, on_click, stroke = self.drag, self._on_click, self.stroke
        if drag is Drag.NONE:
            return None
        self.move(x, y)
        box = self.box
        self.cancel()
        if drag is Drag.STROKE and stroke is not None:
            return PaintStroke(stroke.mask.copy(), stroke.erase)
        if drag is Drag.BOX and dragged and box is not None:
            if box.x1 > box.x0 and box.y1 > box.y0:
                return DrawBox(box.x0, box.y0, box.x1, box.y1)
            return None
        if not dragged:
            return on_click
        return None

    def cancel(self) -> None:
        """Drop any gesture in progress (Esc, focus lost, tool changed)."""
        self.drag = Drag.NONE
        self.stroke = None
        self._on_click = None
