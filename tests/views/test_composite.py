"""The flattened picture: what the canvas shows after layers change, one at a time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from samdesk import masks
from samdesk.views.canvas import Canvas, LayerView
from samdesk.views.qtutil import qimage_to_rgb

BLUE = (0, 0, 200)


def _canvas(qtbot) -> Canvas:
    view = Canvas()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    return view


@pytest.fixture
def canvas(qtbot):
    return _canvas(qtbot)


def _image(height: int = 150, width: int = 200) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = BLUE
    return image


def _box(x0: int, y0: int, x1: int, y1: int, shape: tuple[int, int] = (150, 200)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _grab(canvas: Canvas) -> np.ndarray:
    """The viewport's pixels as a person sees them: uint8 (H, W, 3)."""
    return qimage_to_rgb(canvas.viewport().grab().toImage())


def _pixel(canvas: Canvas, x: float, y: float) -> tuple[int, int, int]:
    p = canvas.mapFromScene(QPointF(x, y))
    return tuple(int(v) for v in _grab(canvas)[p.y(), p.x()])


def _over(rgb: tuple[float, float, float], under: tuple[float, float, float],
          alpha: float = 0.45) -> tuple[float, ...]:
    return tuple(alpha * c + (1 - alpha) * u for c, u in zip(rgb, under, strict=True))


RED_ON_BLUE = _over((255, 0, 0), BLUE)
GREEN_ON_RED_ON_BLUE = _over((0, 255, 0), RED_ON_BLUE)


def test_overlap_shows_the_front_colour_and_follows_colour_and_visibility(canvas):
    canvas.set_image(_image())
    empty = _grab(canvas)
    back = LayerView(1, masks.encode(_box(20, 20, 120, 80)), "#ff0000")
    front = LayerView(2, masks.encode(_box(60, 50, 160, 100)), "#00ff00")
    canvas.set_layers([back, front])
    assert _pixel(canvas, 90.5, 65.5) == pytest.approx(GREEN_ON_RED_ON_BLUE, abs=2)
    assert _pixel(canvas, 40.5, 40.5) == pytest.approx(RED_ON_BLUE, abs=2)
    canvas.set_layers([back, front][::-1])  # red brought to the front
    assert _pixel(canvas, 90.5, 65.5) == pytest.approx(
        _over((255, 0, 0), _over((0, 255, 0), BLUE)), abs=2)
    canvas.set_layers([back, dataclasses.replace(front, color="#ffffff")])
    assert _pixel(canvas, 90.5, 65.5) == pytest.approx(
        _over((255, 255, 255), RED_ON_BLUE), abs=2)
    assert _pixel(canvas, 140.5, 90.5) == pytest.approx(_over((255, 255, 255), BLUE), abs=2)
    canvas.set_layers([back, dataclasses.replace(front, visible=False)])
    assert _pixel(canvas, 90.5, 65.5) == pytest.approx(RED_ON_BLUE, abs=2)
    assert _pixel(canvas, 140.5, 90.5) == BLUE  # nothing left where only the front was
    canvas.set_layers([dataclasses.replace(back, visible=False),
                       dataclasses.replace(front, visible=False)])
    assert (_grab(canvas) == empty).all()  # both hidden: the bare image, pixel for pixel


def test_a_selected_layer_is_drawn_above_the_layers_in_front_of_it(canvas):
    canvas.set_image(_image())
    back = LayerView(1, masks.encode(_box(20, 20, 120, 80)), "#ff0000", selected=True)
    front = LayerView(2, masks.encode(_box(60, 50, 160, 100)), "#00ff00")
    canvas.set_layers([back, front])
    red, green, _ = _pixel(canvas, 90.5, 65.5)
    assert red > 140 and green < 60  # the selected red at 65 % hides most of the green
    assert canvas.layer_at(90.5, 65.5) == 2  # picking still takes the front-most layer
    canvas.set_layers([dataclasses.replace(back, selected=False), front])
    assert _pixel(canvas, 90.5, 65.5) == pytest.approx(GREEN_ON_RED_ON_BLUE, abs=2)


def test_a_single_layer_change_recomposites_only_that_layers_box(canvas):
    canvas.set_image(_image())
    layers = [LayerView(i + 1, masks.encode(_box(10 * i, 5 * i, 10 * i + 30, 5 * i + 20)),
                        "#ff0000") for i in range(12)]
    canvas.set_layers(layers)
    flat = canvas.flat_image
    before = flat.flattened_px
    canvas.set_layers(layers)  # same content: nothing to redo
    assert flat.flattened_px == before
    layers[5] = dataclasses.replace(layers[5], color="#00ff00")
    canvas.set_layers(layers)
    assert 0 < flat.flattened_px - before <= 2 * 30 * 20  # its old and new box, no more
    # (52, 27) lies in layers 4, 5 and 6 (the changed one, in front of the other two)
    expected = _over((0, 255, 0), _over((255, 0, 0), RED_ON_BLUE))
    assert _pixel(canvas, 52.5, 27.5) == pytest.approx(expected, abs=2)


@pytest.mark.parametrize("proxy", [False, True], ids=["full", "proxy"])
def test_any_sequence_of_changes_shows_what_a_fresh_canvas_shows(qtbot, proxy):
    rng = np.random.default_rng(3)
    shape = (301, 403) if proxy else (150, 200)  # the proxy is (150, 200): not a whole ratio
    colours = ["#ff0000", "#00ff00", "#ffff00", "#00ffff", "#ff00ff"]

    def random_mask() -> dict:
        height, width = shape
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 2 // 3))
        return masks.encode(_box(x0, y0, x0 + int(rng.integers(width // 10, width * 3 // 5)),
                                 y0 + int(rng.integers(height // 7, height * 3 // 5)), shape))

    def show(canvas: Canvas) -> None:
        canvas.set_image(_image())  # flattens every layer from scratch when layers come
        if proxy:
            canvas.set_image_size(shape[1], shape[0])

    layers = [LayerView(i, random_mask(), colours[i % 5]) for i in range(1, 9)]
    live, fresh = _canvas(qtbot), _canvas(qtbot)
    show(live)
    live.set_layers(layers)
    next_id = 9
    for step in range(40):
        i = int(rng.integers(0, len(layers)))
        change = step % 7
        if change == 0:
            layers[i] = dataclasses.replace(layers[i], color=colours[int(rng.integers(0, 5))])
        elif change == 1:
            layers[i] = dataclasses.replace(layers[i], visible=not layers[i].visible)
        elif change in (2, 6):
            layers.insert(int(rng.integers(0, len(layers))), layers.pop(i))
        elif change == 3:
            layers[i] = dataclasses.replace(layers[i], selected=not layers[i].selected)
        elif change == 4:
            layers[i] = dataclasses.replace(layers[i], mask=random_mask())
        elif len(layers) > 6:
            layers.pop(i)
        else:
            layers.insert(i, LayerView(next_id, random_mask(), colours[next_id % 5]))
            next_id += 1
        live.set_layers(layers)
        show(fresh)
        fresh.set_layers(layers)
        diff = np.abs(_grab(live).astype(int) - _grab(fresh).astype(int)).max()
        # scaled onto a proxy, a blend clipped to a box rounds by a few levels of 255;
        # a layer drawn where it is not, or missing, is off by 50 or more
        assert diff <= (6 if proxy else 0), f"step {step} (change {change}): off by {diff}"


def test_layers_on_a_display_proxy_are_drawn_and_leave_no_trace_when_hidden(canvas, qtbot):
    canvas.set_image(_image(75, 100))  # a quarter-size proxy of a 400 x 300 image
    canvas.set_image_size(400, 300)
    empty = _grab(canvas)
    layer = LayerView(1, masks.encode(_box(301, 202, 379, 259, (300, 400))), "#ff0000")
    canvas.set_layers([layer])
    assert _pixel(canvas, 340.5, 230.5) == pytest.approx(RED_ON_BLUE, abs=3)
    assert _pixel(canvas, 100.5, 100.5) == BLUE
    canvas.set_layers([dataclasses.replace(layer, visible=False)])
    assert (_grab(canvas) == empty).all()
