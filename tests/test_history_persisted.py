"""Undo and redo survive closing the project and a ``kill -9``, within the stated bound."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from samdesk import history, masks, storage
from samdesk.annotations import ImageStatus
from samdesk.project import Project


def disk(r: int, h: int = 30, w: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - 15) ** 2 + (xx - 20) ** 2 <= r * r


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(root / name)
    return root


def pixels(project: Project) -> list[np.ndarray]:
    return [masks.decode(layer.rle) for layer in project.annotations()]


def test_undo_and_redo_after_reopening_give_back_the_earlier_masks(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        layer = project.add_annotation(image.id, masks.encode(disk(5)))
        project.update_annotation(layer.id, rle=masks.encode(disk(9)))
        project.add_annotation(image.id, masks.encode(disk(3)))
        project.undo()  # the third edit waits on the redo stack
    with Project.open(folder) as project:
        assert project.history.undo_text == "Edit mask"
        assert project.history.redo_text == "Add mask"
        assert project.undo() == "Edit mask"
        [only] = pixels(project)
        assert (only == disk(5)).all()
    with Project.open(folder) as project:
        assert project.undo() == "Add mask"
        assert project.annotations() == []
        assert project.image(project.images()[0].id).status == ImageStatus.TODO
        assert project.undo() is None  # "Nothing to undo" only now
    with Project.open(folder) as project:
        assert [project.redo(), project.redo(), project.redo()] == ["Add mask", "Edit mask",
                                                                     "Add mask"]
        assert project.redo() is None
        grown, small = pixels(project)
        assert (grown == disk(9)).all() and (small == disk(3)).all()


def test_a_new_edit_after_reopening_clears_the_redo_stack(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        project.add_annotation(image.id, masks.encode(disk(5)))
        project.undo()
    with Project.open(folder) as project:
        project.add_label("tree")
        assert not project.history.can_redo
    with Project.open(folder) as project:
        assert project.redo() is None
        assert project.undo() == "Add label tree"
        assert project.undo() is None


KILLED = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from samdesk import masks
    from samdesk.project import Project

    project = Project.open(sys.argv[1])
    image = project.images()[0]
    yy, xx = np.mgrid[:30, :40]
    small = (yy - 15) ** 2 + (xx - 20) ** 2 <= 25
    big = (yy - 15) ** 2 + (xx - 20) ** 2 <= 81
    layer = project.add_annotation(image.id, masks.encode(small))
    project.update_annotation(layer.id, rle=masks.encode(big))
    print("saved", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_undo_after_kill_9_gives_back_the_earlier_mask(folder):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(folder)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "saved"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Project.open(folder) as project:
        assert project.undo() == "Edit mask"
        [only] = pixels(project)
        assert (only == disk(5)).all()
        assert project.undo() == "Add mask"
        assert project.annotations() == []
        assert project.redo() == "Add mask"
        assert (pixels(project)[0] == disk(5)).all()


def test_the_bound_keeps_the_newest_500_edits(folder):
    assert history.MAX_EDITS == 500
    with Project.open(folder) as project:
        image = project.images()[0]
        layer = project.add_annotation(image.id, masks.encode(disk(5)))
        for k in range(history.MAX_EDITS + 4):  # 505 edits in all
            project.update_annotation(layer.id, score=float(k))
    with Project.open(folder) as project:
        undone = 0
        while project.undo() is not None:
            undone += 1
        assert undone == history.MAX_EDITS
        # the five oldest edits are the ones dropped: the add and the scores 0 to 3
        [left] = project.annotations()
        assert left.score == 3.0
        for _ in range(history.MAX_EDITS):
            assert project.redo() is not None
        assert project.redo() is None
        assert project.annotation(layer.id).score == 503.0
    with sqlite3.connect(folder / ".samdesk" / "project.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == history.MAX_EDITS


def test_the_byte_bound_drops_the_oldest_but_keeps_the_newest_edit(folder):
    noise = np.random.default_rng(0).random((30, 40)) > 0.5  # many runs: a big RLE
    with Project.open(folder) as project:
        image = project.images()[0]
        for _ in range(2):
            project.add_annotation(image.id, masks.encode(noise))
        with sqlite3.connect(project.db_path) as conn:
            one = conn.execute("SELECT bytes FROM history ORDER BY seq DESC").fetchone()[0]
        assert one > len(masks.encode(noise)["counts"])
        project.history.max_bytes = int(2.5 * one)  # room for two of them, not three
        for _ in range(2):
            project.add_annotation(image.id, masks.encode(noise))
        assert len(project.annotations()) == 4
        assert project.undo() and project.undo()
        assert project.undo() is None
        assert len(project.annotations()) == 2
        project.history.max_bytes = 10  # smaller than any edit: the newest is kept
        project.add_label("tree")
        project.add_annotation(image.id, masks.encode(noise))
        assert project.undo() == "Add mask"
        assert project.undo() is None


def test_undo_leaves_what_it_does_not_cover(folder):
    """An undone status change keeps the size and hash read since, even after a reopen."""
    with Project.open(folder) as project:
        image = project.images()[0]
        project.set_status(image.id, ImageStatus.DONE)
    with Project.open(folder) as project:
        filled = project.ensure_image_info(image.id)
        assert filled.width == 40 and filled.content_hash
        assert project.undo() == "Mark done"
        after = project.image(image.id)
        assert after.status == ImageStatus.TODO
        assert (after.width, after.height, after.content_hash) == (40, 30, filled.content_hash)


def test_a_schema_1_store_is_migrated_and_keeps_its_masks(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        project.add_annotation(image.id, masks.encode(disk(5)))
    db = folder / ".samdesk" / "project.sqlite"
    with sqlite3.connect(db) as conn:  # as samdesk 1 left it: no history table
        conn.execute("DROP TABLE history")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with Project.open(folder, read_only=True) as project:  # read-only: not migrated
        assert project.history.undo_text is None and len(project.annotations()) == 1
    with Project.open(folder) as project:
        assert project.undo() is None  # edits made before the upgrade have no undo
        assert len(project.annotations()) == 1
        project.add_label("tree")
        assert project.undo() == "Add label tree"
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert int(version[0]) == storage.SCHEMA_VERSION == 4
