"""The images of a project: listing the folder into the store, and the image list.

A mixin of :class:`samdesk.project.Project`; it relies on the project's
connection, lock and ``_emit``. Opening a folder of 100,000 images is one
``scandir`` walk, one natural sort, one insert statement and one read, so it
costs a few times a bare ``os.scandir`` walk (``bench/folder.py``):

* a reopen that finds the files the last scan recorded, still in the order it
  wrote them, sorts and writes nothing (:func:`storage.listing_unchanged`);
* :meth:`images` keeps the list it last built and hands out copies until the
  database changes (any write through this connection, or a commit by
  another, as seen by ``PRAGMA data_version``); the first scan of a folder
  builds that list from the listing itself.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from samdesk import imagefiles, rows, storage
from samdesk.annotations import ImageRecord, ImageStatus

if TYPE_CHECKING:
    from pathlib import Path

Stamp = tuple[int, int]
"""``(total_changes, data_version)``: equal stamps mean an unchanged database."""


class ImageListing:
    """Folder scanning and the image list; see the module docstring."""

    folder: Path
    _conn: sqlite3.Connection
    _mutex: threading.RLock
    _emit: Callable[[set[str], set[int]], None]
    _image_list: tuple[Stamp, list[ImageRecord]] | None = None

    def rescan(self) -> int:
        """List the folder's images again; returns how many are new. Never decodes.

        New files get rows, files gone are flagged missing (their masks are
        kept), every present file takes its place in natural order, and files
        that changed since they were first read are flagged.
        """
        listed = imagefiles.scan_images(self.folder)
        with self._mutex, rows.gc_paused():
            if storage.listing_unchanged(self._conn, listed):
                self._check_changed_files()
                return 0
            listed = imagefiles.natural_sorted(listed)
            known = {path: (image_id, position, missing) for image_id, path, position, missing
                     in self._tuples("SELECT id, path, position, missing FROM images")}
            new_slots: list[str | None] = listed  # listed paths not stored yet; None where stored
            moved = []
            if known:
                new_slots = []
                for position, path in enumerate(listed):
                    old = known.get(path)
                    new_slots.append(path if old is None else None)
                    if old is not None and (old[1] != position or old[2]):
                        moved.append((position, old[0]))
            gone = known.keys() - set(listed)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                first_id = storage.insert_images(self._conn, new_slots)
                self._conn.executemany("UPDATE images SET position=?, missing=0 WHERE id=?", moved)
                self._conn.executemany("UPDATE images SET missing=1 WHERE id=?",
                                       [(known[p][0],) for p in gone if not known[p][2]])
                storage.record_listing(self._conn, listed)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            if not known:  # a first scan: the list is the listing, numbered from first_id
                self._image_list = (self._stamp(), rows.new_image_records(first_id, listed))
            self._check_changed_files()
        added = len(new_slots) - new_slots.count(None)
        if added or gone:
            self._emit({"images"}, set())
        return added

    def _tuples(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` as plain tuples (several times cheaper than ``sqlite3.Row``)."""
        cursor = self._conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    def _stamp(self) -> Stamp:
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        return self._conn.total_changes, int(version)

    def _check_changed_files(self) -> None:
        """Flag images whose file differs from the one first read (size, time, then hash)."""
        found = self._tuples("SELECT id, path, hash, mtime, fsize FROM images "
                             "WHERE hash IS NOT NULL AND missing=0")
        flagged = []
        for image_id, path, digest, mtime, fsize in found:
            file = self.folder / path
            try:
                stat = file.stat()
            except OSError:
                continue
            if stat.st_size == fsize and stat.st_mtime == mtime:
                continue
            try:
                if imagefiles.content_hash(file) != digest:
                    flagged.append((image_id,))
            except OSError:
                continue
        if flagged:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("UPDATE images SET changed=1 WHERE id=?", flagged)
            self._conn.execute("COMMIT")

    def images(self, status: ImageStatus | None = None) -> list[ImageRecord]:
        """Images in natural order of their paths, with their mask counts.

        A missing file's image stays listed while it has masks. Returns a new
        list each call; the records are immutable and shared between calls.
        """
        wanted = None if status is None else ImageStatus(status)
        with self._mutex:
            records = self._current_images()
        if wanted is None:
            return list(records)
        return [record for record in records if record.status == wanted]

    def _current_images(self) -> list[ImageRecord]:
        """The kept image list, read again when the database changed since."""
        in_transaction = self._conn.in_transaction  # uncommitted rows may yet roll back
        stamp = None if in_transaction else self._stamp()
        if stamp is not None and self._image_list is not None and self._image_list[0] == stamp:
            return self._image_list[1]
        where = ("FROM images i WHERE (i.missing=0 OR EXISTS "
                 "(SELECT 1 FROM annotations a WHERE a.image_id=i.id))")
        with rows.gc_paused():
            counts = dict(self._tuples(
                "SELECT image_id, COUNT(*) FROM annotations GROUP BY image_id"))
            try:
                arrays = self._conn.execute(f"SELECT {rows.IMAGE_COLUMNS_JSON} {where}").fetchone()
            except sqlite3.OperationalError:  # an SQLite built without JSON functions
                found = self._tuples(f"SELECT {rows.IMAGE_COLUMNS} {where} "
                                     "ORDER BY i.position, i.id")
                records = rows.image_records(found, counts)
            else:
                records = rows.image_records_from_json(tuple(arrays), counts)
        self._image_list = None if stamp is None else (stamp, records)
        return records
