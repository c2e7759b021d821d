"""Bringing back work kept in a spare store while the folder was read-only.

A folder that cannot be written keeps its project in a spare store in the
user data folder (:func:`samdesk.storage.locate_store`). Once the folder can
be written again, opening it merges that store into the folder's own, as one
undoable edit: labels by name (colour and hotkey kept), mask layers on their
image (by path) placed on top of the ones there, pending boxes on their
image, and an image's status where the spare one is further along (todo <
in progress < done). A layer already there (same image, label and mask), or
a box already pending there, is not added twice. The spare store's
folder is then renamed ``…-merged-STAMP``, kept, not deleted.

A mixin of :class:`samdesk.project.Project`, like :mod:`samdesk.project_edits`.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from contextlib import AbstractContextManager, closing
from pathlib import Path
from typing import TYPE_CHECKING

from samdesk import backups, storage, store_checks
from samdesk.errors import ProjectError, ProjectLockedError

if TYPE_CHECKING:
    from samdesk.history import HistoryEntry, Row

_STATUS_RANK = {"todo": 0, "in_progress": 1, "done": 2}


def refuse_lost_store(db_path: Path, folder: Path) -> None:
    """Refuse to start a new, empty store where one is missing but its backups are kept."""
    newest = backups.newest_backup(db_path)
    if not db_path.exists() and newest is not None:
        raise ProjectError(
            f"{db_path} is missing, but its backups are kept beside it (newest "
            f"{newest.relative_to(db_path.parent)}); run `samdesk restore-backup {folder}`, "
            "or remove the backups folder to start a new project")


class SpareMerging:
    """:meth:`merge_spare` for :class:`~samdesk.project.Project`."""

    folder: Path
    _conn: sqlite3.Connection

    if TYPE_CHECKING:  # provided by Project

        def batch(self, description: str) -> AbstractContextManager[HistoryEntry]: ...
        def _record(self, table: str, row_id: int, before: Row | None,
                    after: Row | None) -> None: ...
        def _next_id(self, table: str) -> int: ...

    def merge_spare(self, spare: Path) -> str:
        """Merge the spare store at ``spare`` into this project; returns the line to show."""
        lock = storage.ProjectLock(spare.parent / "lock", self.folder)
        try:
            lock.acquire()
        except ProjectLockedError:
            return (f"work kept in {spare} is not merged yet: another samdesk has it open; "
                    "it is merged the next time this folder opens")
        try:
            labels, images, layers, boxes = _read_spare(spare)
            added = self._merge_rows(spare, labels, images, layers, boxes)
        except (ProjectError, sqlite3.Error, OSError) as exc:
            return f"work kept in {spare} could not be merged ({exc}); it is left there"
        finally:
            lock.release()
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        kept = spare.parent.with_name(f"{spare.parent.name}-merged-{stamp}")
        try:
            os.replace(spare.parent, kept)
        except OSError as exc:
            return (f"merged {added} masks kept in {spare}, but could not rename it "
                    f"({exc}); remove it by hand so it is not merged again")
        return f"merged {added} masks kept in {spare} while the folder was read-only " \
               f"(the old store is kept as {kept})"

    def _merge_rows(self, spare: Path, labels: list[Row], images: dict[int, Row],
                    layers: list[Row], boxes: list[Row] | None = None) -> int:
        conn = self._conn
        added = 0
        if not labels and not layers and not boxes:
            return 0  # nothing a person made there: no empty undo step
        with self.batch(f"Merge work kept in {spare}"):
            label_ids: dict[int, int] = {}
            for label in labels:
                found = conn.execute("SELECT id FROM labels WHERE name=?",
                                     (label["name"],)).fetchone()
                if found is None:
                    new_id = self._next_id("labels")
                    self._record("labels", new_id, None, {**label, "id": new_id})
                    label_ids[label["id"]] = new_id
                else:
                    label_ids[label["id"]] = int(found[0])
            image_ids: dict[int, int] = {}
            for old_id, image in images.items():
                found = conn.execute("SELECT * FROM images WHERE path=?",
                                     (image["path"],)).fetchone()
                if found is None:  # listed there, gone here: kept as missing with its masks
                    new_id = self._next_id("images")
                    row = {**image, "id": new_id, "missing": 1}
                    self._record("images", new_id, None, row)
                    image_ids[old_id] = new_id
                    continue
                mine = dict(found)
                image_ids[old_id] = mine["id"]
                rank = _STATUS_RANK.get(image["status"], -1)
                if rank > _STATUS_RANK.get(mine["status"], 3):
                    self._record("images", mine["id"], mine, {**mine, "status": image["status"]})
            for layer in layers:
                image_id = image_ids[layer["image_id"]]
                label_id = label_ids.get(layer["label_id"]) if layer["label_id"] else None
                same = conn.execute(
                    "SELECT 1 FROM annotations WHERE image_id=? AND label_id IS ? AND counts=? "
                    "AND height=? AND width=?",
                    (image_id, label_id, layer["counts"], layer["height"], layer["width"]),
                ).fetchone()
                if same is not None:
                    continue
                top = conn.execute("SELECT COALESCE(MAX(z), -1) FROM annotations "
                                   "WHERE image_id=?", (image_id,)).fetchone()[0]
                new_id = self._next_id("annotations")
                self._record("annotations", new_id, None,
                             {**layer, "id": new_id, "image_id": image_id,
                              "label_id": label_id, "z": int(top) + 1,
                              "track_id": None})  # the spare's tracks are not merged
                added += 1
            for box in boxes or []:  # pending boxes: the same box twice is one
                image_id = image_ids[box["image_id"]]
                label_id = label_ids.get(box["label_id"]) if box["label_id"] else None
                same = conn.execute(
                    "SELECT 1 FROM pending_boxes WHERE image_id=? AND label_id IS ? AND x0=? "
                    "AND y0=? AND x1=? AND y1=?", (image_id, label_id, box["x0"], box["y0"],
                                                   box["x1"], box["y1"])).fetchone()
                if same is None:
                    new_id = self._next_id("pending_boxes")
                    self._record("pending_boxes", new_id, None,
                                 {**box, "id": new_id, "image_id": image_id,
                                  "label_id": label_id})
        return added


def _read_spare(spare: Path) -> tuple[list[Row], dict[int, Row], list[Row], list[Row]]:
    """The labels, images (by id), mask layers and pending boxes of the spare store,
    checked first (a store older than pending boxes has none)."""
    store_checks.check_file(spare)
    uri = spare.resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        store_checks.check_health(conn, spare)
        version = store_checks.check_version(conn, spare, storage.SCHEMA_VERSION)
        store_checks.check_columns(conn, spare, storage.tables_at(version))
        columns = storage.tables_at(version)  # an older spare lacks the newer columns
        labels = [dict(r) for r in conn.execute(
            f"SELECT {', '.join(columns['labels'])} FROM labels ORDER BY id")]
        images = {int(r["id"]): dict(r) for r in conn.execute(
            f"SELECT {', '.join(columns['images'])} FROM images")}
        layers = [dict(r) for r in conn.execute(
            f"SELECT {', '.join(columns['annotations'])} FROM annotations "
            "ORDER BY image_id, z, id")]
        boxes = [] if "pending_boxes" not in storage.tables_at(version) else [
            dict(r) for r in conn.execute(
                f"SELECT {', '.join(columns['pending_boxes'])} FROM pending_boxes ORDER BY id")]
    return labels, images, layers, boxes
