"""Compare two float paths of our own (batched vs single, preview vs full...) as a person would.

Two paths that run the same model in a different order or batch need not give
bit-identical floats, and which CPU instructions run (AVX2, AVX-512) changes
the last bits. A person sees a mask, not its bits: the two masks must agree
except on pixels whose logit sits within a hair of the threshold, and scores
and logits within a small tolerance. Parity with the reference predictors,
where samdesk runs the same operations in the same order, stays exact in the
tests (``np.array_equal``); these helpers are for everything else.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samdesk.inference.engines.upsample import Frame

LOGIT_TOL = 1e-4
"""Logits of two paths differ by less than this (float32, same weights, other batching)."""
SCORE_TOL = 1e-4
"""Predicted IoU scores of two paths differ by less than this."""
MIN_IOU = 0.999


def full_logits(low: np.ndarray, frame: Frame) -> np.ndarray:
    """float32 ``(H, W)`` logits of one ``(256, 256)`` plane in image pixels, as the
    reference predictors upsample them (``frame`` says how: SAM's padded square, SAM 2's
    stretched one)."""
    plane = torch.as_tensor(np.asarray(low, np.float32)).reshape(1, 1, *low.shape[-2:])
    if frame.crop is not None:
        plane = F.interpolate(plane, (frame.square, frame.square), mode="bilinear",
                              align_corners=False)[..., : frame.crop[0], : frame.crop[1]]
    full = F.interpolate(plane, frame.image_size, mode="bilinear", align_corners=False)
    return full[0, 0].numpy()


def assert_masks_close(mask_a: np.ndarray, mask_b: np.ndarray, logits: np.ndarray,
                       threshold: float = 0.0, tol: float = LOGIT_TOL,
                       min_iou: float = MIN_IOU) -> None:
    """Two bool ``(H, W)`` masks of one object agree as a person sees them.

    ``logits``: float ``(H, W)``, the pre-threshold values of either path in
    image pixels (:func:`full_logits`). Passes when IoU >= ``min_iou`` (two empty
    masks agree) and every pixel where the masks differ has
    ``|logit - threshold| < tol``.
    """
    a, b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    assert a.shape == b.shape == np.shape(logits), (a.shape, b.shape, np.shape(logits))
    differ = a ^ b
    if not differ.any():
        return
    union = int((a | b).sum())
    iou = int((a & b).sum()) / union
    margin = np.abs(np.asarray(logits, np.float64)[differ] - threshold)
    assert iou >= min_iou, f"IoU {iou:.6f} < {min_iou} ({int(differ.sum())} pixels differ)"
    assert margin.max() < tol, (
        f"{int((margin >= tol).sum())} of {int(differ.sum())} differing pixels have a logit "
        f"{margin.max():.3g} from the threshold (tolerance {tol})")


def assert_predictions_close(masks_a: np.ndarray, masks_b: np.ndarray, low_logits: np.ndarray,
                             frame: Frame) -> None:
    """Every candidate of ``(..., H, W)`` masks agrees (:func:`assert_masks_close`), the
    logits at each differing pixel read from ``low_logits`` ``(..., 256, 256)``."""
    a, b = np.asarray(masks_a, bool), np.asarray(masks_b, bool)
    assert a.shape == b.shape, (a.shape, b.shape)
    planes = np.asarray(low_logits).reshape(-1, *np.shape(low_logits)[-2:])
    for index, (one, other) in enumerate(zip(a.reshape(-1, *a.shape[-2:]),
                                             b.reshape(-1, *b.shape[-2:]), strict=True)):
        if not np.array_equal(one, other):
            assert_masks_close(one, other, full_logits(planes[index], frame), frame.threshold)
