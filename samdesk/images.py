"""The one image loader of the whole app: upright RGB uint8, errors named per file.

Every image is decoded with its EXIF orientation applied once, here, so every
mask, prompt and exported width/height is in the *upright* frame. Whatever the
pixel mode on disk, callers get ``(H, W, 3)`` ``uint8`` RGB:

- ``1``, ``L``: gray repeated on the three channels (``1`` becomes 0 / 255).
- ``LA``, ``RGBA``, ``P`` with transparency: the alpha channel is dropped, not
  composited; a transparent pixel shows the colour stored under it.
- ``CMYK``: Pillow's plain conversion (no ICC colour management).
- ``I;16`` / ``I;16B`` / ``I;16L``, and ``I`` holding values in 0..65535: 16-bit
  data shifted right by 8. ``I`` outside that range and ``F`` are stretched
  min..max to 0..255, except ``F`` already in 0..1 (times 255) or 0..255 (kept).
- Multi-frame files (TIFF pages, animated WebP): the first frame.

A file that cannot be decoded raises :class:`~samdesk.errors.ImageReadError`
with a short reason ("truncated file", "empty file", "not an image", ...);
nothing here switches on Pillow's ``LOAD_TRUNCATED_IMAGES``.

This module opens and decodes (pixel limit, memory check, orientation, size);
the pixel modes are converted in :mod:`samdesk.image_modes`, and decoded
images are kept in memory by :class:`samdesk.image_store.ImageStore`.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samdesk.errors import ImageReadError
from samdesk.image_modes import to_8bit, to_array
from samdesk.imagefiles import (
    IMAGE_EXTENSIONS,
    content_hash,
    is_image_name,
    list_images,
    natural_key,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "content_hash",
    "is_image_name",
    "list_images",
    "load_display",
    "load_rgb",
    "natural_key",
    "read_size",
]

MAX_PIXELS = 1_000_000_000
"""Largest image (width x height) we decode; a 20000x20000 scan is 400 million."""

_ORIENTATION_TAG = 0x0112
_T = Image.Transpose
# EXIF orientation -> the transpose that turns the stored pixels upright.
_UPRIGHT = {
    2: _T.FLIP_LEFT_RIGHT,
    3: _T.ROTATE_180,
    4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE,
    6: _T.ROTATE_270,
    7: _T.TRANSVERSE,
    8: _T.ROTATE_90,
}

_limit_lock = threading.Lock()
_limit_users = 0
_limit_saved: int | None = None
_limit_raised = False


@contextmanager
def _pixel_limit() -> Iterator[None]:
    """Raise Pillow's decompression-bomb limit to :data:`MAX_PIXELS` while we read.

    Pillow refuses images above ``2 * Image.MAX_IMAGE_PIXELS`` (179 megapixels
    by default) as possible decompression bombs. Scans and orthophotos of
    20000x20000 are real images a person labels, so our loader deliberately
    raises the limit, only while one of its reads is running, and puts the old
    value back when the last one ends. Pillow still refuses anything past twice
    our limit, and :func:`_open` refuses anything past it with a plain reason.
    """
    global _limit_users, _limit_saved, _limit_raised
    with _limit_lock:
        if _limit_users == 0:
            current = Image.MAX_IMAGE_PIXELS
            _limit_raised = current is not None and current < MAX_PIXELS
            if _limit_raised:
                _limit_saved = current
                Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            # Put the old value back unless somebody else changed it meanwhile.
            if _limit_users == 0 and _limit_raised and Image.MAX_IMAGE_PIXELS == MAX_PIXELS:
                Image.MAX_IMAGE_PIXELS = _limit_saved
                _limit_raised = False


def _reason(exc: BaseException) -> str:
    """A short reason a person understands for why ``exc`` stopped a read."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, Image.DecompressionBombError):
        return "image too large to decode"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode"
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return "truncated file"
    return f"cannot decode ({text[:120]})"


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Run a read with our pixel limit; any failure becomes ``ImageReadError(path)``."""
    try:
        with _pixel_limit():
            yield
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow's plugins raise many types for a bad file
        raise ImageReadError(path, _reason(exc)) from exc


def _open(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only) and refuse empty or oversized files."""
    if os.stat(path).st_size == 0:
        raise ImageReadError(path, "empty file")
    image = Image.open(path)
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        limit = MAX_PIXELS // 1_000_000
        raise ImageReadError(path, f"image too large ({width}x{height}, over {limit} megapixels)")
    return image


def _decode_bytes(image: Image.Image, target: tuple[int, int] | None) -> int:
    """Bytes a decode of the opened ``image`` holds at its peak (an estimate).

    Pillow keeps a multi-band image at 4 bytes a pixel and one band at 1, 2
    or 4; the result is ``(H, W, 3)`` uint8 at ``target`` (or the full size);
    a mode other than ``L``/``RGB`` is converted through one more buffer.
    """
    width, height = image.size
    bands = len(image.getbands())
    per_pixel = 4 if bands > 1 else {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}.get(
        image.mode, 1)
    source = width * height * per_pixel
    out_w, out_h = target or (width, height)
    converted = 0 if image.mode in ("L", "RGB") else width * height * 4
    return source + converted + out_w * out_h * 3


def _memory_free() -> int | None:
    """Bytes this process may still allocate: the least of what its address-space
    limit (``ulimit -v``) leaves and what the system has available; None if unknown."""
    free = []
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as stream:
                used = int(stream.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            free.append(soft - used)
    except (ImportError, OSError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as stream:
            info = dict(line.split(":", 1) for line in stream)
        free.append((int(info["MemAvailable"].split()[0]) +
                     int(info.get("SwapFree", "0 kB").split()[0])) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    return min(free) if free else None


def _too_large(size: tuple[int, int], needed: int) -> str:
    return f"too large to decode: {size[0]}x{size[1]}, {needed >> 20} MB needed"


def _check_memory(path: Path, image: Image.Image, target: tuple[int, int] | None) -> None:
    """Refuse, before decoding, an image whose pixels would not fit in the memory left."""
    needed = _decode_bytes(image, target)
    if needed < 64 << 20:  # small images: not worth reading /proc
        return
    free = _memory_free()
    if free is not None and needed > free:
        raise ImageReadError(path, f"{_too_large(image.size, needed)}, {max(free, 0) >> 20} MB "
                                   "free")


def _tiff_orients_itself() -> bool:
    """Whether this Pillow turns TIFFs upright itself.

    Recent releases report a TIFF's upright size on open and transpose its
    pixels on load, so applying the orientation tag again would undo it.
    """
    buffer = io.BytesIO()
    Image.new("L", (2, 1)).save(buffer, "TIFF", tiffinfo={_ORIENTATION_TAG: 6})
    buffer.seek(0)
    with Image.open(buffer) as probe:
        return probe.size == (1, 2)


_TIFF_ORIENTS_ITSELF = _tiff_orients_itself()


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 still to apply to an opened image, read without decoding."""
    if image.format == "TIFF" and _TIFF_ORIENTS_ITSELF:
        return 1
    return recorded_orientation(image)


def recorded_orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 written in an opened image's header (1 when none), whether
    or not this Pillow applies it itself (TIFF); read without decoding."""
    # PngImageFile.getexif() decodes the whole file when no eXIf chunk came
    # before the pixel data, so for PNG only a chunk already seen is read.
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make the pixels unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode(path: Path, max_side: int | None) -> tuple[np.ndarray, float]:
    """Decode ``path`` upright, at most ``max_side`` pixels on its longer side."""
    with _reading(path), _open(path) as image:
        orientation = _orientation(image)
        width, height = image.size  # stored frame; the scale is the same in both
        scale = 1.0
        target = None
        if max_side is not None and max(width, height) > max_side:
            scale = max_side / max(width, height)
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            # JPEG: libjpeg decodes straight at 1/2, 1/4 or 1/8 of the size, the
            # smallest that is still >= target. Other formats ignore the draft.
            image.draft(image.mode, target)
        _check_memory(path, image, target)
        try:
            image.load()
        except MemoryError:
            needed = _decode_bytes(image, target)
            raise ImageReadError(path, _too_large(image.size, needed)) from None
        pixels = to_8bit(image)
        if pixels is not image:
            image.close()  # frees the decoded source now, not when the block ends
        if target is not None and pixels.size != target:
            # reducing_gap: shrink by an integer factor with reduce() first, then
            # resample the last step, instead of filtering at full resolution.
            pixels = pixels.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        if orientation in _UPRIGHT:
            pixels = pixels.transpose(_UPRIGHT[orientation])
        return to_array(pixels), scale


@contextmanager
def opened(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """``path`` opened lazily (header only) under this loader's pixel limit.

    Any failure inside the block (also while decoding it) raises
    :class:`ImageReadError` naming ``path``: write nothing else inside it.
    """
    path = Path(path)
    with _reading(path), _open(path) as image:
        yield image


def pending_orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 that this loader applies to an opened image (1: none)."""
    return _orientation(image)


def turn_upright(image: Image.Image, orientation: int) -> Image.Image:
    """Decoded pixels in the stored frame turned upright for ``orientation`` (as every
    load here turns them); ``image`` itself when there is nothing to turn."""
    return image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image


def read_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Upright ``(width, height)`` in pixels, from the file header only.

    EXIF orientations 5 to 8 turn the picture a quarter, so width and height
    swap. Raises :class:`ImageReadError` for a missing, empty or non-image file.
    """
    path = Path(path)
    with _reading(path), _open(path) as image:
        width, height = image.size
        return (height, width) if _orientation(image) >= 5 else (width, height)


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` at full resolution: ``(H, W, 3)`` uint8 RGB, upright.

    ``H`` and ``W`` are :func:`read_size` in the upright frame. The array is
    new and writable. Raises :class:`ImageReadError` naming the file.
    """
    return _decode(Path(path), None)[0]


def load_display(path: str | os.PathLike[str], max_side: int = 4096) -> tuple[np.ndarray, float]:
    """A display proxy of ``path``: upright RGB uint8 with longer side <= ``max_side``.

    Returns ``(proxy, scale)`` where ``scale`` is proxy pixels per image pixel
    (1.0 and the full image when it already fits): image point ``(x, y)`` is at
    ``(x * scale, y * scale)`` in the proxy. JPEGs are decoded directly at a
    reduced size; other formats are decoded once at full size in their own
    mode and shrunk before conversion to RGB. Masks stay full resolution.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    return _decode(Path(path), max_side)
