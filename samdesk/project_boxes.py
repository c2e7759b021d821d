"""Pending boxes: detection boxes without a mask, waiting for a segmenter.

A dataset of detection boxes (COCO ``bbox`` with ``segmentation: []``,
labelme rectangles, YOLO detection labels) is imported as pending boxes on
their image, with their label. A segmenter turns each into a mask
(:meth:`PendingBoxes.resolve_pending_box`: the mask is added with the box's
label and the box removed, in one transaction and one undo step); a person
may also delete one. Every change is undoable, like any other edit.

Boxes are XYXY in the image's upright frame, in pixels (floats: ``x0 < x1``,
``y0 < y1``; the pixel at column ``c`` spans ``c .. c + 1``). A box is kept
as given, only clipped to the image where its size is known.

A mixin of :class:`samdesk.project.Project`, like :mod:`samdesk.project_edits`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from samdesk import masks, rows
from samdesk.annotations import RLE
from samdesk.errors import ProjectError
from samdesk.imagefiles import display_path, stored_path

if TYPE_CHECKING:
    from pathlib import Path

    from samdesk.annotations import MaskLayer
    from samdesk.history import HistoryEntry, Row

Box = tuple[float, float, float, float]
"""XYXY in upright image pixels."""


@dataclass(frozen=True)
class PendingBox:
    """A box on one image waiting to become a mask.

    ``box`` is XYXY in upright image pixels; ``label_id`` the label the mask
    will get (None: unlabelled); ``source`` where it came from (a file name).
    """

    id: int
    image_id: int
    box: Box
    label_id: int | None
    source: str


def box_problem(box: Sequence[float], width: int | None = None,
                height: int | None = None) -> str | None:
    """Why ``box`` (XYXY pixels) cannot be a pending box on an image of this size,
    or None when it can: four finite numbers, positive width and height, and
    (where the size is known) some part inside the image. For importers, which
    report a bad box and go on."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return "a box must be four numbers x0, y0, x1, y1"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return "a box coordinate is not a finite number"
    if x1 <= x0 or y1 <= y0:
        return f"box {_shown((x0, y0, x1, y1))} has no area"
    if width is not None and height is not None and (
            x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height):
        return f"box {_shown((x0, y0, x1, y1))} lies outside the {width}x{height} image"
    return None


def _shown(box: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def clip_box(box: Sequence[float], width: int | None, height: int | None) -> Box:
    """``box`` clipped to a ``width`` x ``height`` image (as it is when the size is unknown)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if width is None or height is None:
        return (x0, y0, x1, y1)
    return (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))


def mask_in_box(rle: RLE, box: Sequence[float]) -> RLE:
    """``rle`` with every pixel outside ``box`` cleared.

    A pixel is inside when it overlaps the box (the box rounded outwards to
    whole pixels), so a tight detection box keeps its object's border pixels.
    """
    mask = masks.decode(rle)
    height, width = mask.shape
    x0, y0, x1, y1 = clip_box(box, width, height)
    keep = np.zeros_like(mask)
    keep[int(math.floor(y0)):int(math.ceil(y1)), int(math.floor(x0)):int(math.ceil(x1))] = True
    return masks.encode(mask & keep)


def _pending_box(row: Any) -> PendingBox:
    return PendingBox(id=int(row["id"]), image_id=int(row["image_id"]),
                      box=(float(row["x0"]), float(row["y0"]), float(row["x1"]),
                           float(row["y1"])),
                      label_id=row["label_id"], source=row["source"])


class PendingBoxes:
    """Pending-box methods of a project."""

    folder: Path
    _conn: sqlite3.Connection
    _mutex: threading.RLock

    if TYPE_CHECKING:  # provided by Project

        def batch(self, description: str) -> AbstractContextManager[HistoryEntry]: ...
        def _record(self, table: str, row_id: int, before: Row | None,
                    after: Row | None) -> None: ...
        def _row(self, table: str, row_id: int) -> Row: ...
        def _next_id(self, table: str) -> int: ...
        def add_annotation(self, image_id: int, rle: RLE, label_id: int | None = None,
                           score: float | None = None,
                           prompts: dict[str, Any] | None = None) -> MaskLayer: ...

    def pending_boxes(self, image_id: int | None = None) -> list[PendingBox]:
        """The pending boxes of one image (or all, by image), oldest first."""
        if image_id is None:
            found = self._read_boxes("SELECT * FROM pending_boxes ORDER BY image_id, id")
        else:
            found = self._read_boxes("SELECT * FROM pending_boxes WHERE image_id=? ORDER BY id",
                                     (image_id,))
        return [_pending_box(r) for r in found]

    def _read_boxes(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of ``sql``; none from an older store opened read-only (no such table)."""
        with self._mutex:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise

    def pending_box(self, box_id: int) -> PendingBox:
        return _pending_box(self._box_row(box_id))

    def _box_row(self, box_id: int) -> Row:
        with self._mutex:
            found = self._conn.execute("SELECT * FROM pending_boxes WHERE id=?",
                                       (box_id,)).fetchone()
        if found is None:
            raise ProjectError(f"no pending box with id {box_id} in {self.folder} "
                               "(made into a mask or deleted already)")
        return dict(found)

    def pending_box_counts(self) -> dict[int, int]:
        """Number of pending boxes per image id (images without any left out)."""
        found = self._read_boxes("SELECT image_id, COUNT(*) FROM pending_boxes GROUP BY image_id")
        return {int(r[0]): int(r[1]) for r in found}

    def add_pending_boxes(self, image_id: int, boxes: Sequence[tuple[Sequence[float], int | None]],
                          source: str) -> list[int]:
        """Add ``(box, label id or None)`` pairs to an image as pending boxes (one undo step).

        Boxes are XYXY in upright pixels, clipped to the image where its size
        is known. A box already pending on the image with the same label and
        coordinates, or one a mask of the image was already made from, is
        not added again (importing a file twice changes nothing). Returns the
        ids of the boxes added, in the order given: ``len(boxes) - len(ids)``
        were already there. A bad box (see :func:`box_problem`) or an unknown
        image or label raises :class:`~samdesk.errors.ProjectError` and adds none.
        """
        added: list[int] = []
        with self.batch(f"Add {len(boxes)} box{'es' if len(boxes) != 1 else ''}"):
            image = self._row("images", image_id)
            width, height = image["width"], image["height"]
            seen = {(_pending_box(r).box, r["label_id"]) for r in self._conn.execute(
                "SELECT * FROM pending_boxes WHERE image_id=?", (image_id,))}
            seen |= self._boxes_made_into_masks(image_id)
            labels_checked: set[int] = set()
            for box, label_id in boxes:
                problem = box_problem(box, width, height)
                if problem is not None:
                    name = display_path(stored_path(image["path"]))
                    raise ProjectError(f"{name}: {problem}; no box was added")
                if label_id is not None and label_id not in labels_checked:
                    self._row("labels", label_id)
                    labels_checked.add(label_id)
                clipped = clip_box(box, width, height)
                if (clipped, label_id) in seen:
                    continue
                seen.add((clipped, label_id))
                box_id = self._next_id("pending_boxes")
                x0, y0, x1, y1 = clipped
                self._record("pending_boxes", box_id, None, {
                    "id": box_id, "image_id": image_id, "label_id": label_id, "x0": x0,
                    "y0": y0, "x1": x1, "y1": y1, "source": str(source),
                    "created": rows.now()})
                added.append(box_id)
        return added

    def _boxes_made_into_masks(self, image_id: int) -> set[tuple[Box, int | None]]:
        """The (box, label id) pairs the masks of an image were made from (their prompts)."""
        made: set[tuple[Box, int | None]] = set()
        for label_id, prompts in self._conn.execute(
                "SELECT label_id, prompts FROM annotations WHERE image_id=? "
                "AND prompts LIKE '%pending_box%'", (image_id,)):
            box = json.loads(prompts or "{}").get("pending_box")
            if isinstance(box, list) and len(box) == 4:
                made.add((tuple(float(v) for v in box), label_id))  # type: ignore[arg-type]
        return made

    def resolve_pending_box(self, box_id: int, rle: RLE, score: float | None = None,
                            prompts: dict[str, Any] | None = None) -> int:
        """Turn a pending box into a mask: ``rle`` (upright frame, clipped to the box
        here) is added with the box's label and the box removed, in one transaction
        and one undo step. Returns the new mask's annotation id. An empty mask (or one
        with no pixel inside its box) raises :class:`~samdesk.errors.ProjectError` and
        keeps the box. ``prompts`` (the model, say) is kept with the mask, beside the box."""
        with self.batch("Mask from box"):
            row = self._box_row(box_id)
            box = _pending_box(row)
            clipped = mask_in_box(rle, box.box)
            if masks.is_empty(clipped):
                raise ProjectError(f"box {_shown(box.box)} gave an empty mask; the box is kept")
            made = {**(prompts or {}), "box": list(box.box), "pending_box": list(box.box)}
            if box.source:
                made["imported_from"] = box.source
            layer = self.add_annotation(box.image_id, clipped, box.label_id, score=score,
                                        prompts=made)
            self._record("pending_boxes", box_id, row, None)
        return layer.id

    def delete_pending_box(self, box_id: int) -> None:
        """Remove a pending box without making a mask (undoable)."""
        with self.batch("Delete box"):
            row = self._box_row(box_id)
            self._record("pending_boxes", box_id, row, None)
