"""COCO run-length encoded masks, over :mod:`pycocotools.mask`.

Every mask samdesk stores is an :data:`~samdesk.annotations.RLE`: a dict
``{"size": [height, width], "counts": str}`` holding pycocotools' compressed
counts as text. Masks are in the image's upright frame; holes and every
separate part are kept exactly. Decoded masks are ``bool`` arrays of shape
``(height, width)``, row-major (C order).

Functions accept an RLE whose ``counts`` is ``str`` or ``bytes`` (compressed)
or a list of ints (COCO's uncompressed form); they always return ``str``
counts. Union and intersection run on the RLEs in pycocotools; difference
(which pycocotools lacks) decodes to numpy and encodes again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools import mask as cocomask

from samdesk.annotations import RLE

__all__ = [
    "area",
    "bbox",
    "decode",
    "difference",
    "empty",
    "encode",
    "from_polygons",
    "intersection",
    "is_empty",
    "merge",
    "normalize",
    "union",
    "validate",
]


def encode(mask: np.ndarray) -> RLE:
    """Encode a 2-D mask (any dtype; nonzero = inside) of shape (H, W) as RLE."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {array.shape}")
    fortran = np.asfortranarray(array.astype(bool, copy=False).astype(np.uint8)[:, :, None])
    encoded = cocomask.encode(fortran)[0]
    return {"size": [int(encoded["size"][0]), int(encoded["size"][1])],
            "counts": encoded["counts"].decode("ascii")}


def normalize(rle: RLE) -> RLE:
    """Return ``rle`` with compressed ``str`` counts and int sizes.

    Accepts compressed counts as ``str`` or ``bytes`` and uncompressed counts
    as a list of ints (COCO ``iscrowd`` style). Raises ``ValueError`` naming
    the field when the RLE is malformed.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("RLE must be a dict with 'size' and 'counts'")
    size, counts = rle["size"], rle["counts"]
    if (type(counts) is str and type(size) is list and len(size) == 2  # the usual case, fast
            and type(size[0]) is int and type(size[1]) is int and size[0] >= 0 and size[1] >= 0):
        return {"size": [size[0], size[1]], "counts": counts}
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in size)):
        raise ValueError(f"RLE size must be [height, width] of non-negative ints, got {size!r}")
    height, width = int(size[0]), int(size[1])
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts}
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(c, (int, np.integer)) and c >= 0 for c in counts):
            raise ValueError("RLE counts list must hold non-negative ints")
        if sum(int(c) for c in counts) != height * width:
            raise ValueError(
                f"RLE counts add up to {sum(int(c) for c in counts)}, "
                f"not height*width = {height * width}"
            )
        compressed = cocomask.frPyObjects(
            {"size": [height, width], "counts": [int(c) for c in counts]}, height, width
        )
        return {"size": [height, width], "counts": compressed["counts"].decode("ascii")}
    raise ValueError(
        f"RLE counts must be str, bytes or a list of ints, got {type(counts).__name__}"
    )


def validate(rle: RLE) -> RLE:
    """:func:`normalize` and also check that the runs cover exactly height*width pixels.

    pycocotools trusts compressed counts: a string that is too short decodes
    to uninitialised memory. Call this on RLEs read from files a person gave
    us (imports); masks samdesk encoded itself need no check.
    """
    norm = normalize(rle)
    height, width = norm["size"]
    runs = compressed_runs(norm["counts"])
    if runs.size and int(runs.min()) < 0:
        raise ValueError("RLE counts hold a negative run length")
    if int(runs.sum()) != height * width:
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels, "
                         f"not height*width = {height * width}")
    return norm


def compressed_runs(counts: str) -> np.ndarray:
    """Run lengths (int64) of pycocotools' compressed counts string, without decoding.

    Each number is 5-bit groups, low first, with bit 0x20 meaning "more
    follows" and bit 0x10 of the last group the sign, offset by 48 into
    printable characters; from the fourth number on, each is stored as the
    difference to the number two places before it.
    """
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        return codes
    if int(codes.min()) < 0 or int(codes.max()) > 63:
        raise ValueError("RLE counts string holds characters outside '0'..'o'")
    last = np.flatnonzero((codes & 0x20) == 0)
    if last.size == 0 or last[-1] != codes.size - 1:
        raise ValueError("RLE counts string ends in the middle of a number")
    first = np.concatenate(([0], last[:-1] + 1))
    groups = last - first + 1
    if int(groups.max()) > 12:
        raise ValueError("RLE counts string holds a number too long to be a run")
    position = np.arange(codes.size) - np.repeat(first, groups)
    values = np.add.reduceat((codes & 0x1F) << (5 * position), first)
    negative = (codes[last] & 0x10) != 0
    values[negative] |= np.left_shift(np.int64(-1), 5 * groups[negative])
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def _coco(rle: RLE) -> dict:
    """The form pycocotools' C functions take: bytes counts."""
    norm = normalize(rle)
    return {"size": norm["size"], "counts": norm["counts"].encode("ascii")}


def decode(rle: RLE) -> np.ndarray:
    """Decode an RLE to a new C-ordered ``bool`` array of shape (height, width)."""
    height, width = normalize(rle)["size"]
    if height == 0 or width == 0:
        return np.zeros((height, width), dtype=bool)
    # pycocotools returns 0/1 uint8 in Fortran order; callers get C order (Qt, cv2, tobytes).
    return np.ascontiguousarray(cocomask.decode(_coco(rle)).view(bool))


def empty(height: int, width: int) -> RLE:
    """An RLE with no pixels set, of the given size."""
    return encode(np.zeros((height, width), dtype=bool))


def area(rle: RLE) -> int:
    """Number of pixels inside the mask."""
    return int(cocomask.area(_coco(rle)))


def bbox(rle: RLE) -> list[float]:
    """Tight box ``[x, y, w, h]`` (COCO convention, pixels, float); zeros when empty."""
    return [float(v) for v in cocomask.toBbox(_coco(rle))]


def is_empty(rle: RLE) -> bool:
    """True when no pixel is set."""
    return area(rle) == 0


def _same_size(rles: Sequence[RLE]) -> tuple[int, int]:
    sizes = {tuple(normalize(r)["size"]) for r in rles}
    if len(sizes) != 1:
        raise ValueError(f"masks differ in size: {sorted(sizes)}")
    height, width = sizes.pop()
    return int(height), int(width)


def merge(rles: Iterable[RLE]) -> RLE:
    """Union of one or more masks of the same size."""
    items = list(rles)
    if not items:
        raise ValueError("merge needs at least one mask")
    height, width = _same_size(items)
    merged = cocomask.merge([_coco(r) for r in items], intersect=0)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def union(a: RLE, b: RLE) -> RLE:
    """Pixels in ``a`` or ``b`` (a brush stroke added to a mask)."""
    return merge([a, b])


def intersection(a: RLE, b: RLE) -> RLE:
    """Pixels in both ``a`` and ``b``."""
    height, width = _same_size([a, b])
    merged = cocomask.merge([_coco(a), _coco(b)], intersect=1)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def difference(a: RLE, b: RLE) -> RLE:
    """Pixels in ``a`` and not in ``b`` (an eraser stroke taken off a mask)."""
    _same_size([a, b])
    return encode(decode(a) & ~decode(b))


def from_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> RLE:
    """Rasterise COCO polygons (each ``[x1, y1, x2, y2, ...]`` in pixels) into one mask.

    Pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``; the parts are
    united. A polygon with fewer than 3 points encloses nothing and is
    ignored. An odd number of coordinates, or a coordinate that is not finite
    or lies absurdly far outside the image, raises ``ValueError``.
    """
    limit = 8.0 * max(height, width) + 64.0
    usable: list[list[float]] = []
    for index, polygon in enumerate(polygons):
        coords = np.asarray(polygon, dtype=np.float64).ravel()
        if coords.size % 2:
            raise ValueError(f"polygon {index} has an odd number of coordinates ({coords.size})")
        if not (np.isfinite(coords).all() and (np.abs(coords) <= limit).all()):
            raise ValueError(f"polygon {index} has a coordinate that is not finite "
                             f"or lies far outside the {width}x{height} image")
        if coords.size >= 6:
            usable.append(coords.tolist())
    if not usable or height == 0 or width == 0:
        return empty(height, width)
    parts = cocomask.frPyObjects(usable, height, width)
    merged = cocomask.merge(parts)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}
