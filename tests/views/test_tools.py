"""The canvas tools' gestures, without Qt: what a click or a drag turns into."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from samdesk.views.tools import (
    AddPoint,
    BrushStroke,
    Button,
    Drag,
    DrawBox,
    Modifiers,
    PaintStroke,
    PickLayer,
    Tool,
    ToolController,
)


def _distance_to_segment(h: int, w: int, a: tuple[float, float], b: tuple[float, float]):
    """Distance (H, W) from each pixel centre (col + 0.5, row + 0.5) to segment a-b."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
    return np.hypot(xs - (ax + t * dx), ys - (ay + t * dy))


def test_brush_stroke_paints_a_capsule_of_the_brush_diameter():
    stroke = BrushStroke(60, 80, size=9)
    for point in [(10.5, 20.5), (30.5, 25.5), (60.5, 40.5)]:
        stroke.add(*point)
    mask = stroke.mask
    assert mask.dtype == bool and mask.shape == (60, 80)
    near = np.minimum(_distance_to_segment(60, 80, (10.5, 20.5), (30.5, 25.5)),
                      _distance_to_segment(60, 80, (30.5, 25.5), (60.5, 40.5)))
    assert mask[near <= 3.5].all()       # well inside the 4.5 px radius: painted
    assert not mask[near >= 5.5].any()   # well outside: untouched
    # OpenCV's own thick polyline through the pixel centres brackets it: one
    # drawn a brush-size thinner lies inside the stroke, one as thick holds it
    # (cv2 draws lines about one pixel wider than ``thickness``).
    def cv2_stroke(thickness: int) -> np.ndarray:
        canvas = np.zeros((60, 80), np.uint8)
        centres = [(10, 20), (30, 25), (60, 40)]
        for p, q in zip(centres, centres[1:], strict=False):
            cv2.line(canvas, p, q, 1, thickness=thickness)
        for c in centres:
            cv2.circle(canvas, c, thickness // 2, 1, thickness=-1)
        return canvas.astype(bool)

    thinner, same = cv2_stroke(7), cv2_stroke(9)
    assert not (thinner & ~mask).any()
    assert not (mask & ~same).any()
    assert mask.sum() > 0.85 * same.sum()


def test_single_dab_is_a_disc_and_strokes_clip_at_the_image_edge():
    stroke = BrushStroke(20, 20, size=5)
    stroke.add(2.5, 2.5)
    stroke.add(-30.0, 2.5)  # dragged off the image
    assert stroke.mask[2, 0] and stroke.mask[2, 4]
    assert not stroke.mask[2, 5] and not stroke.mask[10, 10]
    dab = BrushStroke(20, 20, size=1)
    dab.add(7.3, 11.9)
    assert np.argwhere(dab.mask).tolist() == [[11, 7]]


def test_point_tool_left_is_positive_right_and_shift_are_negative():
    tool = ToolController(Tool.POINT)
    assert tool.press(12.25, 7.5, Button.LEFT) is Drag.CLICK
    assert tool.release(12.4, 7.5, dragged=False) == AddPoint(12.25, 7.5, True)
    tool.press(3.0, 4.0, Button.RIGHT)
    assert tool.release(3.0, 4.0, dragged=False) == AddPoint(3.0, 4.0, False)
    tool.press(3.0, 4.0, Button.LEFT, Modifiers(shift=True))
    assert tool.release(3.0, 4.0, dragged=False) == AddPoint(3.0, 4.0, False)
    tool.press(3.0, 4.0, Button.LEFT)
    assert tool.release(40.0, 4.0, dragged=True) is None  # a drag is not a click


def test_box_drag_is_normalised_and_clipped_and_a_click_adds_a_point():
    tool = ToolController(Tool.BOX)
    tool.image_size = (100, 200)  # height, width
    assert tool.press(150.0, 80.0, Button.LEFT) is Drag.BOX
    tool.move(90.0, 60.0)
    assert tool.box == DrawBox(90.0, 60.0, 150.0, 80.0)  # the rubber band while dragging
    assert tool.release(20.0, 10.0, dragged=True) == DrawBox(20.0, 10.0, 150.0, 80.0)
    assert tool.box is None and tool.drag is Drag.NONE
    tool.press(190.0, 90.0, Button.LEFT)
    assert tool.release(260.0, -5.0, dragged=True) == DrawBox(190.0, 0.0, 200.0, 90.0)
    tool.press(50.0, 50.0, Button.LEFT)
    assert tool.release(50.0, 50.0, dragged=False) == AddPoint(50.0, 50.0, True)
    tool.press(50.0, 50.0, Button.RIGHT)
    assert tool.release(50.0, 50.0, dragged=False) == AddPoint(50.0, 50.0, False)
    tool.press(50.0, 50.0, Button.LEFT)
    assert tool.release(50.0, 80.0, dragged=True) is None  # no width: no box


@pytest.mark.parametrize(("tool_kind", "button", "erase"), [
    (Tool.BRUSH, Button.LEFT, False), (Tool.BRUSH, Button.RIGHT, True),
    (Tool.ERASER, Button.LEFT, True)])
def test_brush_and_eraser_strokes_carry_the_painted_mask(tool_kind, button, erase):
    tool = ToolController(tool_kind, brush_size=3)
    tool.image_size = (30, 40)
    assert tool.press(5.5, 5.5, button) is Drag.STROKE
    assert tool.stroke is not None and tool.stroke.mask[5, 5]
    tool.move(20.5, 5.5)
    action = tool.release(30.5, 5.5, dragged=True)
    assert isinstance(action, PaintStroke) and action.erase is erase
    assert action.mask[5, 5:31].all() and action.mask[4:7, 6:30].all()
    assert action.mask.sum() < 3 * 40 and not action.mask[10:].any()
    assert tool.stroke is None


def test_brush_needs_an_image_and_ctrl_click_picks_in_any_tool():
    tool = ToolController(Tool.BRUSH)
    assert tool.press(1.0, 1.0, Button.LEFT) is Drag.NONE
    assert tool.release(1.0, 1.0, dragged=False) is None
    tool.image_size = (10, 10)
    assert tool.press(4.0, 6.0, Button.LEFT, Modifiers(ctrl=True)) is Drag.CLICK
    assert tool.stroke is None
    assert tool.release(4.0, 6.0, dragged=False) == PickLayer(4.0, 6.0)


@pytest.mark.parametrize("tool_kind", [Tool.PAN, Tool.TEXT])
def test_pan_and_text_tools_pan_on_drag_and_pick_on_click(tool_kind):
    tool = ToolController(tool_kind)
    assert tool.press(8.0, 9.0, Button.LEFT) is Drag.PAN
    assert tool.release(8.0, 9.0, dragged=False) == PickLayer(8.0, 9.0)
    tool.press(8.0, 9.0, Button.LEFT)
    assert tool.release(80.0, 9.0, dragged=True) is None
    assert tool.press(8.0, 9.0, Button.RIGHT) is Drag.NONE


def test_middle_button_and_space_pan_in_every_tool_and_extra_buttons_are_ignored():
    tool = ToolController(Tool.POINT)
    tool.image_size = (10, 10)
    for kind in Tool:
        tool.tool = kind
        assert tool.press(1.0, 1.0, Button.MIDDLE) is Drag.PAN
        assert tool.release(1.0, 1.0, dragged=True) is None
        assert tool.press(1.0, 1.0, Button.LEFT, Modifiers(space=True)) is Drag.PAN
        assert tool.release(1.0, 1.0, dragged=False) is None
    tool.tool = Tool.BOX
    assert tool.press(1.0, 1.0, Button.LEFT) is Drag.BOX
    assert tool.press(5.0, 5.0, Button.RIGHT) is Drag.NONE  # during a drag
    assert tool.drag is Drag.BOX
    tool.cancel()
    assert tool.drag is Drag.NONE and tool.release(5.0, 5.0, dragged=True) is None
