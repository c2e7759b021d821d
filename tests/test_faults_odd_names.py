"""Odd file names (issue 10.1, 10.9, 10.17): a non-UTF-8 name, a backslash, a newline,
links that lead nowhere. Each opens, is shown, exports and imports back, and
nothing committed is lost: ``info --json`` counts and an export taken before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.export.coco_import import import_coco
from samdesk.project import Project

ROOT = Path(__file__).resolve().parents[1]
BAD = b"bad\xff\xfename.png"
"""A file name that is not UTF-8 (Linux allows any bytes but ``/`` and NUL)."""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")


def samdesk(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the ``samdesk`` command as a person does: its output decoded as UTF-8."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "samdesk.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8", env=env,
                          timeout=300, check=False)


def write_png(path: Path | bytes, value: int = 90, size: tuple[int, int] = (40, 30)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(
        os.fsdecode(path), format="PNG")


def ring() -> np.ndarray:
    mask = np.zeros((30, 40), bool)
    mask[5:25, 5:35] = True
    mask[10:20, 12:28] = False
    return mask


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two images with one mask each, and an export of them taken before any fault."""
    root = tmp_path / "shots"
    root.mkdir()
    write_png(root / "a.png", 10)
    write_png(root / "b.png", 20)
    with Project.open(root) as project:
        car = project.add_label("car")
        for name in ("a.png", "b.png"):
            project.add_annotation(project.image_by_path(name).id, masks.encode(ring()), car.id)
    result = samdesk("export", root, "--format", "coco-rle", "--out", tmp_path / "before.json")
    assert result.returncode == 0, result.stderr
    return root


def annotations_by_file(path: Path) -> dict[str, list[tuple[int, str]]]:
    """COCO ``file_name`` -> its masks as (category id, RLE counts)."""
    coco = json.loads(path.read_text("utf-8"))
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    out: dict[str, list[tuple[int, str]]] = {name: [] for name in names.values()}
    for ann in coco["annotations"]:
        out[names[ann["image_id"]]].append((ann["category_id"], ann["segmentation"]["counts"]))
    return out


def test_a_name_that_is_not_utf8_opens_shows_exports_and_imports_back(folder: Path,
                                                                     tmp_path: Path) -> None:
    raw = os.fsencode(folder) + b"/" + BAD
    shutil.copy(os.fsencode(folder / "a.png"), raw)
    broken = os.fsencode(folder) + b"/broken\xff.png"
    with open(broken, "wb"):
        pass  # an empty file with an odd name: listed among the errors

    result = samdesk("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["images"], info["annotated"], info["annotations"]) == (4, 2, 2)
    assert info["errors"] == [{"file": "broken\ufffd.png", "error": "empty file"}]
    text = samdesk("info", folder)
    assert text.returncode == 0 and "cannot read broken\ufffd.png: empty file" in text.stdout

    with Project.open(folder) as project:  # the stored name opens the exact file
        record = project.image_by_path(os.fsdecode(BAD))
        assert record is not None and os.fsencode(project.image_file(record)) == raw
        project.add_annotation(record.id, masks.encode(ring()), project.labels()[0].id)
    with Project.open(folder) as project:  # and survives a reopen
        assert project.image_by_path(os.fsdecode(BAD)).annotation_count == 1

    out = tmp_path / "after.json"
    result = samdesk("export", folder, "--format", "coco-rle", "--out", out)
    assert result.returncode == 0, result.stderr
    after, before = annotations_by_file(out), annotations_by_file(tmp_path / "before.json")
    assert {k: after[k] for k in before} == before  # nothing committed was lost
    assert after["bad\ufffd\ufffdname.png"] == before["a.png"]  # shown with U+FFFD

    fresh = tmp_path / "fresh"  # the export imports back onto the right file
    fresh.mkdir()
    shutil.copy(raw, os.fsencode(fresh) + b"/" + BAD)
    with Project.open(fresh) as project:
        summary = import_coco(project, out)
        assert summary.annotations_added == 1
        assert project.image_by_path(os.fsdecode(BAD)).annotation_count == 1


def test_a_backslash_is_part_of_a_name_not_a_folder(folder: Path, tmp_path: Path) -> None:
    write_png(folder / "sub\\c.png", 30)  # one file whose name holds a backslash
    (folder / "sub").mkdir()
    write_png(folder / "sub" / "c.png", 40)  # and a file c.png in folder sub
    with Project.open(folder) as project:
        label = project.labels()[0].id
        flat = project.image_by_path("sub\\c.png")
        nested = project.image_by_path("sub/c.png")
        assert flat.id != nested.id and flat.path == "sub\\c.png"
        project.add_annotation(flat.id, masks.encode(ring()), label)
        project.add_annotation(nested.id, masks.encode(np.eye(30, 40, dtype=bool)), label)
    out = tmp_path / "after.json"
    assert samdesk("export", folder, "--format", "coco-rle", "--out", out).returncode == 0
    after = annotations_by_file(out)
    assert len(after["sub\\c.png"]) == len(after["sub/c.png"]) == 1

    fresh = tmp_path / "fresh"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns(".samdesk"))
    with Project.open(fresh) as project:
        assert import_coco(project, out).annotations_added == 4
        flat, nested = project.image_by_path("sub\\c.png"), project.image_by_path("sub/c.png")
        assert masks.decode(project.annotations(flat.id)[0].rle).sum() == ring().sum()
        assert masks.decode(project.annotations(nested.id)[0].rle).sum() == 30
        # a Windows-style path finds the file when no name holds it exactly
        write_png(fresh / "sub" / "d.png")
        project.rescan()
        assert project.image_by_path("sub\\d.png").path == "sub/d.png"


def test_a_newline_in_a_name_stays_on_one_line(folder: Path, tmp_path: Path) -> None:
    write_png(folder / "new\nline.png", 50)
    (folder / "zero\n.png").write_bytes(b"")
    result = samdesk("info", folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  cannot read zero\ufffd.png: empty file" in lines
    assert lines[0].endswith("4 images, 2 annotated, 2 masks")
    info = json.loads(samdesk("info", folder, "--json").stdout)
    assert info["errors"] == [{"file": "zero\n.png", "error": "empty file"}]  # JSON keeps it

    with Project.open(folder) as project:
        record = project.image_by_path("new\nline.png")
        project.add_annotation(record.id, masks.encode(ring()), project.labels()[0].id)
    out = tmp_path / "after.json"
    assert samdesk("export", folder, "--format", "coco-rle", "--out", out).returncode == 0
    after = annotations_by_file(out)
    assert after["new\nline.png"] == after["a.png"]  # the exact name: JSON escapes the newline


def test_links_that_lead_nowhere_are_named_in_info(folder: Path) -> None:
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "fine.png").symlink_to(folder / "a.png")
    result = samdesk("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["images"] == 3 and info["annotations"] == 2
    assert sorted((e["file"], e["error"]) for e in info["errors"]) == [
        ("gone.png", "broken link"), ("loop.png", "link loop")]
    assert "cannot read loop.png: link loop" in samdesk("info", folder).stdout


def test_the_images_dock_shows_odd_names_with_a_replacement_character(folder: Path,
                                                                      qtbot) -> None:
    from samdesk.views.images_dock import ImagesDock

    shutil.copy(os.fsencode(folder / "a.png"), os.fsencode(folder) + b"/" + BAD)
    write_png(folder / "new\nline.png")
    with Project.open(folder) as project:
        dock = ImagesDock()
        qtbot.addWidget(dock)
        dock.set_images(project.images())
        shown = [dock.tree.topLevelItem(i).text(0) for i in range(dock.tree.topLevelItemCount())]
    assert sorted(shown) == ["a.png", "b.png", "bad\ufffd\ufffdname.png", "new\ufffdline.png"]


def test_an_exported_name_shown_with_u_fffd_matches_only_an_unambiguous_file() -> None:
    from samdesk.annotations import ImageRecord
    from samdesk.export.coco_import import ImageMatcher

    one, two, three = (os.fsdecode(b"x\xff.png"), os.fsdecode(b"x\xfe.png"),
                       os.fsdecode(b"y\xff.png"))
    matcher = ImageMatcher([ImageRecord(1, one), ImageRecord(2, two), ImageRecord(3, three)])
    assert matcher.match("y\ufffd.png")[0].id == 3
    assert matcher.match("x\ufffd.png")[0] is None  # two files show as x�.png: not guessed
