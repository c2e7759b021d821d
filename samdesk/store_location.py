"""Where a project's store lives: in the folder, read-only, or a spare in the user data.

See :func:`locate_store`. Nothing here opens the database; a probe file
tells whether a folder can be written (root ignores permission bits, so
asking ``os.access`` is not enough).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

STORE_DIRNAME = ".samdesk"
DB_NAME = "project.sqlite"


@dataclass(frozen=True)
class StoreLocation:
    """Where a project's database lives and why.

    ``read_only``: the folder's own store exists but the folder cannot be
    written, so it opens read-only. ``spare``: a store kept in the user data
    folder for this folder while it was read-only, still to be merged into
    ``db_path`` (None when there is none or ``db_path`` is that store).
    ``exists``: False when there is no store yet (and none was made).
    """

    db_path: Path
    in_folder: bool
    note: str | None = None
    read_only: bool = False
    spare: Path | None = None
    exists: bool = True


def _dir_writable(folder: Path) -> bool:
    """True when a file can be created in ``folder`` (a probe, removed at once)."""
    try:
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _folder_writable(folder: Path) -> bool:
    store = folder / STORE_DIRNAME
    try:
        store.mkdir(exist_ok=True)
    except OSError:
        return False
    return _dir_writable(store)


def spare_store(folder: Path) -> Path:
    """The database a read-only ``folder`` keeps in the user data folder (may not exist)."""
    key = hashlib.sha1(str(folder.resolve()).encode("utf-8")).hexdigest()[:16]
    data = Path(platformdirs.user_data_dir("samdesk", appauthor=False)) / "projects"
    return data / f"{folder.name or 'root'}-{key}" / DB_NAME


def locate_store(folder: Path, create: bool = True) -> StoreLocation:
    """The database for ``folder``: its own, read-only if the folder is, or a spare one.

    The folder's own ``.samdesk/project.sqlite`` is used whenever it exists;
    when it cannot be written the project opens read-only. A folder without
    one gets it, or, when the folder cannot be written, a spare store in the
    user data folder, which is merged into the folder's own once that can be
    written (:attr:`StoreLocation.spare`). With ``create=False`` nothing is
    made: a folder with no store at all gives ``exists=False``.
    """
    in_folder = folder / STORE_DIRNAME / DB_NAME
    spare = spare_store(folder)
    has_spare = spare.exists()
    if in_folder.exists():
        if _dir_writable(in_folder.parent) and os.access(in_folder, os.W_OK):
            return StoreLocation(in_folder, True, spare=spare if has_spare else None)
        note = f"{folder} is read-only: the project is open read-only and edits are not saved"
        if has_spare:
            note += (f" (work kept in {spare} while it was read-only is merged in when the "
                     "folder can be written again)")
        return StoreLocation(in_folder, True, note, read_only=True)
    kept = (f"{folder} is not writable; project data is kept in {spare.parent} and merged "
            "into the folder once it can be written")
    if not create:
        if has_spare:
            return StoreLocation(spare, False, kept)
        return StoreLocation(in_folder, True, exists=False)
    if _folder_writable(folder):
        return StoreLocation(in_folder, True, spare=spare if has_spare else None)
    spare.parent.mkdir(parents=True, exist_ok=True)
    return StoreLocation(spare, False, kept)
