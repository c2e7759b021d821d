"""Benchmark 5: repainting the canvas of a 12 MP image with 200 mask layers.

Two offscreen canvases (1600 x 1000 viewports) show the same 4000 x 3000
image fitted to the view, one with 200 mask layers (random ellipses of 40 to
900 pixels, RLE like the project stores them), one with a single layer.
After a first paint (which builds and caches the layer overlays, timed as
``first_paint_ms``), repaints with :meth:`Canvas.render_to_image` alternate
between the two, fitted and zoomed 1:1 on the image centre.

- ``canvas.repaint_fit`` / ``canvas.repaint_1to1``: 200 layers against 1;
  target 2x.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.common import Emit, Result, interleaved, qt_app

HEIGHT, WIDTH = 3000, 4000
LAYERS = 200
VIEW = (1600, 1000)


def layer_masks(count: int, seed: int = 0) -> list[dict]:
    """``count`` RLE masks of random ellipses on the 4000 x 3000 image."""
    import cv2

    from samdesk import masks

    rng = np.random.default_rng(seed)
    out = []
    canvas = np.zeros((HEIGHT, WIDTH), np.uint8)
    for _ in range(count):
        canvas[:] = 0
        axes = (int(rng.integers(20, 450)), int(rng.integers(20, 450)))
        centre = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        out.append(masks.encode(canvas))
    return out


def _canvas(rgb: np.ndarray, rles: list[dict]) -> tuple[Any, float]:
    """A shown canvas with ``rles`` as layers, and the seconds of its first paint."""
    from samdesk.views.canvas import Canvas
    from samdesk.views.overlays import LayerView

    canvas = Canvas()
    canvas.resize(*VIEW)
    canvas.show()
    canvas.set_image(rgb)
    colours = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4"]
    start = time.perf_counter()
    canvas.set_layers([LayerView(i + 1, rle, colours[i % len(colours)])
                       for i, rle in enumerate(rles)])
    canvas.render_to_image()
    return canvas, time.perf_counter() - start


def run(quick: bool, emit: Emit) -> None:
    from tests.model_factories import textured_image

    app = qt_app()
    calls = 7 if quick else 25
    rgb = textured_image(HEIGHT, WIDTH, 3)
    rles = layer_masks(LAYERS)
    many, many_first = _canvas(rgb, rles)
    one, one_first = _canvas(rgb, rles[:1])
    app.processEvents()
    for view in ("fit", "1to1"):
        for canvas in (many, one):
            canvas.fit()
            if view == "1to1":
                canvas.zoom_1to1()
        timings = interleaved({"many": many.render_to_image, "one": one.render_to_image}, calls)
        figures = {"layers": LAYERS, "image": f"{WIDTH}x{HEIGHT}",
                   "viewport": f"{VIEW[0]}x{VIEW[1]}",
                   "layers_ms": round(timings.median_ms("many"), 2),
                   "one_layer_ms": round(timings.median_ms("one"), 2), "calls": calls}
        if view == "fit":
            figures["first_paint_ms"] = round(1000 * many_first, 1)
            figures["first_paint_one_ms"] = round(1000 * one_first, 1)
        emit(Result(f"canvas.repaint_{view}", figures,
                    timings.median_ms("many") / timings.median_ms("one"), 2.0,
                    f"{LAYERS} layers vs 1, render_to_image"))
    many.close()
    one.close()
