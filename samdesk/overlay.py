"""Masks drawn for people: an image with coloured masks, and masks as PNG files.

Qt-free (OpenCV and Pillow), used by ``samdesk segment --format overlay|png``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samdesk.project_edits import PALETTE

# The label palette as (r, g, b), cycled over objects.
COLORS = tuple(tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in PALETTE)


def draw_overlay(rgb: np.ndarray, masks: list[np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with each bool (H, W) mask filled and outlined."""
    out = rgb.astype(np.float32)
    for i, mask in enumerate(masks):
        color = np.array(COLORS[i % len(COLORS)], np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * color
    result = np.clip(out, 0, 255).astype(np.uint8)
    thickness = max(1, round(max(rgb.shape[:2]) / 500))
    for i, mask in enumerate(masks):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(result, contours, -1, COLORS[i % len(COLORS)], thickness)
    return result


def write_overlay(path: Path, rgb: np.ndarray, masks: list[np.ndarray]) -> None:
    """Save the image with its masks drawn on it (format from the suffix)."""
    Image.fromarray(draw_overlay(rgb, masks)).save(path)


def write_mask_pngs(path: Path, masks: list[np.ndarray]) -> list[Path]:
    """One 8-bit PNG per mask (255 inside, 0 outside): ``path`` for a single mask,
    ``stem-0.png``, ``stem-1.png``... (best first) for several."""
    if len(masks) == 1:
        targets = [path]
    else:
        targets = [path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}")
                   for i in range(len(masks))]
    for target, mask in zip(targets, masks, strict=True):
        Image.fromarray(mask.astype(np.uint8) * 255).save(target, format="PNG")
    return targets
