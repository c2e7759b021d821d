"""Checks a project store passes before samdesk uses it, each failing with one line.

Only a missing file is a new project: an empty file, a file that is not
SQLite, a damaged one (``PRAGMA quick_check``), a ``schema_version`` that is
not a number or is newer than this samdesk, and a table missing a column
are each refused with a line naming the file, what is wrong and, for
damage, the newest backup and the command that restores it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from samdesk import backups
from samdesk.errorlog import shorten
from samdesk.errors import ProjectError

SQLITE_HEADER = b"SQLite format 3\x00"
_DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)


def _folder_of(db_path: Path) -> Path | None:
    """The project folder of a store inside it (``FOLDER/.samdesk/project.sqlite``)."""
    return db_path.parent.parent if db_path.parent.name == ".samdesk" else None


def _hint(db_path: Path) -> str:
    folder = _folder_of(db_path)
    return backups.restore_hint(db_path, folder if folder is not None else Path("FOLDER"))


def damaged(db_path: Path, detail: str) -> ProjectError:
    """The error for a store that cannot be read: names it and the newest backup."""
    return ProjectError(f"{db_path} is damaged ({shorten(detail, 60)}); {_hint(db_path)}")


def is_damage(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file itself is corrupt or not a database."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGE_CODES
    return type(exc) is sqlite3.DatabaseError


def check_file(db_path: Path) -> None:
    """Refuse an existing ``db_path`` that is empty or does not start as SQLite does."""
    try:
        with open(db_path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    if not head:
        raise ProjectError(f"{db_path} is empty (0 bytes), not a project store; {_hint(db_path)}")
    if head != SQLITE_HEADER:
        raise ProjectError(f"{db_path} is not an SQLite file, so not a project store; "
                           f"{_hint(db_path)}")


def check_health(conn: sqlite3.Connection, db_path: Path) -> None:
    """``PRAGMA quick_check``: every page of the file read once, in a fraction of a second
    for a store of 100,000 images."""
    found = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if found != "ok":
        detail = " ".join(str(found).replace("*** in database main ***", "").split())
        raise damaged(db_path, f"SQLite quick_check: {detail}")


def check_version(conn: sqlite3.Connection, db_path: Path, newest: int) -> int:
    """The store's schema version, after checking it is a number no newer than ``newest``
    (the version this samdesk writes)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        raise ProjectError(f"{db_path}: not a samdesk project store ({exc})") from None
    if row is None:
        raise ProjectError(f"{db_path}: no schema_version in its meta table; not a samdesk "
                           "project store, or edited by hand")
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise ProjectError(f"{db_path}: schema_version is {row[0]!r}, not a whole number "
                           f"(edited by hand?); set it back, or restore a backup from "
                           f"{backups.backup_dir(db_path)}") from None
    if version > newest:
        raise ProjectError(
            f"{db_path} was written by a newer samdesk (schema {version}); please upgrade")
    return version


def check_columns(conn: sqlite3.Connection, db_path: Path,
                  columns: Mapping[str, tuple[str, ...]]) -> None:
    """Refuse a store whose tables lack any of ``columns`` (table name -> column names)."""
    for table, wanted in columns.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            raise ProjectError(f"{db_path}: table {table} is missing; not a samdesk project "
                               "store, or edited by hand")
        lacking = [c for c in wanted if c not in have]
        if lacking:
            raise ProjectError(f"{db_path}: table {table} lacks column "
                               f"{', '.join(lacking)} (edited by hand?); restore a backup "
                               f"from {backups.backup_dir(db_path)}")
