"""``samdesk info | export | import-coco`` as a person runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from samdesk import masks
from samdesk.cli import main
from samdesk.project import Project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "shots"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((30, 40, 3), 50 * i, np.uint8)).save(root / f"im{i}.png")
    good = root / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)).save(
        good, quality=95)
    (root / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("this is not a picture")
    return root


def annotate(folder):
    with Project.open(folder) as project:
        car = project.add_label("car")
        ring = np.zeros((30, 40), bool)
        ring[5:25, 5:35] = True
        ring[10:20, 12:28] = False
        image = project.image_by_path("im1.png")
        project.add_annotation(image.id, masks.encode(ring), car.id)
        project.set_status(image.id, "done")
        project.add_annotation(project.image_by_path("im2.png").id,
                               masks.encode(np.eye(30, 40, dtype=bool)), car.id)
    return ring


def test_info_json_counts_and_names_unreadable_files(folder, capsys):
    annotate(folder)
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 7 and info["annotated"] == 2 and info["annotations"] == 2
    assert info["labels"] == {"car": 2}
    bad = {e["file"]: e["error"] for e in info["errors"]}
    assert set(bad) == {"truncated.jpg", "zero.png", "text.png"}
    assert all(bad.values())


def test_export_then_pycocotools_reads_the_masks(folder, tmp_path, capsys):
    ring = annotate(folder)
    out = tmp_path / "out" / "coco.json"
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out),
                 "--only-done"]) == 0
    coco = COCO(str(out))
    [ann] = coco.loadAnns(coco.getAnnIds())
    assert coco.imgs[ann["image_id"]]["file_name"] == "im1.png"
    assert np.array_equal(coco.annToMask(ann).astype(bool), ring)


def test_import_coco_into_another_folder(folder, tmp_path, capsys):
    ring = annotate(folder)
    out = tmp_path / "all.json"
    assert main(["export", str(folder), "--format", "coco-rle", "--out", str(out)]) == 0
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("im0.png", "im1.png", "im2.png"):
        (copy / name).write_bytes((folder / name).read_bytes())
    assert main(["import-coco", str(copy), str(out)]) == 0
    assert "2 masks added" in capsys.readouterr().out
    with Project.open(copy) as project:
        [layer] = project.annotations(project.image_by_path("im1.png").id)
        assert np.array_equal(masks.decode(layer.rle), ring)


def test_errors_are_one_line_with_nonzero_status(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    (tmp_path / "p").mkdir()
    for args in (["info", str(tmp_path / "missing")],
                 ["import-coco", str(tmp_path / "p"), str(bad)]):
        result = subprocess.run([sys.executable, "-m", "samdesk.cli", *args], cwd=ROOT,
                                capture_output=True, text=True)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("samdesk: error:"), result.stderr
        assert "Traceback" not in result.stderr
    assert "bad.json" in lines[0]


def test_locked_project_is_read_read_only_by_info(folder, capsys):
    annotate(folder)
    with Project.open(folder):
        assert main(["info", str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    assert "read-only" in captured.err
    assert json.loads(captured.out)["annotations"] == 2


def test_a_bare_folder_argument_opens_the_window(monkeypatch, tmp_path):
    import samdesk.cli as cli
    from samdesk.commands import gui

    calls = []
    monkeypatch.setattr(gui, "run", lambda args: calls.append(args.folder) or 0)
    assert cli.main([str(tmp_path)]) == 0
    assert cli.main([]) == 0
    assert calls == [str(tmp_path), None]
