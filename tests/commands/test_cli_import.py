"""``samdesk import FOLDER SOURCE [--format]``: the format recognised, one line when not;
``export --polygons``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk.cli import main
from samdesk.errors import FormatError
from samdesk.export import ExportOptions, export
from samdesk.export.detect import IMPORTERS, recognise
from samdesk.project import Project
from tests.export_fixtures import build, write_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, Path]:
    """A labelme export folder, a labelme file and a COCO file of the sample project."""
    sample = build(tmp_path / "project")
    with sample.project as project:
        export(project, "labelme", ExportOptions(out=tmp_path / "labelme"))
        export(project, "coco-rle", ExportOptions(out=tmp_path / "coco.json"))
    return {"folder": tmp_path / "labelme", "file": tmp_path / "labelme" / "a.json",
            "coco": tmp_path / "coco.json"}


def test_the_format_is_recognised_from_the_source(exported: dict[str, Path]) -> None:
    assert recognise(exported["coco"]) == "coco"
    assert recognise(exported["file"]) == "labelme"
    assert recognise(exported["folder"]) == "labelme"
    assert list(IMPORTERS)[:2] == ["coco", "labelme"]


def test_an_unrecognised_source_is_one_line_naming_it_and_the_formats(tmp_path: Path,
                                                                      capsys) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}), encoding="utf-8")
    with pytest.raises(FormatError) as caught:
        recognise(other)
    assert str(caught.value).startswith(f"{other}: not a dataset samdesk recognises; "
                                        "give --format coco|labelme")
    assert "(coco: a .json with images and annotations; " in str(caught.value)
    assert "labelme: a .json with shapes" in str(caught.value)
    write_images(tmp_path / "p")
    assert main(["import", str(tmp_path / "p"), str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(other) in err[0] and "--format" in err[0]
    assert not (tmp_path / "p" / ".samdesk").exists()  # refused before the project is made
    assert main(["import", str(tmp_path / "p"), str(tmp_path / "missing")]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err


def test_import_recognises_labelme_and_coco(exported: dict[str, Path], tmp_path: Path,
                                            capsys) -> None:
    write_images(tmp_path / "fresh")
    assert main(["import", str(tmp_path / "fresh"), str(exported["folder"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("import (labelme): labelme: 4 labelme files, 4 images matched, "
                      "6 masks and 0 pending boxes added, 2 new labels")
    # the same masks as COCO: recognised, and nothing is added twice
    assert main(["import", str(tmp_path / "fresh"), str(exported["coco"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("import (coco): coco.json: 4 images matched, 0 masks added")
    with Project.open(tmp_path / "fresh") as project:
        assert len(project.annotations()) == 6


def test_format_given_overrides_recognition_and_nothing_matched_exits_non_zero(
        exported: dict[str, Path], tmp_path: Path, capsys) -> None:
    folder = tmp_path / "unrelated"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "zzz.png")
    assert main(["import", str(folder), str(exported["file"]), "--format", "labelme"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("import: ")]  # progress counts
    assert len(err) == 1 and "none of the images of its 1 labelme files" in err[0]
    with Project.open(folder) as project:
        assert project.annotations() == [] and project.labels() == []


def test_export_polygons_writes_labelme_polygon_shapes(tmp_path: Path, capsys) -> None:
    sample = build(tmp_path / "project")
    sample.project.close()
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "project"), "--format", "labelme", "--polygons",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("labelme-polygon: done, 4 images, 6 masks")
    shapes = json.loads((out / "a.json").read_text(encoding="utf-8"))["shapes"]
    assert {s["shape_type"] for s in shapes} == {"polygon"}
    assert main(["export", str(tmp_path / "project"), "--format", "png-instance",
                 "--polygons", "--out", str(tmp_path / "png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["samdesk: error: --polygons: png-instance writes no polygons; use it with "
                   "coco-rle or labelme"]
    assert not (tmp_path / "png").exists()
