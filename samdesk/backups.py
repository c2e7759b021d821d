"""Rolling backups of a project store, and restoring one.

A writable store keeps copies of itself in ``backups/`` beside it
(``FOLDER/.samdesk/backups/``): when a project opens, every hour while
it stays open, and when it closes, the store is copied with SQLite's online
backup API, and the copy is kept when it differs from the newest one. The
copy runs on a thread of its own, reading a snapshot, so it never holds up
an edit; the newest :data:`KEEP` copies are kept. Only a
store that passed ``PRAGMA quick_check`` at open is copied, so damage never
pushes the good copies out.
"""

from __future__ import annotations

import datetime
import filecmp
import os
import shutil
import sqlite3
import threading
from pathlib import Path

from samdesk.errors import ProjectError

KEEP = 5
"""How many backups a store keeps (the oldest is removed when a sixth is made)."""
INTERVAL_S = 3600.0
"""How often an open project is backed up again (when it changed)."""
BACKUP_DIRNAME = "backups"
_PREFIX = "project-"
_SUFFIX = ".sqlite"


def backup_dir(db_path: Path) -> Path:
    """The folder holding ``db_path``'s backups."""
    return db_path.parent / BACKUP_DIRNAME


def list_backups(db_path: Path) -> list[Path]:
    """``db_path``'s backups, oldest first (their names sort by time)."""
    folder = backup_dir(db_path)
    try:
        found = [p for p in folder.iterdir()
                 if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name)


def newest_backup(db_path: Path) -> Path | None:
    """The most recent backup of ``db_path``, or None."""
    found = list_backups(db_path)
    return found[-1] if found else None


def restore_hint(db_path: Path, folder: Path | None = None) -> str:
    """What to tell a person whose store at ``db_path`` cannot be read: the newest backup and
    the command that restores it, or that there is none."""
    newest = newest_backup(db_path)
    if newest is None:
        return (f"there is no backup in {backup_dir(db_path)}; move the file away to start "
                "a new project")
    where = f" {folder}" if folder is not None else ""
    shown = newest.relative_to(db_path.parent)  # kept short: the line names db_path already
    return f"the newest backup is {shown} beside it; run `samdesk restore-backup{where}`"


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S-%f")


def back_up(db_path: Path, keep: int = KEEP) -> Path | None:
    """Copy ``db_path`` into its backup folder unless the copy equals the newest one.

    Returns the new copy, or None when nothing changed. Copies every page in
    one step, inside one read transaction of a read-only connection: in WAL
    mode that is a snapshot, and writers go on meanwhile (a copy in several
    steps would start over after each edit made by another connection).
    The copy is written under a temporary name, compared byte for byte with
    the newest backup (the same content gives the same bytes), and renamed
    when it differs; then all but the newest ``keep`` copies are removed.
    """
    newest = newest_backup(db_path)
    folder = backup_dir(db_path)
    folder.mkdir(exist_ok=True)
    for stale in folder.glob(f"{_PREFIX}*{_SUFFIX}.part"):  # left by a killed samdesk
        stale.unlink(missing_ok=True)
    target = folder / f"{_PREFIX}{_stamp()}{_SUFFIX}"
    part = target.with_name(target.name + ".part")
    src = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(part)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # a plain file, restorable by copying
        finally:
            dst.close()
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    if newest is not None and filecmp.cmp(part, newest, shallow=False):
        part.unlink()
        return None
    os.replace(part, target)
    for old in list_backups(db_path)[:-keep]:
        old.unlink(missing_ok=True)
    return target


class BackupKeeper:
    """Backs a store up at open, every :data:`INTERVAL_S` and at close, on a daemon thread.

    :meth:`stop` (called when the project closes) makes the last copy (if the
    store changed) and waits for it: about 50 ms for a 20 MB store.
    """

    def __init__(self, db_path: Path, interval_s: float = INTERVAL_S) -> None:
        self.db_path = db_path
        self.error: BaseException | None = None
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="samdesk-backup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stopping = False
        while True:
            try:
                back_up(self.db_path)
            except (OSError, sqlite3.Error) as exc:  # a backup is a spare: never fail an edit
                self.error = exc
            if stopping:
                return
            stopping = self._stop.wait(self._interval)  # set: one last copy, then done

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def restore(db_path: Path, backup: Path | None = None) -> tuple[Path, Path | None]:
    """Put ``backup`` (default: the newest) in place of the store at ``db_path``.

    The current file (with its ``-wal`` and ``-shm``), if any, is moved aside
    as ``project.sqlite.damaged-STAMP`` first, so nothing is lost. The
    caller holds the project's lock. Returns (the backup used, the file moved
    aside or None).
    """
    chosen = backup if backup is not None else newest_backup(db_path)
    if chosen is None:
        raise ProjectError(f"{db_path}: there is no backup in {backup_dir(db_path)}")
    try:
        with sqlite3.connect(chosen.resolve().as_uri() + "?mode=ro", uri=True) as check:
            ok = check.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
        check.close()
    except sqlite3.DatabaseError:
        ok = False
    if not ok:
        raise ProjectError(f"{chosen}: this backup is damaged too; pick another with --backup")
    part = db_path.with_name(db_path.name + ".restoring")
    shutil.copyfile(chosen, part)
    aside = None
    stamp = _stamp()
    for suffix in ("", "-wal", "-shm"):
        current = db_path.with_name(db_path.name + suffix)
        if current.exists():
            moved = current.with_name(f"{db_path.name}.damaged-{stamp}{suffix}")
            os.replace(current, moved)
            aside = aside or moved
    os.replace(part, db_path)
    return chosen, aside
