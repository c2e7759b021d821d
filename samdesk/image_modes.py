"""Any decoded Pillow pixel mode to ``(H, W, 3)`` uint8 RGB, as :mod:`samdesk.images` promises.

:func:`to_8bit` turns each mode into ``L`` or ``RGB`` by the rules listed in
:mod:`samdesk.images` (16-bit shifted by 8, ``I`` / ``F`` stretched, alpha
dropped); :func:`to_array` copies the result into a new writable numpy array
in strips, without a second full-size buffer. Qt-free, torch-free.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["to_8bit", "to_array"]

_STRIP_BYTES = 32 << 20  # pixels are copied into numpy this many bytes at a time


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map finite ``values`` linearly from their min..max onto 0..255 uint8."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    span = high - low if high > low else 1.0
    scaled = (np.where(finite, values, low) - low) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_8bit(image: Image.Image) -> Image.Image:
    """The decoded ``image`` as mode ``L`` or ``RGB`` (see :mod:`samdesk.images`)."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in ("1", "LA", "La"):
        return image.convert("L")
    if mode in ("P", "PA") and "transparency" in image.info:
        return image.convert("RGBA").convert("RGB")
    if mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    if mode == "I":
        values = np.asarray(image)
        if values.size and values.min() >= 0 and values.max() <= 0xFFFF:
            return Image.fromarray((values >> 8).astype(np.uint8))
        return Image.fromarray(_stretch(values))
    if mode == "F":
        values = np.asarray(image)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0 and finite.max() <= 255:
            gain = 255.0 if finite.max() <= 1 else 1.0
            scaled = np.where(np.isfinite(values), values, 0) * gain
            return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
        return Image.fromarray(_stretch(values))
    try:
        return image.convert("RGB")
    except ValueError:
        raise ValueError(f"unsupported pixel mode {mode}") from None


def to_array(image: Image.Image) -> np.ndarray:
    """Copy an ``L`` or ``RGB`` image into a new writable ``(H, W, 3)`` uint8 array.

    Large images are copied in strips so that no second full-size buffer is
    made on the way (``np.asarray`` would first copy the whole image to bytes).
    """
    width, height = image.size
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _STRIP_BYTES // (4 * width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = image if rows >= height else image.crop((0, top, width, bottom))
        pixels = np.asarray(strip)
        if pixels.ndim == 3:
            out[top:bottom] = pixels
        else:  # one channel at a time: a stride-0 broadcast copy is several times slower
            for channel in range(3):
                out[top:bottom, :, channel] = pixels
    return out
