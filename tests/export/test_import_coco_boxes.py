"""Box-only COCO annotations (CVAT, labelme2coco, Label Studio) import as pending boxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samdesk.cli import main
from samdesk.export import import_coco
from samdesk.project import Project
from tests.export_fixtures import write_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "fresh"
    write_images(root)
    return root


def cvat_style(tmp_path: Path) -> Path:
    """Boxes as CVAT and Label Studio write them: ``segmentation: []`` beside a bbox;
    labelme2coco's ``[[]]``; one with no segmentation key; and a polygon."""
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "sub/b.png", "width": 25, "height": 20}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [],
             "bbox": [2, 3, 10.5, 8], "area": 84, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [[]],
             "bbox": [20, 5, 15, 20]},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]},
            {"id": 4, "image_id": 2, "category_id": 1,
             "segmentation": [[10, 10, 20, 10, 20, 18, 10, 18]], "bbox": [10, 10, 10, 8]},
            {"id": 5, "image_id": 2, "category_id": 1, "segmentation": [], "bbox": [3, 3, 0, 4]},
            {"id": 6, "image_id": 2, "category_id": 1, "segmentation": []},
            {"id": 7, "image_id": 2, "category_id": 1, "segmentation": [], "bbox": "wide"},
        ],
    }
    path = tmp_path / "cvat.json"
    path.write_text(json.dumps(document))
    return path


def test_box_only_annotations_become_pending_boxes_with_their_labels(folder: Path,
                                                                     tmp_path: Path) -> None:
    source = cvat_style(tmp_path)
    with Project.open(folder) as project:
        summary = import_coco(project, source)
        names = {label.id: label.name for label in project.labels()}
        a = project.image_by_path("a.png").id
        b = project.image_by_path("sub/b.png").id
        got = [(b.image_id, b.box, names[b.label_id], b.source) for b in project.pending_boxes()]
        assert got == [(a, (2.0, 3.0, 12.5, 11.0), "car", "cvat.json"),
                       (a, (20.0, 5.0, 35.0, 25.0), "person", "cvat.json"),
                       (b, (1.0, 1.0, 6.0, 6.0), "person", "cvat.json")]
        assert summary.boxes_added == 3 and summary.annotations_added == 1
        problems = dict(summary.problems)
        assert problems == {
            "annotation 5 (sub/b.png)": "no segmentation, and bbox [3, 3, 0, 4]: has no area",
            "annotation 6 (sub/b.png)": "no segmentation and no bbox",
            "annotation 7 (sub/b.png)":
                "no segmentation, and bbox is not four numbers [x, y, width, height]"}
        assert any("3 box-only annotations added as pending boxes" in line
                   for line in summary.lines())
        assert project.undo() == "Import cvat.json"  # masks, boxes and labels: one step
        assert project.pending_boxes() == [] and project.labels() == []


def test_importing_the_boxes_twice_adds_them_once(folder: Path, tmp_path: Path) -> None:
    source = cvat_style(tmp_path)
    with Project.open(folder) as project:
        import_coco(project, source)
        again = import_coco(project, source)
        assert again.boxes_added == 0 and again.boxes_skipped == 3
        assert len(project.pending_boxes()) == 3


def test_import_coco_command_counts_the_boxes_and_info_shows_them(folder: Path, tmp_path: Path,
                                                                  capsys) -> None:
    assert main(["import-coco", str(folder), str(cvat_style(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "3 box-only annotations added as pending boxes" in out
    assert main(["info", str(folder)]) == 0
    assert "pending boxes (no mask yet): 3 on 2 images" in capsys.readouterr().out
    assert main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending_boxes"] == 3
