"""A failed commit (full disk, a store locked by another program) leaves the project as it was.

Faults are injected two ways: SQLite errors raised by a connection wrapper on
a chosen statement (always runs), and a real 2 MB tmpfs filled by an import
(root only). After each, the person got one line naming the store file, the
next edits work, undo undoes the right one, and ``info --json`` and a COCO
export equal the ones taken before the fault.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.cli import main
from samdesk.errors import StoreFullError, StoreLockedError
from samdesk.export.coco_import import import_coco
from samdesk.project import Project

FULL = "database or disk is full"


class Fault:
    """Makes the ``nth`` statement starting with ``match`` on the project store raise.

    ``after``: count only once a statement starting with it has run.
    ``rolls_back``: SQLite ends the transaction itself first, as it does for
    a full disk found while committing.
    """

    def __init__(self) -> None:
        self.plan: dict | None = None
        self.raised = 0

    def arm(self, match: str, nth: int = 1, after: str | None = None,
            message: str = FULL, rolls_back: bool = True) -> None:
        self.plan = {"match": match, "nth": nth, "after": after, "message": message,
                     "rolls_back": rolls_back, "seen": 0, "open": after is None}

    def check(self, conn: sqlite3.Connection, sql: str) -> None:
        plan = self.plan
        if plan is None:
            return
        text = sql.lstrip().upper()
        if not plan["open"]:
            plan["open"] = text.startswith(plan["after"].upper())
            return
        if not text.startswith(plan["match"].upper()):
            return
        plan["seen"] += 1
        if plan["seen"] < plan["nth"]:
            return
        self.plan = None
        self.raised += 1
        if plan["rolls_back"] and conn.in_transaction:
            sqlite3.Connection.execute(conn, "ROLLBACK")
        raise sqlite3.OperationalError(plan["message"])


@pytest.fixture
def fault(monkeypatch):
    """Every connection opened on a ``project.sqlite`` goes through the :class:`Fault`."""
    fault = Fault()
    real_connect = sqlite3.connect

    class FaultyConnection(sqlite3.Connection):
        def execute(self, sql, *args):  # type: ignore[no-untyped-def]
            fault.check(self, sql)
            return super().execute(sql, *args)

        def executemany(self, sql, *args):  # type: ignore[no-untyped-def]
            fault.check(self, sql)
            return super().executemany(sql, *args)

    def connect(database, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(database).split("?")[0].endswith("project.sqlite"):
            kwargs.setdefault("factory", FaultyConnection)
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    return fault


def ring(h: int = 30, w: int = 40, r: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= r * r


def make_folder(root: Path, size: tuple[int, int] = (40, 30)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(("a.png", "b.png")):
        Image.fromarray(np.full((size[1], size[0], 3), 60 + 60 * k, np.uint8)).save(root / name)
    return root


def annotate(folder: Path) -> None:
    with Project.open(folder) as project:
        car = project.add_label("car")
        a, b = project.image_by_path("a.png"), project.image_by_path("b.png")
        project.add_annotation(a.id, masks.encode(ring(r=5)), car.id)
        project.add_annotation(b.id, masks.encode(ring(r=9)), car.id)
        project.set_status(a.id, "done")


def coco_file(path: Path, masks_per_image: int, noise: bool = False,
              size: tuple[int, int] = (40, 30)) -> Path:
    """A COCO file adding ``masks_per_image`` masks to a.png and b.png (label "tree")."""
    width, height = size
    rng = np.random.default_rng(1)
    annotations = []
    for image_id in (1, 2):
        for k in range(masks_per_image):
            mask = rng.random((height, width)) > 0.5 if noise else ring(height, width, 3 + k)
            rle = masks.encode(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 7, "iscrowd": 0, "segmentation": rle,
                                "area": int(mask.sum()), "bbox": [0, 0, width, height]})
    document = {"images": [{"id": 1, "file_name": "a.png", "width": width, "height": height},
                           {"id": 2, "file_name": "b.png", "width": width, "height": height}],
                "categories": [{"id": 7, "name": "tree"}], "annotations": annotations}
    path.write_text(json.dumps(document))
    return path


def snapshot(folder: Path, out: Path, capsys) -> tuple[dict, dict]:
    """What ``info --json`` prints and what ``export --format coco-rle`` writes."""
    capsys.readouterr()
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out)]) == 0
    capsys.readouterr()
    exported = json.loads(out.read_text())
    exported.pop("info", None)  # holds the date of the export
    return info, exported


def layers(project: Project) -> list[tuple[int, int | None, str]]:
    return [(a.image_id, a.label_id, a.rle["counts"]) for a in project.annotations()]


def check_project_works_as_before(project: Project, before_layers, before_undo: str) -> None:
    """The next edit is saved and undoable, and undo removes that one, not an older one."""
    image = project.ensure_image_info(project.image_by_path("b.png").id)
    events = []
    project.subscribe(events.append)
    new = project.add_annotation(image.id, masks.encode(ring(image.height, image.width, 2)))
    assert [sorted(e.kinds) for e in events] == [["annotations"]]
    assert project.history.undo_text == "Add mask"
    assert project.undo() == "Add mask"
    assert layers(project) == before_layers  # the new mask went, every older one stayed
    assert new.id not in [a.id for a in project.annotations()]
    assert project.history.undo_text == before_undo
    assert project.redo() == "Add mask"
    assert project.undo() == "Add mask"


FAULTS = {
    "full disk found at commit, SQLite rolled back": dict(match="COMMIT",
                                                            after="INSERT INTO annotations"),
    "full disk on the third mask": dict(match="INSERT INTO annotations", nth=3,
                                        rolls_back=False),
    "full disk writing the undo step": dict(match="INSERT INTO history"),
}


@pytest.mark.parametrize("plan", FAULTS.values(), ids=FAULTS.keys())
def test_failed_import_leaves_the_project_as_it_was(plan, fault, tmp_path, capsys):
    folder = make_folder(tmp_path / "photos")
    annotate(folder)
    info_before, export_before = snapshot(folder, tmp_path / "before.json", capsys)
    source = coco_file(tmp_path / "more.json", masks_per_image=3)
    db = folder / ".samdesk" / "project.sqlite"
    with Project.open(folder) as project:
        before_layers, before_undo = layers(project), project.history.undo_text
        events = []
        project.subscribe(events.append)
        fault.arm(**plan)
        with pytest.raises(StoreFullError) as failed:
            import_coco(project, source)
        assert str(failed.value) == f"{db}: disk full: the edit was not saved"
        assert fault.raised == 1
        assert events == []  # nobody was told of an edit that is not there
        assert layers(project) == before_layers
        assert [lab.name for lab in project.labels()] == ["car"]
        assert project.history.undo_text == before_undo and not project.history.can_redo
        check_project_works_as_before(project, before_layers, before_undo)
    assert snapshot(folder, tmp_path / "after.json", capsys) == (info_before, export_before)
    with Project.open(folder) as project:  # and the import goes in once there is room
        import_coco(project, source)
        assert len(project.annotations()) == 2 + 6
        assert project.undo() == "Import more.json"
        assert layers(project) == before_layers


def test_failed_undo_keeps_the_mask_and_its_undo_step(fault, tmp_path):
    folder = make_folder(tmp_path / "photos")
    annotate(folder)
    with Project.open(folder) as project:
        image = project.image_by_path("b.png")
        project.add_annotation(image.id, masks.encode(ring(r=2)))
        before = layers(project)
        fault.arm("COMMIT")
        with pytest.raises(StoreFullError, match="disk full: the undo was not saved"):
            project.undo()
        assert layers(project) == before
        assert project.history.undo_text == "Add mask" and not project.history.can_redo
        assert project.undo() == "Add mask"
        assert len(project.annotations()) == len(before) - 1


def test_store_locked_by_another_program_is_one_line_and_loses_nothing(tmp_path, capsys):
    folder = make_folder(tmp_path / "photos")
    annotate(folder)
    db = folder / ".samdesk" / "project.sqlite"
    other = sqlite3.connect(db, isolation_level=None)  # another program, holding the write lock
    with Project.open(folder) as project:
        before_layers, before_undo = layers(project), project.history.undo_text
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreLockedError) as failed:
            project.add_annotation(project.image_by_path("a.png").id, masks.encode(ring(r=3)))
        assert str(failed.value) == (f"{db} is locked by another program; "
                                     "the edit was not saved")
        with pytest.raises(StoreLockedError, match="the undo was not saved"):
            project.undo()
        assert layers(project) == before_layers
        other.execute("ROLLBACK")
        check_project_works_as_before(project, before_layers, before_undo)
    other.execute("BEGIN IMMEDIATE")
    source = coco_file(tmp_path / "more.json", masks_per_image=1)
    capsys.readouterr()
    assert main(["import-coco", str(folder), str(source)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()  # locked already when it opens
    assert line.startswith(f"samdesk: error: {db}") and "locked" in line
    other.execute("ROLLBACK")
    other.close()


def _can_mount_tmpfs() -> str | None:
    """Why a real small tmpfs cannot be used here, or None when it can."""
    if sys.platform != "linux":
        return "tmpfs is Linux only"
    if os.geteuid() != 0:
        return "mounting a 2 MB tmpfs needs root"
    return None


@pytest.fixture
def small_disk(tmp_path):
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(reason)
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_import_onto_a_real_full_disk_says_so_and_loses_nothing(small_disk, tmp_path, capsys):
    size = (200, 150)
    folder = make_folder(small_disk / "photos", size)
    with Project.open(folder) as project:
        car = project.add_label("car")
        for name, r in (("a.png", 20), ("b.png", 40)):
            image = project.image_by_path(name)
            project.add_annotation(image.id, masks.encode(ring(150, 200, r)), car.id)
    info_before, export_before = snapshot(folder, tmp_path / "before.json", capsys)
    big = coco_file(tmp_path / "big.json", masks_per_image=80, noise=True, size=size)
    assert big.stat().st_size > 2 * 2**20  # more than the disk holds
    db = folder / ".samdesk" / "project.sqlite"

    capsys.readouterr()
    assert main(["import-coco", str(folder), str(big)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"samdesk: error: {db}: disk full: the edit was not saved"
    assert all(line.startswith("import: ") for line in err[:-1]), err  # progress, no traceback
    assert snapshot(folder, tmp_path / "after.json", capsys) == (info_before, export_before)

    with Project.open(folder) as project:  # the same object goes on after the fault
        before_layers, before_undo = layers(project), project.history.undo_text
        with pytest.raises(StoreFullError, match=f"^{db}: disk full: the edit was not saved$"):
            import_coco(project, big)
        assert layers(project) == before_layers
        check_project_works_as_before(project, before_layers, before_undo)
    assert snapshot(folder, tmp_path / "again.json", capsys) == (info_before, export_before)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def fill(disk: Path) -> Path:
    """Write zeros to ``disk`` until it is full; the file that holds them."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(bytes(4096))
        except OSError:
            pass
    return filler


def test_a_disk_full_to_the_last_byte_names_the_store(small_disk, tmp_path, capsys):
    folder = make_folder(small_disk / "photos")
    annotate(folder)
    db = folder / ".samdesk" / "project.sqlite"
    with Project.open(folder) as project:
        before = layers(project)
        filler = fill(small_disk)
        noise = np.random.default_rng(2).random((30, 40)) > 0.5
        with pytest.raises(StoreFullError, match=f"^{db}: disk full: the edit was not saved$"):
            for _ in range(50):  # the first pages may still fit in the log
                project.add_annotation(project.image_by_path("a.png").id, masks.encode(noise))
        filler.unlink()
        kept = layers(project)
        # every layer committed before is kept, in order; the noise masks that still fit
        # before the disk filled (unlabelled, on a.png, listed by image) are the only others
        assert [k for k in kept if k[1] is not None] == before
        a_id = project.image_by_path("a.png").id
        assert all(k[0] == a_id and k[1] is None for k in kept if k[1] is None)
        project.add_annotation(project.image_by_path("a.png").id, masks.encode(noise))
        assert project.undo() == "Add mask" and layers(project) == kept
    filler = fill(small_disk)
    capsys.readouterr()
    assert main(["info", str(folder), "--json"]) == 2  # the store cannot even be opened
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"samdesk: error: {db}: disk full")
    filler.unlink()
    with Project.open(folder) as project:
        assert layers(project) == kept


def test_failed_rescan_and_image_details_are_one_line_and_kept_for_later(fault, tmp_path):
    folder = make_folder(tmp_path / "photos")
    annotate(folder)
    db = folder / ".samdesk" / "project.sqlite"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / "c.png")
    fault.arm("COMMIT", after="INSERT INTO images")
    with pytest.raises(StoreFullError) as failed:
        Project.open(folder)
    assert str(failed.value) == f"{db}: disk full: the image list was not saved"
    with Project.open(folder) as project:  # the lock went with the failed open
        assert [i.path for i in project.images()] == ["a.png", "b.png", "c.png"]
        image = project.image_by_path("c.png")
        fault.arm("COMMIT", after="UPDATE images")
        with pytest.raises(StoreFullError, match="what was read of the images was not saved"):
            project.ensure_image_info(image.id)
        assert project.image(image.id).width is None
        assert project.ensure_image_info(image.id).width == 40
        check_project_works_as_before(project, layers(project), project.history.undo_text)
