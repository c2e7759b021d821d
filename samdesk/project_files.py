"""Image files that change under a project: read again, flagged, masks that no longer fit.

A mixin of :class:`samdesk.project.Project`. Each image row records the file
as it was last looked at (upright size, modification time, byte size) and
the content hash of the file its masks were made on. On every
:meth:`~samdesk.project.Project.rescan`, a file whose time or size differs
is looked at again (:func:`file_info`):

* a file that could not be read (truncated, missing for a moment) is read
  again, and its error cleared when it now reads;
* a readable file is hashed: it is flagged ``changed`` while its bytes differ
  from the recorded hash and unflagged when it comes back byte-identical; its
  upright size becomes the stored one, so masks made on a file of another size
  are found by :meth:`ChangedFiles.unfitting_masks`. Nothing is deleted: the
  person keeps them (:meth:`ChangedFiles.keep_unfitting_masks`, e.g. to revert
  the file) or drops them (:meth:`ChangedFiles.drop_unfitting_masks`, undoable).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samdesk import imagefiles, images
from samdesk.errors import ImageReadError

if TYPE_CHECKING:
    from samdesk.annotations import ImageRecord
    from samdesk.history import HistoryEntry, Row


def _stat(file: Path) -> os.stat_result | None:
    try:
        return file.stat()
    except OSError:
        return None


def stat_differs(file: Path, mtime: float | None, fsize: int | None) -> bool:
    """Whether ``file``'s modification time or byte size is not the recorded one.

    A file that cannot be looked at counts as (None, None): a file recorded
    as missing that is still missing has not changed.
    """
    stat = _stat(file)
    if stat is None:
        return mtime is not None or fsize is not None
    return stat.st_mtime != mtime or stat.st_size != fsize


def file_info(file: Path, reference: str | None,
              verify: bool = False) -> tuple[dict[str, Any], str | None]:
    """The image columns that describe ``file`` as it is now.

    Readable: upright ``width``/``height`` (pixels), ``mtime``/``fsize`` (taken
    before reading, so a change during the read is seen next time), no
    ``error``; with no ``reference`` hash (a first read) its ``hash``, else
    ``changed`` = whether its bytes differ from ``reference``. ``verify``
    decodes it once at a reduced size so a truncated file is caught too.
    Unreadable: ``error`` with the short reason, and its time and size where
    it has them, so that it is read again once it changes. Also returns the
    file's content hash now (None when unreadable).
    """
    stat = _stat(file)
    seen = {"mtime": stat.st_mtime if stat else None, "fsize": stat.st_size if stat else None}
    try:
        if verify:
            images.load_display(file, max_side=512)
        width, height = images.read_size(file)
        digest = imagefiles.content_hash(file)
    except ImageReadError as exc:
        return {**seen, "error": exc.reason, "verified": 0}, None
    except OSError as exc:
        return {**seen, "error": exc.strerror or str(exc), "verified": 0}, None
    fields: dict[str, Any] = {"width": width, "height": height, **seen, "error": None,
                              "verified": int(verify)}
    if reference is None:
        fields.update(hash=digest, changed=0)
    else:
        fields["changed"] = int(digest != reference)
    return fields, digest


class ChangedFiles:
    """Changed and replaced image files of a project; see the module docstring."""

    folder: Path
    _conn: sqlite3.Connection
    _mutex: threading.RLock
    _hashes_seen: dict[int, str] | None = None
    """Content hash of each image's file as last read here, by image id."""

    if TYPE_CHECKING:  # provided by Project

        def batch(self, description: str) -> AbstractContextManager[HistoryEntry]: ...
        def _record(self, table: str, row_id: int, before: Row | None,
                    after: Row | None) -> None: ...
        def _row(self, table: str, row_id: int) -> Row: ...
        def _tuples(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
        def _write_infos(self, updates: list[tuple[int, dict[str, Any]]]) -> None: ...

    def _check_changed_files(self) -> None:
        """Look again at every present file whose time or size differs from the recorded
        ones (see the module docstring); all updates in one transaction."""
        found = self._tuples("SELECT id, path, hash, mtime, fsize FROM images "
                             "WHERE (hash IS NOT NULL OR error IS NOT NULL) AND missing=0")
        updates = []
        for image_id, path, digest, mtime, fsize in found:
            file = self.folder / imagefiles.stored_path(path)
            if stat_differs(file, mtime, fsize):
                updates.append((image_id, self._look_at(image_id, file, digest)))
        self._write_infos(updates)

    def _look_at(self, image_id: int, file: Path, reference: str | None,
                 verify: bool = False) -> dict[str, Any]:
        """:func:`file_info`, remembering the hash for :meth:`embedding_key`."""
        fields, digest = file_info(file, reference, verify)
        if self._hashes_seen is None:
            self._hashes_seen = {}
        if digest is None:
            self._hashes_seen.pop(image_id, None)
        else:
            self._hashes_seen[image_id] = digest
        return fields

    def embedding_key(self, record: ImageRecord) -> str:
        """The content hash of ``record``'s file as it is now: the embedding cache key.

        ``record.content_hash`` is the hash of the file its masks were made on;
        for a ``changed`` file the hash read at the last look is used instead
        (read now if this project has not read it). "" when unreadable.
        """
        if not record.changed:
            return record.content_hash or ""
        known = (self._hashes_seen or {}).get(record.id)
        if known is not None:
            return known
        try:
            return imagefiles.content_hash(self.folder / record.path)
        except ImageReadError:
            return ""

    def unfitting_masks(self) -> dict[int, list[int]]:
        """Mask ids by image id, of masks whose size is not their image's current upright
        size (the file was replaced by one of another size); back to front."""
        with self._mutex:
            found = self._tuples(
                "SELECT a.image_id, a.id FROM annotations a JOIN images i ON i.id=a.image_id "
                "WHERE i.width IS NOT NULL AND (a.width<>i.width OR a.height<>i.height) "
                "ORDER BY a.image_id, a.z, a.id")
        out: dict[int, list[int]] = {}
        for image_id, ann_id in found:
            out.setdefault(image_id, []).append(ann_id)
        return out

    def keep_unfitting_masks(self, image_ids: list[int]) -> None:
        """Keep the masks that no longer fit these images (e.g. to put the old file back).

        The current files become the ones the images are compared with (their
        ``changed`` flag is cleared, so they are not brought up again); the
        masks stay in the store, are not drawn and not exported while their
        size differs, and fit again once a file of their size is back.
        """
        for image_id in image_ids:
            self.accept_changed_file(image_id)

    def drop_unfitting_masks(self, image_ids: list[int] | None = None) -> int:
        """Delete the masks that no longer fit these images (all images when None), in one
        undoable edit, and take the current files as the images'; returns how many."""
        unfitting = self.unfitting_masks()
        wanted = list(unfitting) if image_ids is None else [i for i in image_ids
                                                            if i in unfitting]
        doomed = [ann_id for image_id in wanted for ann_id in unfitting[image_id]]
        if doomed:
            with self.batch(f"Drop {len(doomed)} masks that no longer fit"):
                for ann_id in doomed:
                    self._record("annotations", ann_id, self._row("annotations", ann_id), None)
        for image_id in wanted:
            self.accept_changed_file(image_id)
        return len(doomed)

    def accept_changed_file(self, image_id: int) -> None:
        """Take the file as it is now as the image's: its hash, size and time; no flag."""
        path = self._row("images", image_id)["path"]
        self._write_infos([(image_id, self._look_at(image_id, self.folder /
                                                    imagefiles.stored_path(path), None))])
