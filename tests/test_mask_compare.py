"""The shared comparison of two float paths: a flip only on the threshold passes, others fail."""

from __future__ import annotations

import numpy as np
import pytest

from samdesk.inference.engines.upsample import Frame
from tests.mask_compare import assert_masks_close, assert_predictions_close, full_logits


def disk_logits(size: int = 400) -> np.ndarray:
    """float32 (size, size) logits: positive inside a disk of radius size/4, 0 on its edge."""
    yy, xx = np.mgrid[:size, :size]
    return (size / 4 - np.hypot(yy - size / 2, xx - size / 2)).astype(np.float32)


def test_a_pixel_on_the_threshold_may_differ_one_far_from_it_may_not() -> None:
    logits = disk_logits()
    logits[10, 10] = 5e-5  # a pixel a hair above the threshold
    mask = logits > 0
    flipped = mask.copy()
    flipped[10, 10] = False
    assert_masks_close(mask, flipped, logits)
    assert_masks_close(np.zeros_like(mask), np.zeros_like(mask), logits)
    inside = mask.copy()
    inside[200, 200] = False  # the centre: logit 100, a person sees a hole
    with pytest.raises(AssertionError, match="from the threshold"):
        assert_masks_close(mask, inside, logits)
    with pytest.raises(AssertionError, match="IoU"):
        assert_masks_close(mask, np.zeros_like(mask), logits)


def test_low_resolution_logits_are_read_at_the_differing_pixels() -> None:
    low = disk_logits(256)[None, None]  # (objects, candidates, 256, 256)
    frame = Frame((300, 500), crop=(614, 1024), square=1024)
    masks = full_logits(low[0, 0], frame)[None, None] > 0
    assert masks.any() and not masks.all()
    assert_predictions_close(masks, masks.copy(), low, frame)
    broken = masks.copy()
    broken[0, 0, 0, 0] = ~broken[0, 0, 0, 0]  # a corner, far outside the disk
    with pytest.raises(AssertionError):
        assert_predictions_close(masks, broken, low, frame)
