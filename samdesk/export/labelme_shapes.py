"""One labelme shape to a mask or a box, as labelme itself draws it.

Follows labelme's published format (``labelme/_label_file.py`` and
``utils/shape.py`` ``shape_to_mask`` / ``shapes_to_label``): pixel
coordinates ``[x, y]`` in the upright image, drawn with PIL, boundary
included.

* ``polygon`` (also a shape with no ``shape_type``, as old files have),
  ``oriented_rectangle``: the polygon, filled, outline included.
* ``circle``: points ``[centre, a point on the circle]``, a filled disc.
* ``mask``: ``mask`` a base64 PNG of a crop whose top-left pixel is
  ``points[0]`` (rounded); non-zero pixels are the mask; a crop reaching
  past the image is cut at its border.
* ``rectangle``: a box (XYXY, the corners' min and max; two points as
  labelme writes, or four as X-AnyLabeling does), to become a pending box.
* ``point``, ``points``, ``line``, ``linestrip``: no area; skipped, and
  counted by kind.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from samdesk.project_edits import label_name_problem

AREA_SHAPES = ("polygon", "oriented_rectangle", "circle", "mask")
BOX_SHAPES = ("rectangle",)
NO_AREA_SHAPES = ("point", "points", "line", "linestrip")


class ShapeProblem(ValueError):
    """A shape that cannot be imported; the message says why."""


class ShapeSkipped(Exception):
    """A shape with no area (point, line); ``args[0]`` is its ``shape_type``."""


@dataclass(frozen=True)
class LabelmeShape:
    """A shape read from a file: its label and ``group_id``, and either a ``bool``
    (H, W) ``mask`` or an XYXY ``box`` in upright pixels."""

    label: str
    group_id: int | None
    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None


def shape_kind(shape: Any) -> str:
    """``shape_type`` as written (``polygon`` when absent), for messages."""
    if isinstance(shape, dict) and isinstance(shape.get("shape_type"), str):
        return shape["shape_type"]
    return "polygon"


def read_shape(shape: Any, height: int, width: int) -> LabelmeShape:
    """Turn one entry of ``shapes`` into a mask or a box on a ``width`` x ``height`` image.

    Raises :class:`ShapeSkipped` for a shape with no area and
    :class:`ShapeProblem` for one that cannot be read.
    """
    if not isinstance(shape, dict):
        raise ShapeProblem(f"must be an object, got {type(shape).__name__}")
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ShapeProblem(f"label must be a non-empty string, got {label!r:.60}")
    label = label.strip()
    problem = label_name_problem(label)
    if problem is not None:
        raise ShapeProblem(problem)
    group_id = shape.get("group_id")
    if isinstance(group_id, bool) or not isinstance(group_id, int):
        group_id = None  # labelme: null (or anything else) means an object of its own
    kind = shape_kind(shape)
    if kind in NO_AREA_SHAPES:
        raise ShapeSkipped(kind)
    if kind not in AREA_SHAPES + BOX_SHAPES:
        raise ShapeProblem(f"shape_type {kind!r} is not one labelme writes")
    points = _points(shape.get("points"))
    if kind == "rectangle":
        if len(points) < 2:
            raise ShapeProblem(f"a rectangle needs 2 points, got {len(points)}")
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return LabelmeShape(label, group_id, box=(min(xs), min(ys), max(xs), max(ys)))
    if kind == "mask":
        mask = _mask(shape.get("mask"), points, height, width)
    else:
        mask = _drawn(kind, points, height, width)
    if not mask.any():
        raise ShapeProblem(f"covers no pixel of the {width}x{height} image")
    return LabelmeShape(label, group_id, mask=mask)


def _points(value: Any) -> list[tuple[float, float]]:
    if not isinstance(value, list) or not value:
        raise ShapeProblem("points must be a non-empty list of [x, y]")
    points = []
    for index, point in enumerate(value):
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in point)):
            raise ShapeProblem(f"points[{index}] must be [x, y] (two finite numbers), "
                               f"got {point!r:.60}")
        points.append((float(point[0]), float(point[1])))
    return points


def _drawn(kind: str, points: list[tuple[float, float]], height: int,
           width: int) -> np.ndarray:
    """A polygon or circle drawn the way labelme's ``shape_to_mask`` draws it."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        if len(points) != 2:
            raise ShapeProblem(f"a circle needs 2 points (centre, rim), got {len(points)}")
        (cx, cy), (px, py) = points
        radius = math.hypot(cx - px, cy - py)
        draw.ellipse(((cx - radius, cy - radius), (cx + radius, cy + radius)),
                     outline=1, fill=1)
    else:
        if len(points) < 3:
            raise ShapeProblem(f"a polygon needs at least 3 points, got {len(points)}")
        if kind == "oriented_rectangle" and len(points) != 4:
            raise ShapeProblem(f"an oriented rectangle needs 4 points, got {len(points)}")
        draw.polygon(points, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _mask(value: Any, points: list[tuple[float, float]], height: int,
          width: int) -> np.ndarray:
    """A ``mask`` shape's crop pasted at ``points[0]``, cut at the image border."""
    if not isinstance(value, str) or not value:
        raise ShapeProblem("a mask shape needs 'mask', a base64 PNG")
    try:
        data = base64.b64decode(value, validate=False)
        with Image.open(io.BytesIO(data)) as image:
            crop = np.asarray(image)
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:
        raise ShapeProblem(f"mask is not a base64 PNG ({exc})") from None
    if crop.ndim == 3:
        crop = crop.any(axis=2)
    crop = crop.astype(bool)
    x0, y0 = (int(round(v)) for v in points[0])
    rows, cols = crop.shape
    top, bottom = max(y0, 0), min(y0 + rows, height)
    left, right = max(x0, 0), min(x0 + cols, width)
    mask = np.zeros((height, width), dtype=bool)
    if top < bottom and left < right:
        mask[top:bottom, left:right] = crop[top - y0:bottom - y0, left - x0:right - x0]
    return mask
