"""A project: a folder of images, its labels and mask layers, and the undo history.

Open one with :meth:`Project.open`. Every method that changes something
writes it in one SQLite transaction before returning and records it for undo.
Callers that make many changes at once (an import, a merge) wrap them in
:meth:`Project.batch` so they form one transaction and one undo step.
Listeners registered with :meth:`subscribe` hear about every change,
whether made directly, by undo or by redo.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samdesk import imagefiles, rows
from samdesk.annotations import ImageRecord, ImageStatus
from samdesk.backups import BackupKeeper
from samdesk.errors import ProjectError
from samdesk.history import History, HistoryEntry, Row, RowChange
from samdesk.project_boxes import PendingBoxes
from samdesk.project_edits import LabelsAndLayers
from samdesk.project_files import ChangedFiles, stat_differs
from samdesk.project_merge import SpareMerging, refuse_lost_store
from samdesk.project_scan import ImageListing
from samdesk.project_tracks import Tracks
from samdesk.storage import (
    TABLE_COLUMNS,
    ProjectLock,
    connect,
    connect_memory,
    locate_store,
    use_wal,
)
from samdesk.transaction import write_transaction

_READABLE_AGAIN = ("UPDATE images SET status=CASE WHEN EXISTS (SELECT 1 FROM annotations a "
                   "WHERE a.image_id=images.id) THEN 'in_progress' ELSE 'todo' END "
                   "WHERE id=? AND status='error'")
"""An image whose file reads again leaves status "error": in progress if it has masks."""


@dataclass(frozen=True)
class ProjectEvent:
    """What changed: ``kinds`` holds "images", "labels", "annotations", "pending_boxes",
    "tracks", "track_absent" (absent marks) or "sequence" (the sequence mark)."""

    kinds: frozenset[str]
    image_ids: frozenset[int]


class Project(ImageListing, ChangedFiles, LabelsAndLayers, PendingBoxes, Tracks, SpareMerging):
    """An open project. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, lock: ProjectLock | None,
                 db_path: Path, note: str | None, read_only: bool) -> None:
        self.folder = folder
        self.db_path = db_path
        self.store_note = note
        self.read_only = read_only
        self._conn = conn
        self._lock = lock
        self._mutex = threading.RLock()
        self.history = History(lambda: self._conn, self._mutex)
        self._entry: HistoryEntry | None = None
        self._touched: tuple[set[str], set[int]] = (set(), set())
        self._listeners: list[Callable[[ProjectEvent], None]] = []
        self.read_only_reason = "opened read-only"
        self._unsaved = False  # a store in memory: nothing is written (see open's create)
        self._backups: BackupKeeper | None = None

    # ----------------------------------------------------------- open / close
    @classmethod
    def open(cls, folder: str | Path, *, read_only: bool = False, scan: bool = True,
             create: bool = True) -> Project:
        """Open ``folder`` as a project, listing its images without decoding them.

        A second process opening the same project for writing gets
        :class:`~samdesk.errors.ProjectLockedError`; ``read_only=True`` opens
        an existing project without the lock and refuses edits. A folder that
        cannot be written opens its project read-only too (``store_note``
        says so). ``create=False`` writes nothing where the folder has no
        project yet: its images are listed into a store held in memory, and
        edits are refused. A spare store kept in the user data folder while
        the folder was read-only is merged in (one undoable edit).
        """
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ProjectError(f"{folder}: not a folder")
        folder = folder.resolve()
        location = locate_store(folder, create=create and not read_only)
        if not location.exists:
            refuse_lost_store(location.db_path, folder)
            if read_only:
                raise ProjectError(f"{folder}: no samdesk project here yet")
            project = cls(folder, connect_memory(), None, location.db_path,
                          f"{folder} has no samdesk project yet; nothing was written", False)
            project._unsaved = True
            if scan:
                project.rescan()
            return project
        if read_only or location.read_only:
            if not location.db_path.exists():
                raise ProjectError(f"{folder}: no samdesk project here yet")
            conn = connect(location.db_path, read_only=True)
            project = cls(folder, conn, None, location.db_path, location.note, True)
            if location.read_only:
                project.read_only_reason = "the folder cannot be written"
            return project
        refuse_lost_store(location.db_path, folder)
        lock = ProjectLock(location.db_path.parent / "lock", folder)
        lock.acquire()
        try:
            conn = connect(location.db_path)
        except BaseException:
            lock.release()
            raise
        project = cls(folder, conn, lock, location.db_path, location.note, False)
        try:
            if scan:
                project.rescan()
            use_wal(conn)  # a new store writes its first scan with a rollback journal
            if location.spare is not None:
                project.store_note = project.merge_spare(location.spare)
            project._backups = BackupKeeper(location.db_path)
        except BaseException:
            project.close()
            raise
        return project

    def close(self) -> None:
        with self._mutex:
            if self._backups is not None:
                self._backups.stop()  # a copy under way finishes first
                self._backups = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _refuse_edit(self) -> None:
        """Raise the one line for an edit this project cannot save, if it cannot."""
        if self._unsaved:
            raise ProjectError(f"{self.folder} has no samdesk project yet and was opened "
                               "only to read; the edit was not saved")
        if self.read_only:
            raise ProjectError(f"{self.folder}: the project is open read-only "
                               f"({self.read_only_reason}); the edit was not saved")

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- events
    def subscribe(self, callback: Callable[[ProjectEvent], None]) -> Callable[[], None]:
        """Call ``callback`` after every committed change; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, kinds: set[str], image_ids: set[int]) -> None:
        if not kinds:
            return
        event = ProjectEvent(frozenset(kinds), frozenset(image_ids))
        for listener in list(self._listeners):
            listener(event)

    # ------------------------------------------------------------ transactions
    @contextmanager
    def batch(self, description: str, *, chain: bool = False) -> Iterator[HistoryEntry]:
        """Group the edits made inside into one transaction and one undo step.

        ``chain`` joins the undo step to the one before when that one was a chained
        step of the same description too (the frames one propagation run writes,
        each committed as it comes): undo and redo take the chain as one.

        The undo step is written in the same transaction. If anything fails,
        the store, the history and the kept image list are as before and no
        listener hears of it; a full disk or a store locked by another program
        raises a :class:`~samdesk.errors.StoreWriteError` naming the store file.
        """
        self._refuse_edit()
        with self._mutex:
            if self._entry is not None:  # nested: join the outer edit
                yield self._entry
                return
            entry = self._entry = HistoryEntry(description, chain=chain)
            self._touched = (set(), set())
            try:
                with self._write():
                    yield entry
                    self.history.push(entry)
            finally:
                self._entry = None
            touched, self._touched = self._touched, (set(), set())
        self._emit(*touched)

    @contextmanager
    def _write(self, what: str = "the edit") -> Iterator[None]:
        """One write transaction (:func:`~samdesk.transaction.write_transaction`);
        a failed one also drops the kept image list, which may hold its rows."""
        try:
            with write_transaction(self._conn, self.db_path, what):
                yield
        except BaseException:
            self._image_list = None
            self._touched = (set(), set())
            raise

    def _record(self, table: str, row_id: int, before: Row | None, after: Row | None) -> None:
        """Write one row inside the current batch and remember it for undo."""
        assert self._entry is not None, "edits must run inside Project.batch()"
        self._write_row(table, row_id, after)
        self._entry.changes.append(RowChange(table, row_id, before, after))
        self._note(table, before, after)

    def _note(self, table: str, before: Row | None, after: Row | None) -> None:
        kinds, image_ids = self._touched
        kinds.add(table)
        for row in (before, after):
            if row is None:
                continue
            if table in ("annotations", "pending_boxes", "track_absent"):
                image_ids.add(int(row["image_id"]))
            elif table == "images":
                image_ids.add(int(row["id"]))

    def _write_row(self, table: str, row_id: int, values: Row | None) -> None:
        """Delete the row (``values`` None), update the columns in ``values``, or insert it."""
        if values is None:
            self._conn.execute(f"DELETE FROM {table} WHERE id=?", (row_id,))
            return
        columns = [c for c in TABLE_COLUMNS[table] if c != "id" and c in values]
        if not columns:
            return
        sets = ", ".join(f"{c}=?" for c in columns)
        params = [values[c] for c in columns]
        cur = self._conn.execute(f"UPDATE {table} SET {sets} WHERE id=?", (*params, row_id))
        if cur.rowcount == 0:
            names = ", ".join(("id", *columns))
            marks = ", ".join("?" * (len(columns) + 1))
            self._conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                               (row_id, *params))

    def _row(self, table: str, row_id: int) -> Row:
        found = self._conn.execute(f"SELECT * FROM {table} WHERE id=?", (row_id,)).fetchone()
        if found is None:
            raise ProjectError(f"no {table[:-1]} with id {row_id} in {self.folder}")
        return dict(found)

    def _next_id(self, table: str) -> int:
        sql = f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}"
        return int(self._conn.execute(sql).fetchone()[0])

    # ------------------------------------------------------------ undo / redo
    def undo(self) -> str | None:
        """Undo the last edit; returns its description, or None if nothing to undo."""
        return self._replay(self.history.undo)

    def redo(self) -> str | None:
        """Redo the last undone edit; returns its description, or None."""
        return self._replay(self.history.redo)

    def _replay(self, step: Callable[..., HistoryEntry | None]) -> str | None:
        self._refuse_edit()
        with self._mutex:
            if self._entry is not None:
                raise ProjectError("undo and redo cannot run inside an edit")
            self._touched = (set(), set())
            with self._write("the undo" if step == self.history.undo else "the redo"):
                entry = step(self._replay_row)
            touched, self._touched = self._touched, (set(), set())
        self._emit(*touched)
        return entry.description if entry else None

    def _replay_row(self, table: str, row_id: int, values: Row | None) -> None:
        found = self._conn.execute(f"SELECT * FROM {table} WHERE id=?", (row_id,)).fetchone()
        before = None if found is None else dict(found)
        if before is None and values is not None and "id" not in values:
            return  # an edit of a row deleted since by something undo does not cover
        self._write_row(table, row_id, values)
        after = None if values is None else {**(before or {}), **values}
        self._note(table, before, after)

    # ------------------------------------------------------------------ images
    def image(self, image_id: int) -> ImageRecord:
        with self._mutex:
            row = self._conn.execute(
                "SELECT i.*, (SELECT COUNT(*) FROM annotations a WHERE a.image_id=i.id) AS n "
                "FROM images i WHERE i.id=?", (image_id,)).fetchone()
        if row is None:
            raise ProjectError(f"no image with id {image_id} in {self.folder}")
        return rows.image_record(row)

    def image_by_path(self, rel_path: str) -> ImageRecord | None:
        """The image whose relative path is ``rel_path``; a path written with ``\\``
        separators (Windows) is tried with ``/`` only when no file has the exact name
        (``\\`` is an ordinary character in Linux file names)."""
        with self._mutex:
            for path in dict.fromkeys((rel_path, rel_path.replace("\\", "/"))):
                row = self._conn.execute("SELECT id FROM images WHERE path=?",
                                         (imagefiles.store_path(path),)).fetchone()
                if row is not None:
                    return self.image(row["id"])
        return None

    def image_file(self, image: ImageRecord | int) -> Path:
        """The absolute path of an image's file."""
        record = self.image(image) if isinstance(image, int) else image
        return self.folder / record.path

    def ensure_image_info(self, image_id: int, verify: bool = False) -> ImageRecord:
        """Fill in the upright size and content hash by reading the file's header.

        ``verify`` decodes the whole file once (at a reduced size) so that a
        truncated file is caught too. A file that cannot be read gets status
        "error" with the reason; the project goes on. Not an undoable edit.
        """
        self.ensure_image_infos([image_id], verify)
        return self.image(image_id)

    def ensure_image_infos(self, image_ids: list[int], verify: bool = False,
                           chunk: int = 256) -> None:
        """:meth:`ensure_image_info` for many images: files are read outside the
        database lock and each ``chunk`` of results is written in one transaction."""
        for start in range(0, len(image_ids), chunk):
            found = [(i, self._read_info(i, verify)) for i in image_ids[start:start + chunk]]
            self._write_infos([(i, fields) for i, fields in found if fields])

    def _read_info(self, image_id: int, verify: bool) -> dict[str, Any] | None:
        """The image columns to store after reading the file, or None if known.

        A file recorded as unreadable is read again when its time or size changed.
        """
        with self._mutex:
            row = self._conn.execute("SELECT path, width, hash, mtime, fsize, error, verified "
                                     "FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise ProjectError(f"no image with id {image_id} in {self.folder}")
        path = self.folder / imagefiles.stored_path(row["path"])
        if row["error"] is not None:
            if not stat_differs(path, row["mtime"], row["fsize"]):
                return None
        elif row["width"] is not None and row["hash"] is not None and (
                not verify or row["verified"]):
            return None
        return self._look_at(image_id, path, row["hash"], verify)

    def _write_infos(self, updates: list[tuple[int, dict[str, Any]]]) -> None:
        if self.read_only or not updates:
            return
        with self._mutex:
            own = not self._conn.in_transaction  # join a batch() already open
            with self._write("what was read of the images") if own else nullcontext():
                for image_id, fields in updates:
                    if fields.get("error") is not None:
                        fields = {**fields, "status": ImageStatus.ERROR.value}
                    sets = ", ".join(f"{k}=?" for k in fields)
                    self._conn.execute(f"UPDATE images SET {sets} WHERE id=?",
                                       (*fields.values(), image_id))
                    if "error" in fields and fields["error"] is None:  # it reads again
                        self._conn.execute(_READABLE_AGAIN, (image_id,))
        self._emit({"images"}, {image_id for image_id, _ in updates})

    def mark_error(self, image_id: int, reason: str) -> None:
        """Record that an image could not be read (status "error" with the reason);
        it is read again once its file's time or size changes."""
        path = self.image_file(image_id)
        try:
            stat = path.stat()
            seen = {"mtime": stat.st_mtime, "fsize": stat.st_size}
        except OSError:
            seen = {"mtime": None, "fsize": None}
        self._set_image_fields(image_id, error=reason, **seen)

    def _set_image_fields(self, image_id: int, **fields: Any) -> None:
        self._write_infos([(image_id, fields)])

    def set_status(self, image_id: int, status: ImageStatus | str) -> None:
        """Set an image's status (todo, in progress, done); undoable."""
        with self.batch(f"Mark {ImageStatus(status).value.replace('_', ' ')}"):
            before = self._row("images", image_id)
            after = {**before, "status": ImageStatus(status).value}
            if ImageStatus(status) != ImageStatus.ERROR:
                after["error"] = None
            self._record("images", image_id, before, after)

    def batch_done(self, signature: str) -> set[int]:
        """Ids of the images an automatic run with this signature has finished."""
        with self._mutex:
            found = self._conn.execute("SELECT image_id FROM batch_runs WHERE signature=?",
                                       (signature,)).fetchall()
        return {int(r[0]) for r in found}

    def record_batch_run(self, signature: str, image_id: int, masks: int) -> None:
        """Note that an automatic run finished an image; call inside :meth:`batch` so the
        note commits with the masks it added."""
        with self._mutex:
            self._conn.execute("INSERT OR REPLACE INTO batch_runs VALUES (?, ?, ?)",
                               (signature, image_id, masks))

    def annotation_counts(self) -> dict[int, int]:
        """Number of mask layers per label id (unlabelled under 0)."""
        with self._mutex:
            found = self._conn.execute(
                "SELECT COALESCE(label_id, 0) AS l, COUNT(*) AS n FROM annotations GROUP BY l"
            ).fetchall()
        return {int(r["l"]): int(r["n"]) for r in found}

