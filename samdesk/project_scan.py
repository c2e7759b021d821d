"""The images of a project: listing the folder into the store, and the image list.

A mixin of :class:`samdesk.project.Project`; it relies on the project's
connection, lock and ``_emit``. Opening a folder of 100,000 images is one
``scandir`` walk, one read of the store and, for a folder seen for the first
time, one natural sort and one insert statement, so it costs a few times a
bare ``os.scandir`` walk (``bench/folder.py``):

* the store is read on a thread while the folder is listed: every column
  of the listed images in one statement (SQLite lets go of the GIL, so the
  read overlaps with the listing). When the files found are the ones the
  last scan recorded, still in the order it wrote them
  (:func:`storage.listing_matches`), nothing is sorted or written and the
  image list is built from that same read;
* a first scan (no images stored yet) adds its rows with one statement in
  one transaction (a new store with a rollback journal, then WAL: see
  :func:`storage.connect`), on a thread while the image list is built from
  the listing; :meth:`rescan` returns when both are done;
* :meth:`images` keeps the list it last built and hands out copies until the
  database changes (any write through this connection, or a commit by
  another, as seen by ``PRAGMA data_version``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from samdesk import imagefiles, rows, storage
from samdesk.annotations import ImageRecord, ImageStatus
from samdesk.transaction import write_transaction

if TYPE_CHECKING:
    from pathlib import Path

T = TypeVar("T")
Stamp = tuple[int, int]
"""``(total_changes, data_version)``: equal stamps mean an unchanged database."""

_LISTED = ("FROM images i WHERE (i.missing=0 OR EXISTS "
           "(SELECT 1 FROM annotations a WHERE a.image_id=i.id))")
"""The images the list shows: present files, and missing ones that still have masks."""
_ARRAYS = rows.IMAGE_COLUMNS_JSON.count("json_group_array(")
"""How many columns :data:`rows.IMAGE_COLUMNS_JSON` has."""


def _stamp_of(conn: sqlite3.Connection) -> Stamp:
    version = conn.execute("PRAGMA data_version").fetchone()[0]
    return conn.total_changes, int(version)


@contextlib.contextmanager
def _in_background(call: Callable[[], T]) -> Iterator[Future[T]]:
    """Run ``call()`` on a thread of its own while the ``with`` body runs; joined on exit.

    For work that spends its time inside SQLite, which lets go of the GIL
    meanwhile, so that it overlaps with Python work on the calling thread.
    The caller holds the project's lock and leaves the connection to this
    thread until the block ends; the future's ``result()`` raises its error.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="samdesk-scan") as pool:
        yield pool.submit(call)


class Unchanged(NamedTuple):
    """A rescan found what the store holds; ``hashed``: some image has a content hash
    or a read error (so some file may need looking at again)."""

    hashed: bool


class ImageListing:
    """Folder scanning and the image list; see the module docstring."""

    folder: Path
    db_path: Path
    _conn: sqlite3.Connection
    _mutex: threading.RLock
    _emit: Callable[[set[str], set[int]], None]
    _image_list: tuple[Stamp, list[ImageRecord]] | None = None
    if TYPE_CHECKING:  # provided by ChangedFiles

        def _check_changed_files(self) -> None: ...
    scan_problems: list[tuple[str, str]] = []
    """``(relative path, reason)`` of image-named links the last :meth:`rescan` could not
    follow ("broken link", "link loop"): not images of the project, but named in ``info``."""

    def rescan(self) -> int:
        """List the folder's images again; returns how many are new. Never decodes.

        New files get rows, files gone are flagged missing (their masks are
        kept), every present file takes its place in natural order, and files
        that changed since they were first read are flagged.
        """
        with self._mutex, rows.gc_paused():
            problems: list[tuple[str, str]] = []
            with _in_background(self._read_listed) as stored:  # read while the folder is listed
                scanned = imagefiles.scan_images(self.folder, problems)
            self.scan_problems = problems
            unchanged = self._keep_if_unchanged(*stored.result(), scanned)
            if unchanged is not None:
                if unchanged.hashed:
                    self._check_changed_files()
                return 0
            listed = imagefiles.natural_sorted(scanned)
            known = {imagefiles.stored_path(path): (image_id, position, missing)
                     for image_id, path, position, missing
                     in self._tuples("SELECT id, path, position, missing FROM images")}
            if not known:
                self._record_first_scan(listed, scanned)
                added, gone = len(listed), False
            else:
                added, gone = self._update_listing(known, listed, scanned)
                self._check_changed_files()
        if added or gone:
            self._emit({"images"}, set())
        return added

    def _record_first_scan(self, listed: list[str], scanned: list[str]) -> None:
        """Store ``listed`` (natural order) as the images of a project that has none yet.

        One transaction: a crash before its commit leaves no rows. A thread
        runs the insert statement (SQLite work only) while the image list is
        built here from the listing; a new store then turns to WAL mode.
        """
        conn = self._conn
        with write_transaction(conn, self.db_path, "the image list"):
            new = storage.new_images(conn, imagefiles.store_paths(listed))
            with _in_background(functools.partial(storage.insert_new_images, conn, new)) as insert:
                records = rows.new_image_records(new.first_id, listed)
                gc.collect(0)  # the next collection would walk the new records: do it now
                digests = storage.listing_digests(listed, scanned)
            insert.result()
            storage.record_listing(conn, digests)
        storage.use_wal(conn)  # after the stamp-changing switch, the list is current
        self._image_list = (self._stamp(), records)

    def _update_listing(self, known: dict[str, tuple[int, int, int]], listed: list[str],
                        scanned: list[str]) -> tuple[int, bool]:
        """Write a rescan's changes to the stored images; returns (new, any gone)."""
        new_slots: list[str | None] = []  # listed paths not stored yet; None where stored
        moved = []
        for position, path in enumerate(listed):
            old = known.get(path)
            new_slots.append(path if old is None else None)
            if old is not None and (old[1] != position or old[2]):
                moved.append((position, old[0]))
        gone = known.keys() - set(listed)
        with write_transaction(self._conn, self.db_path, "the image list"):
            storage.insert_images(self._conn, [None if path is None else imagefiles.store_path(path)
                                               for path in new_slots])
            self._conn.executemany("UPDATE images SET position=?, missing=0 WHERE id=?", moved)
            self._conn.executemany("UPDATE images SET missing=1 WHERE id=?",
                                   [(known[p][0],) for p in gone if not known[p][2]])
            storage.record_listing(self._conn, storage.listing_digests(listed, scanned))
        return len(new_slots) - new_slots.count(None), bool(gone)

    def _read_listed(self) -> tuple[Stamp | None, tuple[Any, ...] | None]:
        """The stamp, then every column of the listed images as JSON arrays (None without JSON).

        The row is :data:`rows.IMAGE_COLUMNS_JSON`, then how many of the
        images are missing, then the recorded :data:`storage.LISTING_DIGESTS_SQL`.
        """
        conn = self._conn
        stamp = None if conn.in_transaction else _stamp_of(conn)
        try:
            return stamp, conn.execute(f"SELECT {rows.IMAGE_COLUMNS_JSON}, total(i.missing), "
                                       f"{storage.LISTING_DIGESTS_SQL} {_LISTED}").fetchone()
        except sqlite3.OperationalError:  # an SQLite built without JSON functions
            return stamp, None

    def _keep_if_unchanged(self, stamp: Stamp | None, found: tuple[Any, ...] | None,
                           listed: list[str]) -> Unchanged | None:
        """Whether the stored images are ``listed`` as the last scan wrote them; None if not.

        ``found`` is what :meth:`_read_listed` read; when it matches, the image
        list is built from it and kept, so :meth:`images` reads nothing more.
        Missing images kept for their masks, or an SQLite without JSON
        functions, take :func:`storage.listing_unchanged`.
        """
        if found is None or found[_ARRAYS]:  # missing images are listed: compare present ones
            if storage.listing_unchanged(self._conn, listed):
                return Unchanged(hashed=True)
            return None
        paths = imagefiles.stored_paths(json.loads(found[1]))
        positions = json.loads(found[_ARRAYS - 1])
        if not storage.listing_matches(paths, positions, found[_ARRAYS + 1:], listed):
            return None  # the other columns are not even parsed
        columns = [paths if k == 1 else positions if k == _ARRAYS - 1 else json.loads(text)
                   for k, text in enumerate(found[:_ARRAYS])]
        if stamp is not None:
            self._image_list = (stamp, rows.image_records_from_columns(columns,
                                                                       self._mask_counts()))
        hashes, errors = columns[4], columns[6]  # files read, or that failed to read
        return Unchanged(hashed=hashes.count(None) < len(hashes) or
                         errors.count(None) < len(errors))

    def _tuples(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` as plain tuples (several times cheaper than ``sqlite3.Row``)."""
        cursor = self._conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    def _stamp(self) -> Stamp:
        return _stamp_of(self._conn)

    def _mask_counts(self) -> dict[int, int]:
        """How many masks each image with any has, by image id."""
        return dict(self._tuples("SELECT image_id, COUNT(*) FROM annotations GROUP BY image_id"))

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
        with rows.gc_paused():
            counts = self._mask_counts()
            try:
                sql = f"SELECT {rows.IMAGE_COLUMNS_JSON} {_LISTED}"
                arrays = self._conn.execute(sql).fetchone()
            except sqlite3.OperationalError:  # an SQLite built without JSON functions
                found = self._tuples(f"SELECT {rows.IMAGE_COLUMNS} {_LISTED} "
                                     "ORDER BY i.position, i.id")
                records = rows.image_records(found, counts)
            else:
                records = rows.image_records_from_json(tuple(arrays), counts)
        self._image_list = None if stamp is None else (stamp, records)
        return records
