"""The wire format between a desktop's remote engine and ``samdesk serve``'s native routes.

Shared by the client (:mod:`samdesk.inference.engines.remote`) and the server
(:mod:`samdesk.server.routes_native`), so both read and write the same bytes.
No HTTP library and no torch here: only JSON, numpy and COCO RLE.

- **Prompts** are JSON ``{"points": [{"x", "y", "positive"}], "boxes":
  [[x0, y0, x1, y1], ...]}`` in upright-image pixels, exactly
  :class:`~samdesk.inference.engines.base.Prompts` (several boxes are several
  objects).
- **mask_input** (request) and **logits** (answer) are ``.npy`` bytes, the
  request's base64-encoded in the JSON body. Logits travel as float16 by
  default (131,072 bytes per candidate of 256 x 256); the desktop's engine asks
  for float32, so that what it refines with is the server's logits exactly.
- **The answer to a predict** is an ``.npz`` (``np.savez``, uncompressed):
  ``header`` the UTF-8 bytes (uint8) of a JSON text ``{"image_size": [H, W],
  "masks": [{"object", "candidate", "size": [h, w], "counts"}]}`` (masks as
  COCO RLE with str counts), ``scores`` float32 ``(objects, candidates)``, and ``logits``
  ``(objects, candidates, 256, 256)`` when asked for.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from samdesk.inference.engines.base import EngineError, Point, Prompts

API = "/samdesk/v1"
"""Prefix of the native routes."""

NPZ_TYPE = "application/x-npz"
"""Content type of a predict answer."""

LOGITS_DTYPES = ("float16", "float32", "none")


def prompts_to_json(prompts: Prompts) -> dict[str, Any]:
    """``prompts`` as the JSON object the predict route takes."""
    return {
        "points": [{"x": float(p.x), "y": float(p.y), "positive": bool(p.positive)}
                   for p in prompts.points],
        "boxes": [[float(v) for v in box] for box in prompts.boxes],
    }


def prompts_from_json(points: list[dict[str, Any]], boxes: list[list[float]]) -> Prompts:
    """The :class:`Prompts` of a request; a wrong box raises :class:`EngineError`."""
    made = tuple(Point(float(p["x"]), float(p["y"]), bool(p.get("positive", True)))
                 for p in points)
    corners = []
    for box in boxes:
        if len(box) != 4:
            raise EngineError(f"box {box}: expected [x0, y0, x1, y1]")
        corners.append(tuple(float(v) for v in box))
    return Prompts(points=made, boxes=tuple(corners))  # type: ignore[arg-type]


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    stream = io.BytesIO()
    np.save(stream, np.ascontiguousarray(array), allow_pickle=False)
    return stream.getvalue()


def npy_from_bytes(data: bytes, field: str) -> np.ndarray:
    """The array of ``.npy`` bytes; a clear :class:`EngineError` naming ``field``."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EngineError(f"{field}: not .npy bytes ({exc})") from None


def b64_npy(array: np.ndarray) -> str:
    return base64.b64encode(npy_bytes(array)).decode("ascii")


def npy_from_b64(text: str, field: str) -> np.ndarray:
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        raise EngineError(f"{field}: not base64") from None
    return npy_from_bytes(data, field)


@dataclass
class Answer:
    """A decoded predict answer: the masks asked for by ``(object, candidate)``,
    ``scores`` float32 ``(objects, candidates)``, ``logits`` float32 or None."""

    image_size: tuple[int, int]
    masks: dict[tuple[int, int], dict[str, Any]]
    scores: np.ndarray
    logits: np.ndarray | None


def pack_answer(image_size: tuple[int, int], masks: list[dict[str, Any]], scores: np.ndarray,
                logits: np.ndarray | None) -> bytes:
    """The ``.npz`` bytes of a predict answer (see the module docstring)."""
    header = json.dumps({"image_size": [int(v) for v in image_size], "masks": masks})
    arrays: dict[str, np.ndarray] = {"header": np.frombuffer(header.encode(), np.uint8),
                                     "scores": np.asarray(scores, dtype=np.float32)}
    if logits is not None:
        arrays["logits"] = logits
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def unpack_answer(data: bytes) -> Answer:
    """An :class:`Answer` from :func:`pack_answer`'s bytes."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode("utf-8"))
            scores = np.asarray(npz["scores"], dtype=np.float32)
            logits = (np.asarray(npz["logits"], dtype=np.float32)
                      if "logits" in npz.files else None)
    except (ValueError, OSError, KeyError, EOFError) as exc:
        raise EngineError(f"the server's answer is not a samdesk predict answer ({exc})") from None
    masks = {(int(m["object"]), int(m["candidate"])):
             {"size": [int(v) for v in m["size"]], "counts": str(m["counts"])}
             for m in header["masks"]}
    height, width = header["image_size"]
    return Answer((int(height), int(width)), masks, scores, logits)
