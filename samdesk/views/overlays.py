"""Coloured mask overlays for the canvas, cropped to each mask's box and cached.

A mask layer is drawn as one small premultiplied ARGB32 pixmap covering only
the mask's bounding box, placed at the box's top-left corner in image pixels:
200 layers on a 12 MP image then cost what their objects cost, not 200 full
frames. :class:`OverlayCache` keeps one overlay per layer id and rebuilds it
only when what it shows changes: the mask, the colour or the selected state.
Hiding and showing a layer, or moving it in the z-order, rebuilds nothing.

The colouring (:func:`crop_mask`, :func:`overlay_argb`) is numpy only; Qt
enters at :func:`build_overlay`, which turns the pixels into a ``QPixmap``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import QPixmap

from samdesk import masks
from samdesk.annotations import RLE
from samdesk.views.qtutil import argb_to_qpixmap, parse_color

Mask = np.ndarray | RLE
"""A mask as the canvas takes it: bool (H, W) array or COCO RLE, upright image frame."""


@dataclass(frozen=True, eq=False)
class LayerView:
    """What the canvas needs to draw one mask layer.

    ``mask`` is a bool ``(H, W)`` array or an RLE dict in the image's upright
    frame; the cache treats it as immutable (pass a new array, or an RLE with
    new counts, when the mask changes). ``color`` is ``"#rrggbb"``.
    """

    id: int
    mask: Mask
    color: str
    visible: bool = True
    selected: bool = False


@dataclass(frozen=True)
class OverlayStyle:
    """Fill opacity (0..1) and outline width in image pixels (0 for none)."""

    fill_alpha: float = 0.45
    outline_width: int = 1
    outline_alpha: float = 1.0


LAYER_STYLE = OverlayStyle(fill_alpha=0.45, outline_width=1)
SELECTED_STYLE = OverlayStyle(fill_alpha=0.65, outline_width=3)
CANDIDATE_STYLE = OverlayStyle(fill_alpha=0.45, outline_width=2)


@dataclass(frozen=True, eq=False)
class Crop:
    """A mask's tight bounding box: ``mask[y0:y0+h, x0:x0+w]`` as bool (h, w).

    ``size`` is the full mask's ``(height, width)``.
    """

    x0: int
    y0: int
    mask: np.ndarray
    size: tuple[int, int]

    def contains(self, x: float, y: float) -> bool:
        """True when image pixel ``(floor(x), floor(y))`` is inside the mask."""
        col, row = int(np.floor(x)) - self.x0, int(np.floor(y)) - self.y0
        height, width = self.mask.shape
        return 0 <= col < width and 0 <= row < height and bool(self.mask[row, col])


def _rle_crop(rle: RLE) -> Crop | None:
    """Decode only the mask's bounding box from an RLE, never the whole image.

    The runs come straight from the compressed counts (column-major, starting
    with a run of zeros). When no run of ones wraps from one column into the
    next, each run is a row span of one column and is written into a box-sized
    array; otherwise the box spans whole columns and the runs are laid out
    along them. Either way the work is the box's area plus the number of runs.
    """
    norm = masks.normalize(rle)
    height, width = norm["size"]
    runs = masks.compressed_runs(norm["counts"])
    ends = np.cumsum(runs)
    starts = ends - runs
    ones = (np.arange(runs.size) % 2 == 1) & (runs > 0)
    starts, ends = starts[ones], ends[ones]
    if starts.size == 0 or height == 0:
        return None
    if int(ends[-1]) > height * width:
        raise ValueError(f"RLE counts cover more than height*width = {height * width} pixels")
    x0, x1 = int(starts[0]) // height, (int(ends[-1]) - 1) // height + 1
    columns, first_rows = starts // height - x0, starts % height
    if bool((columns != (ends - 1) // height - x0).any()):  # a run wraps: whole columns
        y0, y1 = 0, height
        offset = x0 * height
        columns, first_rows, last_rows = np.zeros_like(starts), starts - offset, ends - offset
        shape = (1, (x1 - x0) * height)
    else:
        last_rows = (ends - 1) % height + 1
        y0, y1 = int(first_rows.min()), int(last_rows.max())
        first_rows, last_rows = first_rows - y0, last_rows - y0
        shape = (x1 - x0, y1 - y0)
    delta = np.zeros((shape[0], shape[1] + 1), dtype=np.int32)
    np.add.at(delta, (columns, first_rows), 1)
    np.add.at(delta, (columns, last_rows), -1)
    inside = np.cumsum(delta[:, :-1], axis=1) > 0
    crop = np.ascontiguousarray(inside.reshape(x1 - x0, y1 - y0).T)
    return Crop(x0, y0, crop, (height, width))


def crop_mask(mask: Mask) -> Crop | None:
    """The tight-box crop of a bool (H, W) array or RLE; ``None`` when the mask is empty."""
    if isinstance(mask, dict):
        return _rle_crop(mask)
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {array.shape}")
    array = array.astype(bool, copy=False)
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return Crop(x0, y0, array[y0:y1, x0:x1].copy(), (array.shape[0], array.shape[1]))


def _premultiplied(rgb: tuple[int, int, int], alpha: float) -> np.uint32:
    a = int(round(255 * min(max(alpha, 0.0), 1.0)))
    r, g, b = (int(round(c * a / 255)) for c in rgb)
    return np.uint32((a << 24) | (r << 16) | (g << 8) | b)


def overlay_argb(crop: np.ndarray, color: str, style: OverlayStyle = LAYER_STYLE) -> np.ndarray:
    """Colour a bool (h, w) crop: uint32 (h, w) ARGB32 premultiplied.

    Outside the mask is transparent; inside is ``color`` at ``style.fill_alpha``;
    the inner ``style.outline_width`` pixels along the mask's border (holes
    included, and the crop's own edge) are ``color`` at ``style.outline_alpha``.
    """
    rgb = parse_color(color)
    palette = np.array([0, _premultiplied(rgb, style.fill_alpha),
                        _premultiplied(rgb, style.outline_alpha)], dtype=np.uint32)
    inside = crop.astype(np.uint8)
    index = inside.copy()
    if style.outline_width > 0:
        size = 2 * style.outline_width + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        eroded = cv2.erode(inside, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        index += inside - eroded  # 2 on the border, 1 inside, 0 outside
    return palette[index]


@dataclass(frozen=True, eq=False)
class Overlay:
    """A built overlay: ``pixmap`` goes at image pixel ``(crop.x0, crop.y0)``."""

    crop: Crop
    pixmap: QPixmap


def build_overlay(mask: Mask, color: str, style: OverlayStyle = LAYER_STYLE) -> Overlay | None:
    """Crop, colour and upload one mask; ``None`` when the mask is empty."""
    crop = crop_mask(mask)
    if crop is None:
        return None
    return Overlay(crop, argb_to_qpixmap(overlay_argb(crop.mask, color, style)))


def _mask_key(mask: Mask) -> object:
    """What identifies a mask's content cheaply: RLE size and counts, or the array itself."""
    if isinstance(mask, dict):
        norm = masks.normalize(mask)
        return ("rle", norm["size"][0], norm["size"][1], norm["counts"])
    return ("array", id(mask))


@dataclass(eq=False)
class _Entry:
    mask: Mask  # held so that an array's id cannot be reused while cached
    mask_key: object
    color: str
    selected: bool
    overlay: Overlay | None


class OverlayCache:
    """One overlay per layer id, rebuilt only when mask, colour or selection change.

    RLE masks are compared by content (size and counts); arrays by identity.
    ``rebuilds`` counts every overlay built, which is what a repaint-heavy
    session should keep low.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, layer: LayerView) -> Overlay | None:
        """The layer's overlay, built now if missing or out of date; ``None`` when empty."""
        key = _mask_key(layer.mask)
        entry = self._entries.get(layer.id)
        if (entry is not None and entry.color == layer.color
                and entry.selected == layer.selected
                and (entry.mask is layer.mask or entry.mask_key == key)):
            return entry.overlay
        style = SELECTED_STYLE if layer.selected else LAYER_STYLE
        try:
            overlay = build_overlay(layer.mask, layer.color, style)
        except ValueError as exc:
            raise ValueError(f"layer {layer.id}: {exc}") from None
        self.rebuilds += 1
        self._entries[layer.id] = _Entry(layer.mask, key, layer.color, layer.selected, overlay)
        return overlay

    def cached(self, layer_id: int) -> Overlay | None:
        """The overlay last built for ``layer_id``, without checking it is current."""
        entry = self._entries.get(layer_id)
        return None if entry is None else entry.overlay

    def retain(self, layer_ids: set[int]) -> None:
        """Forget every layer not in ``layer_ids``."""
        for stale in set(self._entries) - layer_ids:
            del self._entries[stale]

    def clear(self) -> None:
        self._entries.clear()

