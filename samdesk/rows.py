"""Conversions between project-store rows and the records of ``annotations``."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from samdesk.annotations import RLE, ImageRecord, ImageStatus, Label, MaskLayer
from samdesk.errors import ProjectError

RowLike = Mapping[str, Any] | sqlite3.Row


def image_record(row: RowLike) -> ImageRecord:
    keys = row.keys()
    missing = bool(row["missing"])
    return ImageRecord(
        id=int(row["id"]),
        path=row["path"],
        width=row["width"],
        height=row["height"],
        content_hash=row["hash"],
        status=ImageStatus(row["status"]),
        error="file is missing" if missing else row["error"],
        changed=bool(row["changed"]),
        annotation_count=int(row["n"]) if "n" in keys else 0,
    )


def label(row: RowLike) -> Label:
    return Label(id=int(row["id"]), name=row["name"], color=row["color"], hotkey=row["hotkey"])


def mask_layer(row: RowLike) -> MaskLayer:
    return MaskLayer(
        id=int(row["id"]),
        image_id=int(row["image_id"]),
        label_id=row["label_id"],
        rle={"size": [int(row["height"]), int(row["width"])], "counts": row["counts"]},
        z=int(row["z"]),
        visible=bool(row["visible"]),
        locked=bool(row["locked"]),
        score=row["score"],
        prompts=json.loads(row["prompts"] or "{}"),
        created=float(row["created"]),
        updated=float(row["updated"]),
    )


def rle_columns(rle: RLE) -> dict[str, Any]:
    """Split a compressed COCO RLE dict into the annotation table's columns."""
    try:
        counts = rle["counts"]
        height, width = (int(v) for v in rle["size"])
    except (KeyError, TypeError, ValueError):
        raise ProjectError("a mask must be a COCO RLE dict with 'size' and 'counts'") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise ProjectError("mask RLE counts must be compressed (str or bytes), not a list")
    return {"height": height, "width": width, "counts": counts}


def dumps(data: Any) -> str:
    """Compact, stable JSON for the prompts column."""
    return json.dumps(data or {}, separators=(",", ":"), sort_keys=True)


def now() -> float:
    """Seconds since the epoch, for created/updated times."""
    return time.time()
