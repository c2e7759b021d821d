"""Opening a damaged, emptied or hand-edited project store: one line, and the way back.

Each test first makes the fault on a real store, then checks what a person
sees on the command line (exit status, one line naming the file and the
backup) and that restoring the backup gives back every mask.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import backups, masks
from samdesk.cli import main
from samdesk.errors import ProjectError
from samdesk.project import Project

MASKS = 40
PROGRESS = re.compile(r"^[\w ]+: \d+/\d+ \(")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shots"
    root.mkdir()
    for i in range(MASKS):
        Image.fromarray(np.full((60, 80, 3), 5 * i, np.uint8)).save(root / f"im{i:02d}.png")
    return root


def annotate(folder: Path) -> None:
    """One noisy mask (long RLE counts, so the store spans many pages) on each image."""
    rng = np.random.default_rng(1)
    with Project.open(folder) as project:
        car = project.add_label("car")
        for image in project.images():
            project.add_annotation(image.id, masks.encode(rng.random((60, 80)) > 0.5), car.id)


def store(folder: Path) -> Path:
    return folder / ".samdesk" / "project.sqlite"


def info(folder: Path, capsys) -> tuple[int, dict | None, str]:
    """``samdesk info --json``: exit status, the JSON (or None), stderr."""
    rc = main(["info", str(folder), "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out) if rc == 0 else None, captured.err


def one_error_line(err: str) -> str:
    """The one line a failed command printed (progress lines aside)."""
    lines = [line for line in err.strip().splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("samdesk: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_zeroed_pages_name_the_file_and_the_backup_which_restores_every_mask(folder, capsys):
    annotate(folder)
    rc, before, _ = info(folder, capsys)
    assert rc == 0 and before["annotations"] == MASKS
    db = store(folder)
    newest = backups.newest_backup(db)
    assert newest is not None
    data = bytearray(db.read_bytes())
    pages = len(data) // 4096
    assert pages > 20
    middle = pages // 2 * 4096
    data[middle:middle + 3 * 4096] = bytes(3 * 4096)  # three pages in the middle, zeroed
    db.write_bytes(bytes(data))

    rc, _, err = info(folder, capsys)
    line = one_error_line(err)
    assert rc == 2 and str(db) in line and "damaged" in line
    assert f"backups/{newest.name}" in line and f"samdesk restore-backup {folder}`" in line
    assert backups.newest_backup(db) == newest  # a damaged store is never backed up

    assert main(["restore-backup", str(folder), "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(newest)  # newest first
    assert main(["restore-backup", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"restored from {newest}" in out and "damaged-" in out
    rc, after, _ = info(folder, capsys)
    assert rc == 0 and after["annotations"] == before["annotations"]
    assert after["labels"] == before["labels"]
    kept = [p for p in db.parent.iterdir() if ".damaged-" in p.name]
    assert kept and kept[0].read_bytes() == bytes(data)  # the damaged file is kept, unchanged


@pytest.mark.parametrize("content", [b"", b"this is a note, not a database\n" * 10],
                         ids=["zero-bytes", "not-sqlite"])
def test_an_empty_or_foreign_store_file_is_an_error_not_a_new_project(folder, capsys, content):
    annotate(folder)
    newest = backups.newest_backup(store(folder))
    store(folder).write_bytes(content)
    rc, _, err = info(folder, capsys)
    line = one_error_line(err)
    assert rc == 2 and str(store(folder)) in line and f"backups/{newest.name}" in line
    assert ("empty (0 bytes)" if not content else "not an SQLite file") in line
    out = folder.parent / "out.json"
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out)]) == 2
    assert not out.exists()  # no empty dataset written as if all were well
    assert store(folder).read_bytes() == content  # left as it was for the person to inspect


def test_a_store_without_backups_says_there_is_none(folder, capsys):
    annotate(folder)
    for path in backups.list_backups(store(folder)):
        path.unlink()
    store(folder).write_bytes(b"")
    rc, _, err = info(folder, capsys)
    line = one_error_line(err)
    assert rc == 2 and "there is no backup in" in line


def test_a_deleted_store_with_backups_is_not_silently_replaced_by_a_new_one(folder, capsys):
    annotate(folder)
    store(folder).unlink()
    rc, _, err = info(folder, capsys)
    line = one_error_line(err)
    assert rc == 2 and "is missing" in line and "restore-backup" in line
    assert main(["restore-backup", str(folder)]) == 0
    capsys.readouterr()
    rc, after, _ = info(folder, capsys)
    assert rc == 0 and after["annotations"] == MASKS


def test_backups_roll_keeping_the_newest_five(folder):
    annotate(folder)
    db = store(folder)
    for k in range(7):
        with Project.open(folder) as project:
            project.add_label(f"extra{k}")
    kept = backups.list_backups(db)
    assert len(kept) == backups.KEEP
    with sqlite3.connect(kept[-1]) as conn:  # the newest holds the last session's edit
        names = {r[0] for r in conn.execute("SELECT name FROM labels")}
    assert "extra6" in names
    before = [p.name for p in kept]
    with Project.open(folder):  # opened and closed, nothing changed: no new copy
        pass
    assert [p.name for p in backups.list_backups(db)] == before


def test_hand_edited_schema_version_is_one_line(folder, capsys):
    annotate(folder)
    with sqlite3.connect(store(folder)) as conn:
        conn.execute("UPDATE meta SET value='two' WHERE key='schema_version'")
    conn.close()
    rc, _, err = info(folder, capsys)
    line = one_error_line(err)
    assert rc == 2 and str(store(folder)) in line and "schema_version is 'two'" in line


def test_dropped_column_is_one_line(folder, capsys):
    annotate(folder)
    with sqlite3.connect(store(folder)) as conn:
        conn.execute("ALTER TABLE annotations DROP COLUMN score")
    conn.close()
    rc, _, err = info(folder, capsys)
    line = one_error_line(err)
    assert rc == 2 and str(store(folder)) in line and "annotations lacks column score" in line


def test_read_only_fallback_also_refuses_a_newer_schema(folder, capsys):
    """While another samdesk holds the lock, info reads read-only: still checks the schema."""
    annotate(folder)
    with sqlite3.connect(store(folder)) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.close()
    with pytest.raises(ProjectError, match="newer samdesk"):
        Project.open(folder, read_only=True)
    with sqlite3.connect(store(folder)) as conn:  # a writer holds the lock...
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()
    with Project.open(folder):
        with sqlite3.connect(store(folder)) as conn:  # ...and the store turns newer meanwhile
            conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
        conn.close()
        rc, _, err = info(folder, capsys)
    assert rc == 2 and "newer samdesk (schema 99)" in err.strip().splitlines()[-1]


def test_info_and_export_write_nothing_into_a_folder_without_a_project(folder, capsys):
    listing = sorted(os.listdir(folder))
    rc, found, _ = info(folder, capsys)
    assert rc == 0 and found["images"] == MASKS and found["annotations"] == 0
    out = folder.parent / "out.json"
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["images"]) == MASKS
    assert sorted(os.listdir(folder)) == listing  # no .samdesk/ made
    with Project.open(folder, create=False) as project:
        with pytest.raises(ProjectError, match="no samdesk project yet"):
            project.add_label("car")
    assert sorted(os.listdir(folder)) == listing
