"""Masks to COCO polygons with OpenCV contours.

A COCO polygon is a flat list ``[x1, y1, x2, y2, ...]`` in image pixels,
where pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``. A polygon
cannot have a hole, so only outer boundaries are traced
(``cv2.RETR_EXTERNAL``): holes come back filled, and an island inside a hole
is covered by the filled outer part. Every separate outer part becomes one
polygon.

The contour is traced on the mask upsampled two times (nearest neighbour),
which puts each traced point a quarter pixel inside a pixel edge; snapping
to the nearest pixel corner then gives outlines that run along pixel edges,
with integer coordinates, rather than through the boundary pixels' centres
(which loses half of every boundary pixel). pycocotools rasterises these
polygons back to exactly the mask with its holes filled, one-pixel parts
and one-pixel-wide strokes included (tests/test_export_coco.py checks this).
"""

from __future__ import annotations

import cv2
import numpy as np

UPSAMPLE = 2
"""Contours are traced at this many times the image resolution."""


def contour_to_polygon(contour: np.ndarray, offset_xy: tuple[float, float] = (0, 0)) -> list[int]:
    """One OpenCV contour (N×1×2 int, upsampled pixel centres) to a flat COCO polygon.

    Points are scaled back to image pixels, shifted by ``offset_xy`` and
    snapped to the nearest pixel corner (so they are ints); repeated points
    are dropped. Returns ``[]`` for a piece with fewer than 3 points: it
    encloses nothing.
    """
    points = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
    points = np.rint((points + 0.5) / UPSAMPLE + np.asarray(offset_xy, dtype=np.float64))
    if len(points) > 1:
        previous = np.concatenate((points[-1:], points[:-1]))
        keep = np.any(points != previous, axis=1)
        points = points[keep] if keep.any() else points[:1]
    if len(points) < 3:
        return []
    return points.astype(np.int64).ravel().tolist()


def mask_to_polygons(mask: np.ndarray) -> list[list[int]]:
    """Outer outlines of a ``bool`` (H, W) mask as COCO polygons, one per separate part.

    Parts are 8-connected (pixels touching at a corner are one part). An
    empty mask gives ``[]``.
    """
    array = np.asarray(mask).astype(bool, copy=False)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {array.shape}")
    rows = np.flatnonzero(array.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(array.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.ascontiguousarray(array[top:bottom, left:right], dtype=np.uint8)
    size = (crop.shape[1] * UPSAMPLE, crop.shape[0] * UPSAMPLE)
    upsampled = cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST_EXACT)
    padded = cv2.copyMakeBorder(upsampled, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    offset = (float(left) - 1.0 / UPSAMPLE, float(top) - 1.0 / UPSAMPLE)
    polygons = [contour_to_polygon(c, offset) for c in contours]
    return [p for p in polygons if p]


def polygons_area(polygons: list[list[int]]) -> int:
    """Pixels enclosed by :func:`mask_to_polygons` outlines (shoelace formula).

    Exact for these outlines: they run along pixel edges and separate parts
    do not overlap, so this is the pixel count of the mask with holes filled.
    """
    total = 0
    for polygon in polygons:
        xy = np.asarray(polygon, dtype=np.int64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        x_next, y_next = np.concatenate((x[1:], x[:1])), np.concatenate((y[1:], y[:1]))
        total += abs(int(np.dot(x, y_next) - np.dot(y, x_next)))
    return total // 2
