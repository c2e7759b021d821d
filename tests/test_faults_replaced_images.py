"""Image files that change under a project (issue 10.2, 10.6, 10.16, 10.11).

A file broken for a moment is read again once fixed; a file put back
byte-identical is no longer flagged; a file replaced by one of another size
gets its new size stored, its masks that no longer fit are shown and kept or
dropped, and no mask is saved that cannot be drawn. Each asserts what the
person sees and that nothing committed was lost (``info --json``, exports).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageStatus
from samdesk.cli import main
from samdesk.errors import ImageReadError, ProjectError
from samdesk.project import Project

ROOT = Path(__file__).resolve().parents[1]


def write_png(path: Path, value: int = 90, size: tuple[int, int] = (40, 30)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, format="PNG")


def touch_later(path: Path) -> None:
    """Give ``path`` another modification time, as a copy or an editor would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def ring(h: int = 30, w: int = 40) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[5:25, 5:35] = True
    mask[10:20, 12:28] = False
    return mask


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shots"
    root.mkdir()
    for name, value in (("a.png", 10), ("b.png", 20)):
        write_png(root / name, value)
    with Project.open(root) as project:
        car = project.add_label("car")
        for name in ("a.png", "b.png"):
            record = project.ensure_image_info(project.image_by_path(name).id)
            project.add_annotation(record.id, masks.encode(ring()), car.id)
    return root


def info_json(folder: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["info", str(folder), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def export(folder: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_a_file_broken_for_a_moment_is_read_again_once_fixed(folder: Path, tmp_path: Path,
                                                            capsys) -> None:
    good = (folder / "a.png").read_bytes()
    (folder / "a.png").write_bytes(good[: len(good) // 2])  # truncated by a copy in progress
    info = info_json(folder, capsys)
    assert info["errors"] == [{"file": "a.png", "error": "truncated file"}]
    assert info["status"] == {"error": 1, "in_progress": 1}
    broken, _ = export(folder, tmp_path / "broken.json", capsys)
    assert [i["file_name"] for i in broken["images"]] == ["b.png"]

    (folder / "a.png").write_bytes(good)  # the copy finished
    touch_later(folder / "a.png")
    info = info_json(folder, capsys)
    assert info["errors"] == [] and info["status"] == {"in_progress": 2}
    assert info["annotations"] == 2  # nothing committed was lost
    fixed, _ = export(folder, tmp_path / "fixed.json", capsys)
    assert [i["file_name"] for i in fixed["images"]] == ["a.png", "b.png"]
    assert len(fixed["annotations"]) == 2

    (folder / "b.png").rename(tmp_path / "b.png")  # missing for a moment
    with Project.open(folder) as project:
        assert project.image_by_path("b.png").error == "file is missing"
    (tmp_path / "b.png").rename(folder / "b.png")
    with Project.open(folder) as project:
        record = project.ensure_image_info(project.image_by_path("b.png").id)
        assert record.error is None and record.status == ImageStatus.IN_PROGRESS


def test_an_error_recorded_by_the_window_is_cleared_when_the_file_changes(folder: Path) -> None:
    with Project.open(folder) as project:
        image_id = project.image_by_path("a.png").id
        project.mark_error(image_id, "truncated file")  # the window failed to decode it
        assert project.ensure_image_info(image_id).status == ImageStatus.ERROR  # same file
        touch_later(folder / "a.png")
        record = project.ensure_image_info(image_id)
        assert record.error is None and record.status == ImageStatus.IN_PROGRESS


def test_a_file_put_back_byte_identical_is_no_longer_flagged(folder: Path, capsys) -> None:
    original = (folder / "a.png").read_bytes()
    write_png(folder / "a.png", 200)  # same size, other pixels
    with Project.open(folder) as project:
        assert project.image_by_path("a.png").changed
        assert project.unfitting_masks() == {}
    assert info_json(folder, capsys)["changed"] == ["a.png"]
    (folder / "a.png").write_bytes(original)
    touch_later(folder / "a.png")
    with Project.open(folder) as project:
        assert not project.image_by_path("a.png").changed
    assert info_json(folder, capsys)["changed"] == []


def test_an_image_replaced_by_another_size_shows_which_masks_no_longer_fit(
        folder: Path, tmp_path: Path, capsys) -> None:
    before, _ = export(folder, tmp_path / "before.json", capsys)
    original = (folder / "a.png").read_bytes()
    write_png(folder / "a.png", 60, size=(64, 48))
    with Project.open(folder) as project:
        record = project.image_by_path("a.png")
        assert (record.width, record.height) == (64, 48) and record.changed
        assert project.unfitting_masks() == {record.id: [1]}
        with pytest.raises(ProjectError, match=r"a\.png: the mask is 40x30 but the image is "
                                               r"64x48 now; the mask was not saved"):
            project.add_annotation(record.id, masks.encode(ring()))
        assert project.image(record.id).annotation_count == 1  # nothing was saved
        project.add_annotation(record.id, masks.encode(ring(48, 64)), project.labels()[0].id)

    info = info_json(folder, capsys)
    assert info["unfitting"] == [{"file": "a.png", "masks": 1, "size": [64, 48], "kept": False}]
    assert info["annotations"] == 3
    assert main(["info", str(folder)]) == 0
    assert ("1 masks of a.png no longer fit its size 64x48 (the file was replaced); "
            f"'samdesk unfitting {folder} --drop' deletes them") in capsys.readouterr().out

    after, lines = export(folder, tmp_path / "after.json", capsys)
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in after["images"]}
    assert sizes == {"a.png": (64, 48), "b.png": (40, 30)}  # the current size
    assert "warning a.png: 1 masks not exported: they do not fit its size 64x48" in lines
    kept = {a["id"] for a in after["annotations"]}
    assert {a["id"] for a in before["annotations"]} - kept == {1}

    (folder / "a.png").write_bytes(original)  # the old file is put back: they fit again
    touch_later(folder / "a.png")
    with Project.open(folder) as project:
        record = project.image_by_path("a.png")
        assert (record.width, record.height) == (40, 30) and not record.changed
        assert project.unfitting_masks() == {record.id: [3]}  # the 64x48 one does not


def test_unfitting_masks_are_dropped_undoably_or_kept(folder: Path, capsys) -> None:
    write_png(folder / "a.png", 60, size=(64, 48))
    write_png(folder / "b.png", 60, size=(30, 40))
    assert main(["unfitting", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "a.png: 1 masks do not fit 64x48" in out and "b.png: 1 masks do not fit 30x40" in out
    with Project.open(folder) as project:
        a, b = project.image_by_path("a.png"), project.image_by_path("b.png")
        assert project.drop_unfitting_masks([a.id]) == 1
        assert project.annotations(a.id) == [] and not project.image(a.id).changed
        project.undo()
        assert len(project.annotations(a.id)) == 1  # undo brings it back
        project.keep_unfitting_masks([b.id])
        assert not project.image(b.id).changed and len(project.annotations(b.id)) == 1
    assert info_json(folder, capsys)["unfitting"] == [  # a.png: its drop was undone
        {"file": "a.png", "masks": 1, "size": [64, 48], "kept": True},
        {"file": "b.png", "masks": 1, "size": [30, 40], "kept": True}]
    assert main(["info", str(folder)]) == 0
    assert ("1 masks of b.png no longer fit its size 30x40 (kept: not drawn nor exported while "
            "they do not fit)") in capsys.readouterr().out
    assert main(["unfitting", str(folder), "--drop"]) == 0
    assert "dropped 2 masks" in capsys.readouterr().out
    assert info_json(folder, capsys)["annotations"] == 0


def test_the_window_shows_a_notice_for_replaced_images(folder: Path, qtbot) -> None:
    from samdesk.views.changed_images import show_notice

    write_png(folder / "a.png", 60, size=(64, 48))
    with Project.open(folder) as project:
        notice = show_notice(project)
        assert notice is not None and not notice.isModal()
        qtbot.addWidget(notice)
        assert "1 images were replaced" in notice.text()
        assert notice.informativeText() == "a.png: 1 masks (the image is 64x48 now)"
        notice.drop_button.click()
        assert notice.outcome == "dropped 1 masks that no longer fit"
        assert project.unfitting_masks() == {}
        assert show_notice(project) is None


def huge_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` x ``height`` (its pixel data is cut short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


DECODE_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))
from samdesk import images
from samdesk.errors import ImageReadError
try:
    images.load_rgb(sys.argv[1])
except ImageReadError as exc:
    print(exc)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")
def test_an_image_too_large_for_memory_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    huge_png(path, 30000, 30000)
    result = subprocess.run([sys.executable, "-c", DECODE_UNDER_LIMIT, str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"{path}: too large to decode: 30000x30000, 6008 MB needed"), line
    assert "\n" not in line


def test_a_memory_error_while_decoding_names_the_file(tmp_path: Path, monkeypatch) -> None:
    from samdesk import images

    path = tmp_path / "a.png"
    write_png(path)

    def no_memory(self: Image.Image) -> None:
        raise MemoryError

    monkeypatch.setattr(Image.Image, "load", no_memory)
    monkeypatch.setattr("PIL.PngImagePlugin.PngImageFile.load", no_memory)
    with pytest.raises(ImageReadError, match=r"a\.png: too large to decode: 40x30, 0 MB needed"):
        images.load_rgb(path)


def test_the_window_draws_a_replaced_image_at_its_new_size(folder: Path, qtbot) -> None:
    from samdesk.imagefiles import content_hash
    from samdesk.inference.worker.requests import PredictResult
    from samdesk.views.session import Session
    from tests.views.test_session import FakeClient, RecordingView, open_and_wait, prediction

    write_png(folder / "a.png", 60, size=(64, 48))
    with Project.open(folder) as project:
        client, view = FakeClient(), RecordingView()
        session = Session(project, client, view)
        try:
            open_and_wait(qtbot, session, project.image_by_path("a.png").id)
            assert view.image.shape == (48, 64, 3)
            # the embedding is asked for the file as it is now, not the one first read
            assert client.last("focus")[2].key == content_hash(folder / "a.png")
            assert view.layers == []  # the 40x30 mask cannot be drawn: it is not
            session.set_box(5, 5, 30, 30)
            request_id, _, image, prompts, *_ = client.last("predict")
            mask = np.zeros((48, 64), bool)
            mask[5:30, 5:30] = True
            client.predicted.emit(PredictResult.of(request_id, image.key, prompts,
                                                   prediction((mask, 0.9))))
            [ann_id] = session.accept()
            assert project.annotation(ann_id).rle["size"] == [48, 64]
        finally:
            session.close()


def test_the_window_offers_to_drop_the_masks_of_a_replaced_image(folder: Path, tmp_path: Path,
                                                                 qtbot, monkeypatch) -> None:
    from PySide6.QtCore import QSettings

    from samdesk.inference.worker.cache import EmbeddingCache
    from samdesk.inference.worker.client import InferenceClient
    from samdesk.views.main_window import MainWindow

    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))  # nothing installed: GrabCut
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    write_png(folder / "a.png", 60, size=(64, 48))
    window = MainWindow(settings, InferenceClient(EmbeddingCache(None)))
    qtbot.addWidget(window)
    window.show()
    try:
        assert window.open_folder(folder)
        notice = window.changed_notice
        assert notice is not None and notice.isVisible() and not notice.isModal()
        assert notice.informativeText() == "a.png: 1 masks (the image is 64x48 now)"
        notice.drop_button.click()
        assert window.status.currentMessage() == "dropped 1 masks that no longer fit"
        assert not notice.isVisible()
        a = window.project.image_by_path("a.png")
        assert window.project.annotations(a.id) == []
        window.project.undo()  # Ctrl+Z brings them back
        assert len(window.project.annotations(a.id)) == 1
    finally:
        window.close()
