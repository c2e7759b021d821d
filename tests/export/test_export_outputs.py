"""Exports never become project images, keep the umask, and fail with one line naming the file."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from samdesk import masks
from samdesk.cli import main
from samdesk.errors import ProjectError
from samdesk.export import ExportError, ExportOptions, default_export_folder, export
from samdesk.imagefiles import EXPORT_MARKER
from samdesk.project import Project
from tests.export_fixtures import Sample, build

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[Sample]:
    built = build(tmp_path / "project")
    yield built
    built.project.close()


def reopened(sample: Sample) -> list[str]:
    """Close and open the project again: the images it lists then (what a person sees)."""
    sample.project.close()
    sample.project = Project.open(sample.folder)
    return [r.path for r in sample.project.images()]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "samdesk.cli", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_png_exports_inside_the_project_are_never_listed_as_images(sample: Sample,
                                                                    capsys) -> None:
    folder = sample.folder
    before = reopened(sample)
    assert len(before) == 4
    for count, fmt in enumerate(("png-instance", "png-semantic", "png-instance"), start=1):
        export(sample.project, fmt, ExportOptions(out=folder / "export" / f"{fmt}-{count}"))
        assert sample.project.rescan() == 0  # the window's rescan finds nothing new
        assert reopened(sample) == before  # 4, not 4 + 4 per export
    assert (folder / "export" / EXPORT_MARKER).is_file()
    sample.project.close()
    assert main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 4
    assert main(["export", str(folder), "--format", "coco-rle",
                 "--out", str(folder / "export" / "all.json")]) == 0
    document = json.loads((folder / "export" / "all.json").read_text())
    assert sorted(im["file_name"] for im in document["images"]) == sorted(before)


def test_an_export_made_before_markers_is_left_out_once_exported_again(sample: Sample) -> None:
    folder = sample.folder
    out = folder / "export" / "export-png-instance"
    export(sample.project, "png-instance", ExportOptions(out=out, images="none"))
    for marker in folder.rglob(EXPORT_MARKER):  # as an older samdesk wrote it (no images/)
        marker.unlink()
    sample.project.rescan()
    assert len(sample.project.images()) == 8  # the fault: its 4 PNGs listed as images
    summary = export(sample.project, "png-instance", ExportOptions(out=out))
    assert summary.images == 4  # the listed mask PNGs are not exported into the dataset
    assert not (out / "export").exists()
    assert (out / EXPORT_MARKER).is_file()
    sample.project.rescan()
    assert [r.path for r in sample.project.images()] == ["a.png", "c.jpg", "d.png", "sub/b.png"]


def test_a_folder_export_onto_the_project_images_is_refused(sample: Sample) -> None:
    folder = sample.folder
    a_png = (folder / "a.png").read_bytes()
    for out in (folder, folder / "sub"):
        with pytest.raises(ExportError, match=r"holds images of the project \((a|sub/b)\.png\);"
                                              r" export into a new folder.*project-export"):
            export(sample.project, "png-semantic", ExportOptions(out=out))
    assert (folder / "a.png").read_bytes() == a_png  # not overwritten by its mask
    assert not list(folder.rglob(EXPORT_MARKER))  # sub/b.png stays an image
    assert len(reopened(sample)) == 4


def test_the_default_export_folder_is_beside_the_project(sample: Sample) -> None:
    assert default_export_folder(sample.project) == sample.folder.resolve().with_name(
        "project-export")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_exported_files_honour_the_umask(sample: Sample, tmp_path: Path, umask: int,
                                         mode: int) -> None:
    old = os.umask(umask)
    try:
        written = []
        for fmt, out in (("coco-rle", tmp_path / "new" / "coco.json"),
                         ("png-instance", tmp_path / "pi"), ("png-semantic", tmp_path / "ps")):
            written += export(sample.project, fmt, ExportOptions(out=out)).files
    finally:
        os.umask(old)
    assert len(written) == 1 + 10 + 6
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {oct(mode)}


def failing(error: int):
    """A stand-in for an OS call that raises ``OSError(error)`` (a full or read-only disk)."""
    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))
    return fail


def test_a_full_disk_names_the_output_file(sample: Sample, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "coco.json"
    out.write_text("older export")
    monkeypatch.setattr("samdesk.export.base.os.fsync", failing(errno.ENOSPC))
    with pytest.raises(ExportError) as caught:
        export(sample.project, "coco-rle", ExportOptions(out=out))
    assert str(caught.value) == (f"disk full: could not write {out}; free some space "
                                 "or export to another disk")
    assert out.read_text() == "older export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.json", "project"]  # no temp left


def test_a_read_only_target_is_named_not_its_temporary_file(sample: Sample, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr("samdesk.export.base.os.open", failing(errno.EROFS))
    for fmt, out, named in (("coco-rle", tmp_path / "c.json", tmp_path / "c.json"),
                            ("png-semantic", tmp_path / "ps", tmp_path / "ps" / "labels.txt")):
        with pytest.raises(ExportError) as caught:
            export(sample.project, fmt, ExportOptions(out=out))
        assert str(caught.value) == (f"{named}: cannot be written (permission denied or "
                                     "read-only); choose another place to export to")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"),
                    reason="a real full and read-only disk needs a tmpfs mount (root)")
def test_a_real_full_then_read_only_disk_gives_one_line(sample: Sample, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(disk)]).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    sample.project.close()
    try:
        (disk / "filler").write_bytes(os.urandom(20_000))
        for remount, reason in ((False, "disk full: could not write"),
                                (True, "cannot be written (permission denied")):
            if remount:
                subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            for fmt, out in (("coco-rle", disk / "c.json"), ("png-instance", disk / "pi")):
                result = cli("export", str(sample.folder), "--format", fmt, "--out", str(out))
                lines = result.stderr.strip().splitlines()
                assert result.returncode == 2 and reason in lines[-1], result.stderr
                assert lines[-1].startswith("samdesk: error: ") and "Traceback" not in result.stderr
                images = fmt == "coco-rle" and f"{disk / 'images'}/" in lines[-1]
                assert str(out) in lines[-1] or images  # c.json, or an image copied beside it
                assert ".tmp" not in lines[-1]
                assert "Errno" not in lines[-1]
    finally:
        subprocess.run(["umount", str(disk)])


def test_an_existing_file_in_the_way_is_one_line_saying_what_to_do(sample: Sample,
                                                                   tmp_path: Path) -> None:
    sample.project.close()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for fmt, out, says in (("png-instance", blocker, "is a file, and png-instance writes a "
                            "folder of PNGs; give a folder path"),
                           ("coco-rle", blocker / "x.json", f"{blocker} is a file, not a folder; "
                            "remove it or choose another place")):
        result = cli("export", str(sample.folder), "--format", fmt, "--out", str(out))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Errno" not in result.stderr
        assert lines[-1].startswith(f"samdesk: error: {out}: ") and says in lines[-1]
    assert blocker.read_text() == "x"


def test_non_finite_scores_are_written_as_null(sample: Sample, tmp_path: Path) -> None:
    image = sample.project.images()[0]
    mask = np.zeros((image.height or 30, image.width or 40), dtype=bool)
    mask[1:3, 1:3] = True
    for score in (float("inf"), float("-inf"), float("nan")):
        sample.project.add_annotation(image.id, masks.encode(mask), sample.labels["cat"],
                                      score=score)
    out = tmp_path / "scores.json"
    export(sample.project, "coco-rle", ExportOptions(out=out))

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    document = json.loads(out.read_text(), parse_constant=refuse)  # a strict parser
    scores = [ann["attributes"]["score"] for ann in document["annotations"]
              if "attributes" in ann]
    assert scores == [0.875, None, None]  # inf, -inf; SQLite stores NaN as no score at all


def test_a_label_name_with_a_control_character_is_refused(sample: Sample) -> None:
    for name in ("two\nlines", "tab\there", "line\u2028break"):
        with pytest.raises(ProjectError, match="holds a control character"):
            sample.project.add_label(name)
        with pytest.raises(ProjectError, match="holds a control character"):
            sample.project.update_label(sample.labels["cat"], name=name)
    assert [lab.name for lab in sample.project.labels()] == ["cat", "dog"]


def test_labels_txt_keeps_one_line_per_id_for_an_old_store_with_such_a_name(
        sample: Sample, tmp_path: Path) -> None:
    with sample.project._conn:  # a name stored by a samdesk that did not refuse it
        sample.project._conn.execute("UPDATE labels SET name=? WHERE id=?",
                                     ("two\nlines", sample.labels["dog"]))
    export(sample.project, "png-semantic", ExportOptions(out=tmp_path / "ps"))
    lines = (tmp_path / "ps" / "labels.txt").read_text().splitlines()
    assert lines == ["_background_", "cat", "two\\x0alines"]
