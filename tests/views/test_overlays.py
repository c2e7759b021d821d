"""Mask overlays: box crops of RLE and array masks, colouring, and the per-layer cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samdesk import masks
from samdesk.views.overlays import (
    LAYER_STYLE,
    SELECTED_STYLE,
    LayerView,
    OverlayCache,
    OverlayStyle,
    build_overlay,
    crop_mask,
    overlay_argb,
)
from samdesk.views.qtutil import argb_to_qimage, parse_color, qimage_to_rgb, rgb_to_qimage

ALPHA = 0xFF000000


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@settings(max_examples=150, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_rle_crop_is_the_decoded_mask_inside_its_tight_box(mask):
    rle = masks.encode(mask)
    crop = crop_mask(rle)
    if not mask.any():
        assert crop is None and crop_mask(mask) is None
        return
    x0, y0, x1, y1 = _tight_box(mask)
    assert (crop.x0, crop.y0, crop.mask.shape) == (x0, y0, (y1 - y0, x1 - x0))
    assert np.array_equal(crop.mask, mask[y0:y1, x0:x1])
    assert crop.size == mask.shape
    from_array = crop_mask(mask)
    assert (from_array.x0, from_array.y0) == (x0, y0)
    assert np.array_equal(from_array.mask, crop.mask)
    assert masks.bbox(rle) == [x0, y0, x1 - x0, y1 - y0]


def test_crop_of_a_small_object_on_a_large_image_holds_only_its_box():
    mask = np.zeros((3000, 4000), bool)
    mask[1200:1250, 2500:2600] = True
    mask[1210:1220, 2510:2520] = False  # a hole is kept
    crop = crop_mask(masks.encode(mask))
    assert (crop.x0, crop.y0, crop.mask.shape) == (2500, 1200, (50, 100))
    assert not crop.mask[10:20, 10:20].any() and crop.mask.sum() == 50 * 100 - 100
    assert crop.contains(2500.9, 1200.1) and not crop.contains(2515.5, 1215.5)
    assert not crop.contains(10.0, 10.0)


def _unpremultiply(pixel: int) -> tuple[int, int, int, int]:
    return (pixel >> 24) & 0xFF, (pixel >> 16) & 0xFF, (pixel >> 8) & 0xFF, pixel & 0xFF


def test_overlay_fills_at_alpha_outlines_the_border_and_leaves_the_rest_clear():
    mask = np.zeros((11, 11), bool)
    mask[1:10, 1:10] = True
    mask[5, 5] = False  # a one-pixel hole
    argb = overlay_argb(mask, "#ff8000", OverlayStyle(fill_alpha=0.45, outline_width=1))
    assert argb.dtype == np.uint32 and argb.shape == (11, 11)
    assert argb[0, 0] == 0 and argb[5, 5] == 0  # outside and the hole are transparent
    a, r, g, b = _unpremultiply(int(argb[3, 3]))  # interior: premultiplied 45 % orange
    assert a == 115 and (r, g, b) == (115, 58, 0)
    assert _unpremultiply(int(argb[1, 5])) == (255, 255, 128, 0)  # outer border: opaque
    assert _unpremultiply(int(argb[4, 5])) == (255, 255, 128, 0)  # the hole's rim too
    thick = overlay_argb(mask, "#ff8000", SELECTED_STYLE)
    assert (thick >> 24 == 255).sum() > (argb >> 24 == 255).sum()  # selected: thicker outline
    assert (thick[3, 3] >> 24) > (argb[3, 3] >> 24) or (thick[3, 3] >> 24) == 255


def test_build_overlay_uploads_the_box_only(qapp):
    mask = np.zeros((300, 400), bool)
    mask[100:120, 30:70] = True
    overlay = build_overlay(mask, "#00ff00", LAYER_STYLE)
    assert (overlay.crop.x0, overlay.crop.y0) == (30, 100)
    assert (overlay.pixmap.width(), overlay.pixmap.height()) == (40, 20)
    image = overlay.pixmap.toImage()
    inside, border = image.pixelColor(20, 10), image.pixelColor(0, 10)
    assert (inside.red(), inside.green(), inside.blue(), inside.alpha()) == (0, 255, 0, 115)
    assert (border.green(), border.alpha()) == (255, 255)
    assert build_overlay(np.zeros((5, 5), bool), "#00ff00") is None


def _layer(layer_id: int, mask, color: str = "#ff0000", **kw) -> LayerView:
    return LayerView(layer_id, mask, color, **kw)


def test_cache_rebuilds_only_when_mask_colour_or_selection_change(qapp):
    base = np.zeros((40, 50), bool)
    base[5:15, 5:25] = True
    other = np.zeros((40, 50), bool)
    other[20:30, 10:40] = True
    cache = OverlayCache()
    first = cache.get(_layer(1, masks.encode(base)))
    cache.get(_layer(2, other))
    assert cache.rebuilds == 2
    # the same content again, as new objects (a fresh RLE dict read from the project)
    again = cache.get(_layer(1, masks.encode(base)))
    cache.get(_layer(2, other, visible=False))
    assert cache.rebuilds == 2 and again is first
    cache.get(_layer(1, masks.encode(base), "#00ff00"))
    assert cache.rebuilds == 3
    cache.get(_layer(1, masks.encode(other), "#00ff00"))
    assert cache.rebuilds == 4 and cache.cached(1).crop.y0 == 20
    cache.get(_layer(1, masks.encode(other), "#00ff00", selected=True))
    assert cache.rebuilds == 5
    cache.get(_layer(2, other.copy()))  # a new array object is a new mask
    assert cache.rebuilds == 6
    cache.retain({2})
    assert cache.cached(1) is None and len(cache) == 1
    cache.get(_layer(1, masks.encode(other), "#00ff00", selected=True))
    assert cache.rebuilds == 7


def test_cache_names_the_layer_with_a_bad_colour(qapp):
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="layer 9: colour 'red'"):
        OverlayCache().get(_layer(9, mask, "red"))


def test_parse_color_and_image_round_trips(qapp):
    assert parse_color("#1a2B3c") == (0x1A, 0x2B, 0x3C) and parse_color("#fff") == (255,) * 3
    for bad in ["", "#12345", "12345z", "#ggg"]:
        with pytest.raises(ValueError):
            parse_color(bad)
    rgb = np.random.default_rng(0).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    assert np.array_equal(qimage_to_rgb(rgb_to_qimage(rgb)), rgb)  # odd width: padded rows
    gray = rgb[..., 0]
    assert np.array_equal(qimage_to_rgb(rgb_to_qimage(gray)), np.repeat(gray[..., None], 3, 2))
    argb = np.full((3, 5), ALPHA | 0x00336699, np.uint32)
    image = argb_to_qimage(argb)
    assert image.pixelColor(4, 2).name() == "#336699" and image.pixelColor(0, 0).alpha() == 255
    with pytest.raises(ValueError, match="shape"):
        rgb_to_qimage(np.zeros((4, 4, 4), np.uint8))
