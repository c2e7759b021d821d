"""A folder that is (or becomes) read-only: its project opens read-only, nothing is stranded.

The folder is made read-only for real: as root with a read-only bind mount
(``mount --bind``, then ``remount,bind,ro``), otherwise with ``chmod``; a
test is skipped, with the reason, where neither works. Each test compares
``info --json`` and a COCO export with the ones taken before.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks, storage
from samdesk.cli import main
from samdesk.errors import ProjectError
from samdesk.project import Project

MASKS = 30


def make_images(root: Path, count: int = 10) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((30, 40, 3), 20 * i, np.uint8)).save(root / f"im{i}.png")
    return root


def annotate(folder: Path, count: int = MASKS, label: str = "car", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with Project.open(folder) as project:
        found = project.label_by_name(label)
        label_id = (found or project.add_label(label)).id
        images = project.images()
        for k in range(count):
            mask = rng.random((30, 40)) > 0.6
            project.add_annotation(images[k % len(images)].id, masks.encode(mask), label_id)


def info(folder: Path, capsys) -> dict:
    assert main(["info", str(folder), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    found.pop("note", None)
    return found


def export(folder: Path, out: Path, capsys) -> dict:
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out)]) == 0
    capsys.readouterr()
    data = json.loads(out.read_text())
    return {key: data[key] for key in ("images", "annotations", "categories")}


class ReadOnlyView:
    """``src`` seen read-only at :attr:`path`; :meth:`writable` lifts that."""

    def __init__(self, src: Path, scratch: Path) -> None:
        self.src = src
        self.bound = os.geteuid() == 0
        if self.bound:
            self.path = scratch / "view" / src.name
            self.path.mkdir(parents=True)
            self._run("mount", "--bind", str(src), str(self.path))
            try:
                self._run("mount", "-o", "remount,bind,ro", str(self.path))
            except BaseException:
                self._run("umount", str(self.path))
                raise
        else:
            self.path = src
            self._chmod(False)
        if os.access(self.path, os.W_OK) and not self.bound:
            self.close()
            pytest.skip("chmod did not make the folder read-only")

    @staticmethod
    def _run(*command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only folder: {' '.join(command)}: "
                        f"{done.stderr.strip()}")

    def _chmod(self, writable: bool) -> None:
        mode = stat.S_IRWXU if writable else stat.S_IRUSR | stat.S_IXUSR
        for path in (self.src, self.src / storage.STORE_DIRNAME):
            if path.exists():
                path.chmod(mode)

    def writable(self) -> None:
        if self.bound:
            self._run("mount", "-o", "remount,bind,rw", str(self.path))
        else:
            self._chmod(True)

    def close(self) -> None:
        if self.bound:
            subprocess.run(["umount", str(self.path)], capture_output=True)
        else:
            self._chmod(True)


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Callable[[Path], ReadOnlyView]]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    views: list[ReadOnlyView] = []

    def make(src: Path) -> ReadOnlyView:
        views.append(ReadOnlyView(src, tmp_path))
        return views[-1]

    yield make
    for view in views:
        view.close()


def test_read_only_folder_with_a_project_opens_that_project(tmp_path, read_only, capsys):
    src = make_images(tmp_path / "shots")
    annotate(src)
    before, exported = info(src, capsys), export(src, tmp_path / "before.json", capsys)
    assert before["annotations"] == MASKS
    view = read_only(src).path

    assert main(["info", str(view), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "read-only" in shown.pop("note")
    assert shown == before
    assert export(view, tmp_path / "after.json", capsys) == exported
    with Project.open(view) as project:
        assert project.read_only and project.db_path == view / ".samdesk" / "project.sqlite"
        with pytest.raises(ProjectError, match="read-only .*the edit was not saved"):
            project.add_label("bus")
    coco = tmp_path / "after.json"
    assert main(["import-coco", str(view), str(coco)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("samdesk: error:") and "read-only" in line
    assert not (tmp_path / "data").exists()  # no second store started in the user data


def test_a_pending_wal_is_read_even_where_no_shm_can_be_made(tmp_path, read_only, capsys):
    """A store whose last edits are still in its -wal (the writer was killed) is read whole."""
    src = make_images(tmp_path / "shots")
    annotate(src, count=3)
    copy = make_images(tmp_path / "copy")
    with Project.open(src) as writer:  # edits sit in the -wal until the writer closes
        image = writer.images()[0]
        writer.add_annotation(image.id, masks.encode(np.eye(30, 40, dtype=bool)))
        (copy / ".samdesk").mkdir()
        for name in ("project.sqlite", "project.sqlite-wal"):
            shutil.copyfile(src / ".samdesk" / name, copy / ".samdesk" / name)
    assert (copy / ".samdesk" / "project.sqlite-wal").stat().st_size > 0
    view = read_only(copy).path
    assert info(view, capsys)["annotations"] == 4
    assert sorted(os.listdir(view / ".samdesk")) == ["project.sqlite", "project.sqlite-wal"]


def test_window_says_read_only(tmp_path, read_only, qtbot, monkeypatch):
    from PySide6.QtCore import QSettings

    from samdesk.inference.worker.cache import EmbeddingCache
    from samdesk.inference.worker.client import InferenceClient
    from samdesk.views.main_window import MainWindow

    src = make_images(tmp_path / "shots", count=2)
    annotate(src, count=2)
    view = read_only(src).path
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings, InferenceClient(EmbeddingCache(None)))
    qtbot.addWidget(window)
    window.show()
    try:
        assert window.open_folder(view)
        assert window.windowTitle().endswith("(read-only)")
        assert "read-only" in window.statusBar().currentMessage()
        assert window.project is not None and len(window.project.annotations()) == 2
        qtbot.waitUntil(lambda: window.session is not None and not window.session.loading)
        window.actions_by_name["done"].trigger()  # Ctrl+Enter: an edit, refused in one line
        shown = window.statusBar().currentMessage()
        assert "read-only" in shown and "the edit was not saved" in shown, shown
        assert "\n" not in shown and all(a.status.value != "done"
                                          for a in window.project.images())
    finally:
        window.close()


def test_work_kept_while_read_only_is_merged_once_writable(tmp_path, read_only, capsys):
    src = make_images(tmp_path / "shots")
    ro = read_only(src)
    with Project.open(ro.path) as project:  # no project yet: a spare store in the user data
        assert not project.read_only
        assert project.db_path.is_relative_to(tmp_path / "data")
        spare = project.db_path
    annotate(ro.path, count=5, label="bus")
    kept, exported = info(ro.path, capsys), export(ro.path, tmp_path / "before.json", capsys)
    assert kept["annotations"] == 5

    ro.writable()
    with Project.open(ro.path) as project:
        assert project.db_path == ro.path / ".samdesk" / "project.sqlite"
        assert "merged 5 masks" in project.store_note
    assert not spare.exists()  # moved aside (kept as …-merged-STAMP), so merged only once
    assert list(spare.parent.parent.glob(f"{spare.parent.name}-merged-*/project.sqlite"))
    assert info(ro.path, capsys) == kept
    assert export(ro.path, tmp_path / "after.json", capsys) == exported


def test_spare_store_merges_into_an_existing_store_by_label_and_path(tmp_path, monkeypatch):
    """An older samdesk left work in a spare store although the folder had its own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = make_images(tmp_path / "shots")
    annotate(folder, count=4, label="car", seed=1)
    other = make_images(tmp_path / "elsewhere")
    annotate(other, count=3, label="car", seed=2)
    annotate(other, count=2, label="bus", seed=3)
    with Project.open(folder) as project:
        project.set_status(project.image_by_path("im0.png").id, "done")
    spare = storage.spare_store(folder)
    spare.parent.mkdir(parents=True)
    shutil.copyfile(other / ".samdesk" / "project.sqlite", spare)

    with Project.open(folder) as project:
        assert "merged 5 masks" in project.store_note
        layers = project.annotations()
        assert len(layers) == 9
        assert sorted(lab.name for lab in project.labels()) == ["bus", "car"]
        assert project.image_by_path("im0.png").status.value == "done"
        image = project.image_by_path("im1.png")
        assert sorted(a.z for a in project.annotations(image.id)) == list(
            range(len(project.annotations(image.id))))
        assert project.undo() is not None  # one undoable edit
        assert len(project.annotations()) == 4
