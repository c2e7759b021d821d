"""Masks and prompts between the wire and the engines.

Masks leave as polygons (``json``: lists of ``[x, y]`` integer pixels from
OpenCV's outer contours, as the seed services draw them), COCO RLE with str
counts (``rle``), or npz bytes (``binary``). Prompts arrive in Roboflow's
forms and become engine :class:`Prompts`, within the server's limits.
"""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np

from samdesk import masks as rle_masks
from samdesk.inference.engines.base import Point, Prompts
from samdesk.server.errors import ApiError
from samdesk.server.requests import Sam2Prompt
from samdesk.server.settings import ServerSettings

PromptKey = tuple[tuple[float, ...] | None, tuple[tuple[float, float, bool], ...]]


def polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Outer contours of a bool ``(H, W)`` mask, largest first: ``[[[x, y], ...], ...]``."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)
    return [c.reshape(-1, 2).astype(int).tolist() for c in contours]


def mask_out(mask: np.ndarray, fmt: str) -> Any:
    """One mask in a JSON answer: polygons (``json``) or an RLE dict (``rle``)."""
    if fmt == "rle":
        return rle_masks.encode(mask)
    return polygons(mask)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def mask_input_array(value: list[Any] | None, field: str = "mask_input") -> np.ndarray | None:
    """``(1, 256, 256)`` float32 logits from a nested list (``(256, 256)`` accepted)."""
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError):
        raise ApiError(422, f"{field}: not a numeric array") from None
    if array.shape == (256, 256):
        array = array[None]
    if array.shape != (1, 256, 256):
        raise ApiError(422, f"{field}: shape {list(array.shape)}; expected [1, 256, 256]")
    return array


def check_points(count: int, settings: ServerSettings, field: str) -> None:
    if count > settings.max_points:
        raise ApiError(422, f"{field}: {count} points; the server takes at most "
                            f"{settings.max_points} per prompt")


def check_prompts(count: int, settings: ServerSettings) -> None:
    if count > settings.max_prompts:
        raise ApiError(422, f"prompts: {count} prompts; the server takes at most "
                            f"{settings.max_prompts} per request")


def sam_points(coords: list[list[float]] | None, labels: list[float] | None,
               settings: ServerSettings) -> Prompts:
    """Roboflow SAM's ``point_coords`` / ``point_labels`` as one object's prompts."""
    coords = coords or []
    labels = list(labels) if labels is not None else [1.0] * len(coords)
    if not coords:
        raise ApiError(422, "point_coords: no point given")
    if len(labels) != len(coords):
        raise ApiError(422, f"point_labels: {len(labels)} labels for {len(coords)} points")
    check_points(len(coords), settings, "point_coords")
    points = []
    for i, xy in enumerate(coords):
        if len(xy) != 2:
            raise ApiError(422, f"point_coords.{i}: expected [x, y]")
        points.append(Point(float(xy[0]), float(xy[1]), labels[i] > 0))
    return Prompts(points=tuple(points))


def sam2_prompts(prompt: Sam2Prompt, index: int, settings: ServerSettings) -> Prompts:
    """One Roboflow SAM 2 prompt (box and/or points) as one object's prompts."""
    points = prompt.points or []
    check_points(len(points), settings, f"prompts.{index}.points")
    boxes = ()
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box.xyxy()
        if not (x1 > x0 and y1 > y0):
            raise ApiError(422, f"prompts.{index}.box: needs a positive width and height")
        boxes = ((x0, y0, x1, y1),)
    if not points and not boxes:
        raise ApiError(422, f"prompts.{index}: give a box or points")
    return Prompts(points=tuple(Point(p.x, p.y, p.positive) for p in points), boxes=boxes)


def prompt_key(prompts: Prompts) -> PromptKey:
    """A hashable form of one object's prompts, for the logits cache."""
    box = tuple(prompts.boxes[0]) if prompts.boxes else None
    return box, tuple((p.x, p.y, p.positive) for p in prompts.points)


def most_similar(key: PromptKey, kept: list[tuple[PromptKey, np.ndarray]]) -> np.ndarray | None:
    """Logits of the kept prompt most like ``key``: the same box, its points a subset
    of ``key``'s, the most points (the newest on a tie); ``None`` when none is like it."""
    best, best_count = None, -1
    points = set(key[1])
    for earlier, logits in kept:
        if earlier[0] != key[0] or not set(earlier[1]) <= points:
            continue
        if len(earlier[1]) >= best_count:
            best, best_count = logits, len(earlier[1])
    return best
