"""The canvas as a person uses it: clicks, drags, zoom, pan, what it draws."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from samdesk import masks
from samdesk.views.canvas import Canvas, LayerView, Tool
from samdesk.views.qtutil import drop_cv2_qt_plugin_path, qimage_to_rgb

ROOT = Path(__file__).resolve().parents[2]
LEFT, RIGHT = Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton
MIDDLE = Qt.MouseButton.MiddleButton
NOMOD = Qt.KeyboardModifier.NoModifier


@pytest.fixture
def canvas(qtbot):
    view = Canvas()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    return view


def _image(height: int = 150, width: int = 200, rgb=(0, 0, 200)) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = rgb
    return image


def _at(canvas: Canvas, x: float, y: float) -> QPoint:
    """Viewport pixel showing image position (x, y)."""
    return canvas.mapFromScene(QPointF(x, y))


def _send(canvas: Canvas, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
          buttons: Qt.MouseButton, mods: Qt.KeyboardModifier = NOMOD) -> None:
    viewport = canvas.viewport()
    event = QMouseEvent(kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)),
                        button, buttons, mods)
    QApplication.sendEvent(viewport, event)


def _drag(canvas: Canvas, start: QPoint, end: QPoint, button: Qt.MouseButton = LEFT,
          mods: Qt.KeyboardModifier = NOMOD, steps: int = 5) -> None:
    _send(canvas, QEvent.Type.MouseButtonPress, start, button, button, mods)
    for i in range(1, steps + 1):
        step = start + (end - start) * (i / steps)
        _send(canvas, QEvent.Type.MouseMove, step, Qt.MouseButton.NoButton, button, mods)
    _send(canvas, QEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton, mods)


def _record(signal) -> list[tuple]:
    seen: list[tuple] = []
    signal.connect(lambda *args: seen.append(args))
    return seen


def test_clicks_map_to_the_image_pixel_after_zoom_and_pan(canvas):
    canvas.set_image(_image())
    points = _record(canvas.point_added)
    canvas.zoom_by(3.0, QPointF(60, 40))
    assert canvas.zoom == pytest.approx(3.0 * 400 / 200 * 0.99, rel=0.03)
    probe = QPoint(200, 150)
    before = canvas.mapToScene(probe)
    _drag(canvas, QPoint(100, 100), QPoint(137, 121), button=MIDDLE)  # pan
    after = canvas.mapToScene(probe)
    assert after.x() == pytest.approx(before.x() - 37 / canvas.zoom, abs=1.01 / canvas.zoom)
    assert after.y() == pytest.approx(before.y() - 21 / canvas.zoom, abs=1.01 / canvas.zoom)
    assert not points  # panning adds no point
    for col, row in [(40, 30), (55, 47), (71, 38)]:
        QTest.mouseClick(canvas.viewport(), LEFT, NOMOD, _at(canvas, col + 0.5, row + 0.5))
        x, y, positive = points[-1]
        assert (int(np.floor(x)), int(np.floor(y)), positive) == (col, row, True)


def test_wheel_zooms_about_the_cursor(canvas):
    canvas.set_image(_image())
    cursor = QPoint(300, 80)
    under = canvas.mapToScene(cursor)
    zoom = canvas.zoom
    viewport = canvas.viewport()
    wheel = QWheelEvent(QPointF(cursor), QPointF(viewport.mapToGlobal(cursor)), QPoint(0, 0),
                        QPoint(0, 240), Qt.MouseButton.NoButton, NOMOD,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, wheel)
    assert canvas.zoom == pytest.approx(zoom * 1.44, rel=1e-3)
    still = canvas.mapToScene(cursor)
    assert still.x() == pytest.approx(under.x(), abs=1.5 / canvas.zoom)
    assert still.y() == pytest.approx(under.y(), abs=1.5 / canvas.zoom)


def test_right_click_and_shift_click_are_negative_points(canvas):
    canvas.set_image(_image())
    points = _record(canvas.point_added)
    QTest.mouseClick(canvas.viewport(), RIGHT, NOMOD, _at(canvas, 20.5, 30.5))
    QTest.mouseClick(canvas.viewport(), LEFT, Qt.KeyboardModifier.ShiftModifier,
                     _at(canvas, 21.5, 31.5))
    assert [(int(x), int(y), p) for x, y, p in points] == [(20, 30, False), (21, 31, False)]


def test_box_drag_emits_a_normalised_box_and_shows_a_rubber_band(canvas):
    canvas.set_image(_image())
    canvas.set_tool(Tool.BOX)
    boxes = _record(canvas.box_drawn)
    start, end = _at(canvas, 120, 90), _at(canvas, 30, 20)
    _send(canvas, QEvent.Type.MouseButtonPress, start, LEFT, LEFT)
    _send(canvas, QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, LEFT)
    band = canvas._marks.rubber_band  # what the person sees while dragging
    assert band.isVisible() and band.rect().width() == pytest.approx(90, abs=1)
    _send(canvas, QEvent.Type.MouseButtonRelease, end, LEFT, Qt.MouseButton.NoButton)
    assert not band.isVisible()
    (x0, y0, x1, y1), = boxes
    tol = 1.0 / canvas.zoom
    assert (x0, y0, x1, y1) == pytest.approx((30, 20, 120, 90), abs=tol)
    assert x0 < x1 and y0 < y1


def test_brush_stroke_emits_the_painted_mask_and_eraser_sets_the_flag(canvas):
    canvas.set_image(_image())
    canvas.set_tool(Tool.BRUSH)
    canvas.set_brush_size(9)
    strokes = _record(canvas.brush_stroke)
    _drag(canvas, _at(canvas, 20.5, 40.5), _at(canvas, 120.5, 40.5))
    (mask, erase), = strokes
    assert erase is False and mask.dtype == bool and mask.shape == (150, 200)
    assert mask[37:44, 22:119].all()  # along the stroke, within the 4.5 px radius
    assert not mask[:34].any() and not mask[47:].any() and not mask[:, 127:].any()
    canvas.set_tool(Tool.ERASER)
    _drag(canvas, _at(canvas, 50.5, 100.5), _at(canvas, 60.5, 110.5))
    mask, erase = strokes[-1]
    assert erase is True and mask[100, 50] and mask[110, 60] and not mask[40, 60]


def _two_layers() -> tuple[np.ndarray, np.ndarray]:
    back = np.zeros((150, 200), bool)
    back[20:80, 20:120] = True
    front = np.zeros((150, 200), bool)
    front[50:100, 60:160] = True
    return back, front


def test_layer_at_finds_the_front_most_visible_layer_and_clicks_pick_it(canvas):
    canvas.set_image(_image())
    back, front = _two_layers()
    canvas.set_layers([LayerView(3, masks.encode(back), "#ff0000"),
                       LayerView(7, front, "#00ff00")])
    assert canvas.layer_at(70, 60) == 7          # both: the front one
    assert canvas.layer_at(30.9, 25.2) == 3      # only the back one
    assert canvas.layer_at(5, 5) is None
    canvas.set_layers([LayerView(3, masks.encode(back), "#ff0000"),
                       LayerView(7, front, "#00ff00", visible=False)])
    assert canvas.layer_at(70, 60) == 3 and canvas.layer_at(150, 90) is None
    picked, missed, points = (_record(canvas.layer_clicked), _record(canvas.background_clicked),
                              _record(canvas.point_added))
    QTest.mouseClick(canvas.viewport(), LEFT, Qt.KeyboardModifier.ControlModifier,
                     _at(canvas, 70.5, 60.5))  # ctrl+click in the POINT tool
    canvas.set_tool(Tool.PAN)
    QTest.mouseClick(canvas.viewport(), LEFT, NOMOD, _at(canvas, 25.5, 25.5))
    QTest.mouseClick(canvas.viewport(), LEFT, NOMOD, _at(canvas, 190.5, 140.5))
    assert picked == [(3,), (3,)] and len(missed) == 1 and not points


def _pixel(canvas: Canvas, x: float, y: float) -> tuple[int, int, int]:
    grabbed = qimage_to_rgb(canvas.viewport().grab().toImage())
    p = _at(canvas, x, y)
    return tuple(int(v) for v in grabbed[p.y(), p.x()])


def test_rendering_shows_layer_colours_over_the_image(canvas):
    canvas.set_image(_image(rgb=(0, 0, 200)))
    back, front = _two_layers()
    canvas.set_layers([LayerView(1, masks.encode(back), "#ff0000"),
                       LayerView(2, masks.encode(front), "#00ff00")])
    assert _pixel(canvas, 40.5, 40.5) == pytest.approx((115, 0, 110), abs=2)  # red at 45 %
    assert _pixel(canvas, 140.5, 90.5) == pytest.approx((0, 115, 110), abs=2)  # green
    assert _pixel(canvas, 70.5, 60.5)[1] == pytest.approx(115, abs=2)  # green is in front
    assert _pixel(canvas, 180.5, 130.5) == (0, 0, 200)  # the image itself
    canvas.set_layers([LayerView(1, masks.encode(back), "#ff0000", selected=True),
                       LayerView(2, masks.encode(front), "#00ff00", visible=False)])
    assert _pixel(canvas, 40.5, 40.5)[0] == pytest.approx(166, abs=2)  # selected: brighter
    assert _pixel(canvas, 140.5, 90.5) == (0, 0, 200)  # hidden layer not drawn
    candidate = np.zeros((150, 200), bool)
    candidate[100:140, 150:190] = True
    canvas.set_candidate(candidate, "#ffffff")
    assert _pixel(canvas, 170.5, 120.5) == pytest.approx((115, 115, 225), abs=2)
    canvas.set_candidate(None)
    assert _pixel(canvas, 170.5, 120.5) == (0, 0, 200)
    rendered = qimage_to_rgb(canvas.render_to_image())  # the benchmark's repaint
    p = _at(canvas, 40.5, 40.5)
    assert tuple(int(v) for v in rendered[p.y(), p.x()]) == pytest.approx((166, 0, 70), abs=2)


def test_overlays_are_rebuilt_only_when_a_layer_changes(canvas):
    canvas.set_image(_image())
    back, front = _two_layers()

    def layers(color="#ff0000", visible=True, order=1):
        views = [LayerView(1, masks.encode(back), color, visible=visible),
                 LayerView(2, masks.encode(front), "#00ff00")]
        return views[::order]

    cache = canvas.overlay_cache
    canvas.set_layers(layers())
    assert cache.rebuilds == 2
    canvas.set_layers(layers())                # re-read from the project: same content
    canvas.set_layers(layers(visible=False))   # hide
    canvas.set_layers(layers())                # show again
    canvas.set_layers(layers(order=-1))        # reorder
    assert cache.rebuilds == 2
    assert canvas.layer_at(70, 60) == 1        # reordered: layer 1 now in front
    canvas.set_layers(layers(color="#0000ff"))
    assert cache.rebuilds == 3
    assert _pixel(canvas, 40.5, 40.5) == pytest.approx((0, 0, 225), abs=2)


def test_hidden_layers_are_not_built_until_shown(canvas):
    canvas.set_image(_image())
    back, _ = _two_layers()
    canvas.set_layers([LayerView(1, back, "#ff0000", visible=False)])
    assert canvas.overlay_cache.rebuilds == 0
    canvas.set_layers([LayerView(1, back, "#ff0000")])
    assert canvas.overlay_cache.rebuilds == 1 and canvas.layer_at(30, 30) == 1


def _rect_rle(height: int, width: int, x0: int, y0: int, w: int, h: int) -> dict:
    """A rectangle as COCO RLE, built from its column runs (no full-size array)."""
    counts = [x0 * height + y0, h]
    for _ in range(w - 1):
        counts += [height - h, h]
    counts.append(height * width - sum(counts))
    return masks.normalize({"size": [height, width], "counts": counts})


def test_two_hundred_layers_on_a_12_megapixel_image(canvas):
    height, width = 3000, 4000
    canvas.set_image(np.full((height, width, 3), 60, np.uint8))
    rng = np.random.default_rng(7)
    boxes = [(int(rng.integers(0, width - 300)), int(rng.integers(0, height - 300)),
              int(rng.integers(10, 300)), int(rng.integers(10, 300))) for _ in range(200)]
    canvas.set_layers([LayerView(i + 1, _rect_rle(height, width, *box), "#ff00ff")
                       for i, box in enumerate(boxes)])
    assert canvas.overlay_cache.rebuilds == 200
    # the front-most layer covering each box's centre, computed independently
    for i in (0, 57, 199):
        x0, y0, w, h = boxes[i]
        cx, cy = x0 + w // 2, y0 + h // 2
        expected = max(j + 1 for j, (bx, by, bw, bh) in enumerate(boxes)
                       if bx <= cx < bx + bw and by <= cy < by + bh)
        assert canvas.layer_at(cx + 0.5, cy + 0.5) == expected
    canvas.fit()
    image = canvas.render_to_image()
    assert not image.isNull() and image.size() == canvas.viewport().size()


def test_prompt_markers_keep_their_screen_size_when_zooming(canvas):
    canvas.set_image(_image())
    canvas.set_prompt_markers([(50.0, 60.0, True), (80.0, 30.0, False)], (10, 20, 90, 70))
    dots = canvas._marks.dots

    def screen_width() -> int:
        """Width in screen pixels of the green dot drawn at (50, 60)."""
        grabbed = qimage_to_rgb(canvas.viewport().grab().toImage()).astype(int)
        centre = _at(canvas, 50.0, 60.0)
        row = grabbed[centre.y(), max(0, centre.x() - 40): centre.x() + 40]
        return int(((row[:, 1] > 150) & (row[:, 0] < 120)).sum())

    assert len(dots) == 2 and canvas._marks.box.isVisible()
    assert dots[0].brush().color().green() > dots[0].brush().color().red()
    assert dots[1].brush().color().red() > dots[1].brush().color().green()
    small = screen_width()
    assert 6 <= small <= 14
    canvas.zoom_by(8.0, QPointF(50.0, 60.0))
    assert canvas.viewport().rect().contains(_at(canvas, 50.0, 60.0))
    assert screen_width() == pytest.approx(small, abs=1)
    canvas.set_prompt_markers([], None)
    assert not canvas._marks.dots and not canvas._marks.box.isVisible()


def test_fit_shows_the_whole_image_and_one_to_one_shows_pixels(canvas):
    canvas.set_image(_image(600, 900))
    rect = canvas.viewport().rect()
    for corner in [(0, 0), (900, 600)]:
        assert rect.contains(_at(canvas, *corner))
    assert canvas.zoom == pytest.approx(min(400 / 900, 300 / 600), rel=0.03)
    canvas.zoom_1to1()
    assert canvas.zoom == 1.0
    a, b = _at(canvas, 100, 100), _at(canvas, 110, 100)
    assert b.x() - a.x() == 10


def test_brush_size_keys_and_circle_cursor(canvas, qtbot):
    canvas.set_image(_image())
    canvas.set_tool(Tool.BRUSH)
    canvas.set_brush_size(20)
    sizes = _record(canvas.brush_size_changed)
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_BracketRight)
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert [s for (s,) in sizes] == [24, 20, 17] and canvas.brush_size == 17
    _send(canvas, QEvent.Type.MouseMove, _at(canvas, 50, 50), Qt.MouseButton.NoButton,
          Qt.MouseButton.NoButton)
    circle = canvas._marks.brush
    assert circle.isVisible() and circle.rect().width() == pytest.approx(17)
    assert circle.pos().x() == pytest.approx(50, abs=1 / canvas.zoom)


def test_space_drag_pans_instead_of_adding_a_point(canvas):
    canvas.set_image(_image())
    canvas.zoom_by(4.0)
    points = _record(canvas.point_added)
    canvas.setFocus()
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    before = canvas.mapToScene(QPoint(200, 150))
    _drag(canvas, QPoint(200, 150), QPoint(160, 150))
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    after = canvas.mapToScene(QPoint(200, 150))
    assert after.x() - before.x() == pytest.approx(40 / canvas.zoom, abs=1.01 / canvas.zoom)
    assert not points


def test_display_proxy_keeps_full_resolution_coordinates(canvas):
    canvas.set_image(_image(75, 100))      # a quarter-size proxy of a 400 x 300 image
    canvas.set_image_size(400, 300)
    assert canvas.image_size == (400, 300)
    full = np.zeros((300, 400), bool)
    full[200:260, 300:380] = True
    canvas.set_layers([LayerView(1, full, "#ff0000")])
    points = _record(canvas.point_added)
    QTest.mouseClick(canvas.viewport(), LEFT, NOMOD, _at(canvas, 340.5, 230.5))
    x, y, _ = points[-1]
    assert (int(x), int(y)) == pytest.approx((340, 230), abs=1)
    assert canvas.layer_at(x, y) == 1
    with pytest.raises(ValueError, match="layer 2 mask is 100x75 but the image is 400x300"):
        canvas.set_layers([LayerView(2, np.ones((75, 100), bool), "#ff0000")])


def test_cv2_plugin_path_is_dropped_but_other_paths_are_kept():
    import cv2

    cv2_qt = os.path.join(os.path.dirname(cv2.__file__), "qt")
    env = {"QT_QPA_PLATFORM_PLUGIN_PATH": os.path.join(cv2_qt, "plugins"),
           "QT_QPA_FONTDIR": os.path.join(cv2_qt, "fonts"), "OTHER": "x"}
    assert drop_cv2_qt_plugin_path(env) == ["QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"]
    assert env == {"OTHER": "x"}
    mine = {"QT_QPA_PLATFORM_PLUGIN_PATH": "/opt/Qt/6.7/plugins"}
    assert drop_cv2_qt_plugin_path(mine) == [] and mine["QT_QPA_PLATFORM_PLUGIN_PATH"]


def test_cv2_import_then_fix_lets_pyside_start():
    code = (
        "import os, cv2\n"
        "set_by_cv2 = os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH', '')\n"
        "from samdesk.views.qtutil import drop_cv2_qt_plugin_path\n"
        "removed = drop_cv2_qt_plugin_path()\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "print(bool(set_by_cv2), 'QT_QPA_PLATFORM_PLUGIN_PATH' in removed,\n"
        "      'QT_QPA_PLATFORM_PLUGIN_PATH' in os.environ, app.platformName())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_QPA_PLATFORM_PLUGIN")}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    set_by_cv2, removed, still_set, platform = out.stdout.split()
    assert removed == set_by_cv2  # whatever cv2 set was taken out
    assert still_set == "False" and platform == "offscreen"
