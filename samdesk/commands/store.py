"""``samdesk restore-backup``: put a rolling backup back in place of a damaged store."""

from __future__ import annotations

import argparse
from pathlib import Path

from samdesk import backups
from samdesk.errors import ProjectError
from samdesk.storage import ProjectLock, locate_store


def register(sub: argparse._SubParsersAction) -> None:
    restore = sub.add_parser(
        "restore-backup",
        help="replace a project's store with its newest backup (the old file is kept)")
    restore.add_argument("folder", type=Path)
    restore.add_argument("--backup", type=Path,
                         help="this backup file instead of the newest (see --list)")
    restore.add_argument("--list", action="store_true", help="list the backups and stop")
    restore.set_defaults(func=run_restore)


def run_restore(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise ProjectError(f"{folder}: not a folder")
    folder = folder.resolve()
    db_path = locate_store(folder, create=False).db_path
    if args.list:
        found = backups.list_backups(db_path)
        if not found:
            print(f"no backups in {backups.backup_dir(db_path)}")
        for path in reversed(found):
            print(path)
        return 0
    lock = ProjectLock(db_path.parent / "lock", folder)
    lock.acquire()
    try:
        used, aside = backups.restore(db_path, args.backup)
    finally:
        lock.release()
    print(f"{db_path}: restored from {used}")
    if aside is not None:
        print(f"  the file it replaced is kept as {aside}")
    return 0
