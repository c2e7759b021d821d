"""Frame sequences and tracks of a project: queries and undoable edits.

A *sequence* is a project whose images are the frames of one video, in the
project's image order (natural order of paths): frame index = position in
:meth:`~samdesk.project.Project.images`. A *track* is one object across the
frames, with one label; each frame holds at most one mask layer of a track.
A layer a person made or changed is *person-made* (``edited``); one written
by propagation and untouched since is *propagated*. An *absent mark* says a
person deleted the track's mask on a frame: the object is not there.

A mixin of :class:`samdesk.project.Project`: every edit is one transaction
and one undo step through ``batch``/``_record``. Consecutive
:meth:`Tracks.write_propagated` calls (one propagation run, with no other edit
between them) form one undo step, so undo takes back the whole run.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from samdesk import rows
from samdesk.annotations import RLE, ImageRecord, ImageStatus, MaskLayer, Track
from samdesk.errors import ProjectError
from samdesk.project_edits import check_fits

if TYPE_CHECKING:
    from pathlib import Path

    from samdesk.history import HistoryEntry, Row

SEQUENCE_KEY = "sequence"
"""Meta key: ``"1"`` when the project's images are the frames of one video."""
PROPAGATED_PROMPTS = {"propagated": True}
"""The prompts recorded on a layer propagation wrote."""
PROPAGATE_STEP = "Propagate"
"""The undo description of a propagation run's writes (one undo step per run)."""


class Tracks:
    """Sequence and track methods of a project."""

    folder: Path
    _conn: sqlite3.Connection
    _mutex: threading.RLock

    if TYPE_CHECKING:  # provided by Project

        def batch(self, description: str, *,
                  chain: bool = False) -> AbstractContextManager[HistoryEntry]: ...
        def _record(self, table: str, row_id: int, before: Row | None,
                    after: Row | None) -> None: ...
        def _row(self, table: str, row_id: int) -> Row: ...
        def _next_id(self, table: str) -> int: ...
        def _refuse_edit(self) -> None: ...
        def _write(self, what: str = "the edit") -> AbstractContextManager[None]: ...
        def _emit(self, kinds: set[str], image_ids: set[int]) -> None: ...
        def _current_images(self) -> list[ImageRecord]: ...
        def annotation(self, ann_id: int) -> MaskLayer: ...
        def _delete_layers(self, ann_ids: list[int], check_lock: bool) -> None: ...

    # --------------------------------------------------------------- sequence
    @property
    def is_sequence(self) -> bool:
        """True when the project is marked as the frames of one video."""
        with self._mutex:
            found = self._conn.execute("SELECT value FROM meta WHERE key=?",
                                       (SEQUENCE_KEY,)).fetchone()
        return found is not None and found[0] == "1"

    def set_sequence(self, flag: bool) -> None:
        """Mark (or unmark) the project as a sequence: a setting, written at once, not
        an undo step. Listeners hear ``"sequence"``."""
        self._refuse_edit()
        with self._mutex, self._write("the sequence mark"):
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               (SEQUENCE_KEY, "1" if flag else "0"))
        self._emit({"sequence"}, set())

    def frame_ids(self) -> list[int]:
        """Image ids in frame order (the project's image order)."""
        with self._mutex:
            return [record.id for record in self._current_images()]

    def frame_index(self, image_id: int) -> int:
        """The 0-based frame index of an image (its position in frame order)."""
        with self._mutex:
            records = self._current_images()
            cached = getattr(self, "_frame_positions", None)
            if cached is None or cached[0] is not records:
                cached = (records, {record.id: k for k, record in enumerate(records)})
                self._frame_positions = cached
        try:
            return cached[1][image_id]
        except KeyError:
            raise ProjectError(f"no image with id {image_id} in {self.folder}") from None

    # ------------------------------------------------------------------ tracks
    def _track_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of ``sql``; none from a store older than tracks, opened read-only."""
        with self._mutex:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc) or "no such column" in str(exc):
                    return []
                raise

    def tracks(self) -> list[Track]:
        """All tracks, by id."""
        return [rows.track(r) for r in self._track_rows("SELECT * FROM tracks ORDER BY id")]

    def track(self, track_id: int) -> Track:
        found = self._track_rows("SELECT * FROM tracks WHERE id=?", (track_id,))
        if not found:
            raise ProjectError(f"no track with id {track_id} in {self.folder}")
        return rows.track(found[0])

    def track_layers(self, track_id: int) -> dict[int, MaskLayer]:
        """The track's layer on each image that has one: image id -> layer."""
        found = self._track_rows("SELECT * FROM annotations WHERE track_id=? ORDER BY image_id",
                                 (track_id,))
        return {int(r["image_id"]): rows.mask_layer(r) for r in found}

    def absent_frames(self, track_id: int) -> set[int]:
        """Image ids where a person marked the track's object as not there."""
        found = self._track_rows("SELECT image_id FROM track_absent WHERE track_id=?",
                                 (track_id,))
        return {int(r[0]) for r in found}

    def add_track(self, label_id: int | None = None, name: str | None = None) -> Track:
        """A new track (no layers yet) with that label and name (undoable)."""
        with self.batch("Add track"):
            if label_id is not None:
                self._row("labels", label_id)
            track_id = self._next_id("tracks")
            self._record("tracks", track_id, None, {"id": track_id, "label_id": label_id,
                                                    "name": name, "created": rows.now()})
        return self.track(track_id)

    def set_layer_track(self, ann_id: int, track_id: int | None) -> MaskLayer:
        """Put a layer in a track (or out of any, ``None``). The layer takes the track's
        label; an unlabelled track takes the layer's. One image holds at most one layer
        of a track: a second is refused."""
        with self.batch("Set track" if track_id is not None else "Leave track"):
            before = self._row("annotations", ann_id)
            after = {**before, "track_id": track_id}
            if track_id is not None:
                track = self._row("tracks", track_id)
                self._refuse_second_layer(track_id, before["image_id"], ann_id)
                if track["label_id"] is None and before["label_id"] is not None:
                    self._relabel(track_id, before["label_id"])
                    track = self._row("tracks", track_id)
                after["label_id"] = track["label_id"]
                if before["edited"]:
                    self._clear_absent(track_id, before["image_id"])
            self._record("annotations", ann_id, before, after)
        return self.annotation(ann_id)

    def relabel_track(self, track_id: int, label_id: int | None) -> None:
        """Give the track and every one of its layers this label (undoable)."""
        with self.batch("Relabel track"):
            self._relabel(track_id, label_id)

    def delete_track(self, track_id: int, layers: str = "keep") -> None:
        """Delete a track and its absent marks; its layers stay, in no track (``"keep"``),
        or are deleted (``"delete"``)."""
        if layers not in ("keep", "delete"):
            raise ProjectError(f"layers must be 'keep' or 'delete', not {layers!r}")
        with self.batch("Delete track"):
            before = self._row("tracks", track_id)
            found = self._conn.execute("SELECT id FROM annotations WHERE track_id=?",
                                       (track_id,)).fetchall()
            if layers == "delete":
                self._delete_layers([int(r[0]) for r in found], check_lock=False)
            else:
                for (ann_id,) in found:
                    row = self._row("annotations", ann_id)
                    self._record("annotations", ann_id, row, {**row, "track_id": None})
            for mark in self._conn.execute("SELECT * FROM track_absent WHERE track_id=?",
                                           (track_id,)).fetchall():
                self._record("track_absent", int(mark["id"]), dict(mark), None)
            self._record("tracks", track_id, before, None)

    def write_propagated(self, image_id: int, track_id: int, rle: RLE,
                         object_score: float) -> MaskLayer | None:
        """Write (or replace) the track's propagated layer on an image, in one transaction.

        Nothing is written (returns None) where the image holds a person-made or
        locked layer of the track, or an absent mark. An empty mask deletes a
        propagated layer there (returns None). The layer takes the track's label;
        ``object_score`` is the model's object score logit. Writes with no other
        edit between them are one undo step.
        """
        from samdesk import masks  # local: pycocotools is only needed here

        with self._mutex, self.batch(PROPAGATE_STEP, chain=True):
            track = self._row("tracks", track_id)
            image = self._row("images", image_id)
            found = self._conn.execute("SELECT * FROM annotations WHERE image_id=? AND "
                                       "track_id=?", (image_id, track_id)).fetchone()
            before = None if found is None else dict(found)
            if before is not None and (before["edited"] or before["locked"]):
                return None
            if self._conn.execute("SELECT 1 FROM track_absent WHERE track_id=? AND image_id=?",
                                  (track_id, image_id)).fetchone() is not None:
                return None
            columns = rows.rle_columns(rle)
            check_fits(image, columns)
            if masks.is_empty(rle):
                if before is not None:
                    self._record("annotations", before["id"], before, None)
                return None
            stamp = rows.now()
            written = {**columns, "label_id": track["label_id"], "edited": 0,
                       "object_score": float(object_score), "updated": stamp,
                       "prompts": rows.dumps(PROPAGATED_PROMPTS)}
            if before is not None:
                ann_id = int(before["id"])
                self._record("annotations", ann_id, before, {**before, **written})
            else:
                ann_id = self._next_id("annotations")
                top = self._conn.execute("SELECT COALESCE(MAX(z), -1) FROM annotations "
                                         "WHERE image_id=?", (image_id,)).fetchone()[0]
                self._record("annotations", ann_id, None, {
                    "id": ann_id, "image_id": image_id, **written, "z": int(top) + 1,
                    "visible": 1, "locked": 0, "score": None, "created": stamp,
                    "track_id": track_id})
                if image["status"] == ImageStatus.TODO.value:
                    self._record("images", image_id, image,
                                 {**image, "status": ImageStatus.IN_PROGRESS.value})
        return self.annotation(ann_id)

    # ----------------------------------------------------------------- helpers
    def _relabel(self, track_id: int, label_id: int | None) -> None:
        """Inside a batch: the track's label and its every layer's become ``label_id``."""
        before = self._row("tracks", track_id)
        if label_id is not None:
            self._row("labels", label_id)
        self._record("tracks", track_id, before, {**before, "label_id": label_id})
        for found in self._conn.execute("SELECT * FROM annotations WHERE track_id=? AND "
                                        "label_id IS NOT ?", (track_id, label_id)).fetchall():
            row = dict(found)
            self._record("annotations", row["id"], row, {**row, "label_id": label_id})

    def _refuse_second_layer(self, track_id: int, image_id: int, ann_id: int | None) -> None:
        """Raise where the image already holds a layer of the track other than ``ann_id``."""
        other = self._conn.execute("SELECT id FROM annotations WHERE image_id=? AND "
                                   "track_id=? AND id IS NOT ?",
                                   (image_id, track_id, ann_id)).fetchone()
        if other is not None:
            what = "a new mask" if ann_id is None else f"mask {ann_id}"
            raise ProjectError(f"image {image_id} already has mask {other[0]} of track "
                               f"{track_id}; {what} cannot join it there (one mask of a "
                               "track per image)")

    def _clear_absent(self, track_id: int, image_id: int) -> None:
        """Inside a batch: a person-made layer of the track on the image clears its mark."""
        found = self._conn.execute("SELECT * FROM track_absent WHERE track_id=? AND "
                                   "image_id=?", (track_id, image_id)).fetchone()
        if found is not None:
            self._record("track_absent", int(found["id"]), dict(found), None)

    def _mark_absent(self, track_id: int, image_id: int) -> None:
        """Inside a batch: record that the track's object is not on the image."""
        if self._conn.execute("SELECT 1 FROM track_absent WHERE track_id=? AND image_id=?",
                              (track_id, image_id)).fetchone() is None:
            mark_id = self._next_id("track_absent")
            self._record("track_absent", mark_id, None,
                         {"id": mark_id, "track_id": track_id, "image_id": image_id})

    def _join_track(self, track_id: int, image_id: int, label_id: int | None,
                    edited: bool) -> int | None:
        """Inside a batch, before a new layer of the track is added on the image: the
        label it takes. A propagated layer of the track there gives way to a person-made
        one (deleted); a person-made one refuses the new layer."""
        track = self._row("tracks", track_id)
        found = self._conn.execute("SELECT * FROM annotations WHERE image_id=? AND "
                                   "track_id=?", (image_id, track_id)).fetchone()
        if found is not None:
            if found["edited"] or not edited:
                self._refuse_second_layer(track_id, image_id, None)
            self._record("annotations", int(found["id"]), dict(found), None)
        if edited:
            self._clear_absent(track_id, image_id)
        if track["label_id"] is None and label_id is not None:
            self._relabel(track_id, label_id)
            return label_id
        return track["label_id"]
