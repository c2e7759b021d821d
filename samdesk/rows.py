"""Conversions between project-store rows and the records of ``annotations``."""

from __future__ import annotations

import gc
import json
import operator
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import islice, repeat
from typing import Any

from samdesk.annotations import RLE, ImageRecord, ImageStatus, Label, MaskLayer, Track
from samdesk.errors import ProjectError
from samdesk.imagefiles import stored_path, stored_paths

RowLike = Mapping[str, Any] | sqlite3.Row


def image_record(row: RowLike) -> ImageRecord:
    keys = row.keys()
    missing = bool(row["missing"])
    return ImageRecord(
        id=int(row["id"]),
        path=stored_path(row["path"]),
        width=row["width"],
        height=row["height"],
        content_hash=row["hash"],
        status=ImageStatus(row["status"]),
        error="file is missing" if missing else row["error"],
        changed=bool(row["changed"]),
        annotation_count=int(row["n"]) if "n" in keys else 0,
    )


IMAGE_COLUMNS = "i.id, i.path, i.width, i.height, i.hash, i.status, i.error, i.changed, i.missing"
"""The columns :func:`image_records` takes, in its order, from ``images i``."""

_STATUS = {status.value: status for status in ImageStatus}
_RECORD_FIELDS = ("id", "path", "width", "height", "content_hash", "status", "error", "changed",
                  "annotation_count")
_SET_FIELD = tuple(getattr(ImageRecord, name).__set__ for name in _RECORD_FIELDS)
"""The slot setters of :class:`ImageRecord`, in the order :func:`image_records` fills them."""


def image_records(found: list[tuple[Any, ...]], counts: dict[int, int]) -> list[ImageRecord]:
    """Records from rows of :data:`IMAGE_COLUMNS` (plain tuples) and mask counts by image id.

    The same records as :func:`image_record`, built a column at a time (see
    :func:`_build_records`): the list a project of 100,000 images shows.
    """
    if not found:
        return []
    columns = zip(*found, strict=True)
    ids, paths, widths, heights, digests, statuses, errors, changed, missing = columns
    status_column = list(map(_STATUS.get, statuses))
    if None in status_column:  # a status this version does not know: the enum's own error
        ImageStatus(statuses[status_column.index(None)])
    return _build_records(len(ids), (
        ids, stored_paths(list(paths)), widths, heights, digests, status_column,
        map(_error_text, errors, missing) if any(missing) else errors,
        map(bool, changed),
        map(counts.get, ids, repeat(0)) if counts else repeat(0)))


IMAGE_COLUMNS_JSON = (
    "json_group_array(i.id), json_group_array(i.path), json_group_array(i.width), "
    "json_group_array(i.height), json_group_array(i.hash), json_group_array(i.status), "
    "json_group_array(CASE WHEN i.missing THEN 'file is missing' ELSE i.error END), "
    "json_group_array(i.changed), json_group_array(i.position)")
"""The images columns as one JSON array each, for :func:`image_records_from_json`."""


def image_records_from_json(arrays: tuple[str, ...], counts: dict[int, int]) -> list[ImageRecord]:
    """Records from one row of :data:`IMAGE_COLUMNS_JSON`, in order of position, then id.

    The same records as :func:`image_records`; each column comes out of
    SQLite as one JSON text and is parsed in C, which is about twice as fast
    as fetching the rows as tuples.
    """
    return image_records_from_columns(list(map(json.loads, arrays)), counts)


def image_records_from_columns(columns: list[list[Any]],
                               counts: dict[int, int]) -> list[ImageRecord]:
    """Records from the parsed columns of :data:`IMAGE_COLUMNS_JSON`, by position, then id.

    The rows may come in any order: they are put in position order here (no
    work when they already are). ``columns`` is not changed.
    """
    columns = list(columns)
    ids, positions = columns[0], columns.pop()
    count = len(ids)
    if count > 1 and not all(map(operator.lt, positions, islice(positions, 1, None))):
        order = sorted(range(count), key=list(zip(positions, ids, strict=True)).__getitem__)
        pick = operator.itemgetter(*order)
        columns = [pick(column) for column in columns]
        ids = columns[0]
    columns[1] = stored_paths(columns[1])
    statuses = columns[5]
    status_column = list(map(_STATUS.get, statuses))
    if None in status_column:  # a status this version does not know: the enum's own error
        ImageStatus(statuses[status_column.index(None)])
    columns[5] = status_column
    columns[7] = map(bool, columns[7])
    columns.append(map(counts.get, ids, repeat(0)) if counts else repeat(0))
    return _build_records(count, tuple(columns))


def new_image_records(first_id: int, paths: list[str]) -> list[ImageRecord]:
    """Records of images just listed: ids from ``first_id`` on, every other field unset."""
    return _build_records(len(paths), (
        range(first_id, first_id + len(paths)), paths, repeat(None), repeat(None),
        repeat(None), repeat(ImageStatus.TODO), repeat(None), repeat(False), repeat(0)))


def _build_records(count: int, columns: tuple[Iterable[Any], ...]) -> list[ImageRecord]:
    """``count`` records whose fields, in :data:`_RECORD_FIELDS` order, come from ``columns``.

    Each field of every record is set through its slot in one C-level pass:
    about twice as fast as calling the frozen dataclass's ``__init__`` per
    record. Every column must hold ``count`` values (or repeat endlessly).
    """
    records: list[ImageRecord] = list(map(object.__new__, repeat(ImageRecord, count)))
    for set_field, column in zip(_SET_FIELD, columns, strict=True):
        deque(map(set_field, records, column), maxlen=0)
    return records


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many objects without cycles are made.

    Building 100,000 records otherwise triggers collections that walk every
    object made so far, which costs about as much as building them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _error_text(error: str | None, missing: int) -> str | None:
    return "file is missing" if missing else error


def label(row: RowLike) -> Label:
    return Label(id=int(row["id"]), name=row["name"], color=row["color"], hotkey=row["hotkey"])


def mask_layer(row: RowLike) -> MaskLayer:
    keys = row.keys()  # a store older than schema 4, opened read-only, has no track columns
    tracked = "track_id" in keys
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
        track_id=row["track_id"] if tracked else None,
        edited=bool(row["edited"]) if tracked else True,
        object_score=row["object_score"] if tracked else None,
    )


def track(row: RowLike) -> Track:
    return Track(id=int(row["id"]), label_id=row["label_id"], name=row["name"])


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
