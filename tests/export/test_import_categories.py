"""Importing keeps class indices: category ids kept, empty categories kept, the mapping said.

The fault: new labels got ids in the order masks were met (1, 2, ...), and
a category with no imported mask was dropped, so class indices drifted
after migrating a dataset into samdesk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.cli import main
from samdesk.errors import ProjectError
from samdesk.export import ExportOptions, export, import_coco
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def coco_file(path: Path, categories: list[dict]) -> Path:
    """Two images; masks of categories 3 and 1 (in that order); category 7 has none."""
    square = np.zeros((20, 30), bool)
    square[2:8, 3:9] = True
    bar = np.zeros((20, 30), bool)
    bar[10:18, 20:23] = True
    document = {
        "images": [{"id": 10, "file_name": "a.png", "width": 30, "height": 20},
                   {"id": 11, "file_name": "b.png", "width": 30, "height": 20}],
        "categories": categories,
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "segmentation": masks.encode(square)},
            {"id": 2, "image_id": 11, "category_id": 1, "segmentation": masks.encode(bar)},
            {"id": 3, "image_id": 10, "category_id": 1, "segmentation": masks.encode(bar)},
        ],
    }
    path.write_text(json.dumps(document))
    return path


CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"},
              {"id": 7, "name": "bird", "color": "#123456"}]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (30, 20)).save(folder / name)
    return folder


def test_an_empty_project_keeps_the_file_ids_and_its_empty_categories(
        folder: Path, tmp_path: Path) -> None:
    source = coco_file(tmp_path / "in.json", CATEGORIES)
    with Project.open(folder) as project:
        summary = import_coco(project, source)
        assert {lab.id: lab.name for lab in project.labels()} == {1: "cat", 3: "dog", 7: "bird"}
        assert project.label(7).color == "#123456"
        assert summary.annotations_added == 3
        assert "categories keep their ids: 1 'cat', 3 'dog', 7 'bird'" in summary.lines()
        export(project, "coco-rle", ExportOptions(out=tmp_path / "out.json", images="none"))
    exported = json.loads((tmp_path / "out.json").read_text())
    assert {c["id"]: c["name"] for c in exported["categories"]} == {1: "cat", 3: "dog",
                                                                   7: "bird"}
    by_image = {im["id"]: im["file_name"] for im in exported["images"]}
    assert sorted((by_image[a["image_id"]], a["category_id"])
                  for a in exported["annotations"]) == [("a.png", 1), ("a.png", 3), ("b.png", 1)]


def test_a_project_with_labels_maps_names_and_prints_the_mapping(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Project.open(folder) as project:
        project.add_label("dog")  # id 1
        project.add_label("fish")  # id 2
    source = coco_file(tmp_path / "in.json", CATEGORIES)
    assert main(["import-coco", str(folder), str(source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "in.json: 2 images matched, 3 masks added, 2 new labels"
    at = lines.index("categories, file id -> project id:")
    assert lines[at + 1:at + 4] == ["  1 -> 3 'cat' (new label)",
                                    "  3 -> 1 'dog' (existing label)",
                                    "  7 -> 4 'bird' (new label)"]
    with Project.open(folder) as project:
        assert {lab.id: lab.name for lab in project.labels()} == {
            1: "dog", 2: "fish", 3: "cat", 4: "bird"}
        dog = [a for image in project.images() for a in project.annotations(image.id)
               if a.label_id == 1]
        assert len(dog) == 1  # the file's category 3 masks went to the existing "dog"


def test_an_id_that_cannot_be_a_label_id_and_a_name_given_twice(folder: Path,
                                                                 tmp_path: Path) -> None:
    source = coco_file(tmp_path / "in.json", [
        {"id": 0, "name": "person"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "cat"},
        {"id": 7, "name": "bird"}])
    with Project.open(folder) as project:
        summary = import_coco(project, source)
        assert {lab.id: lab.name for lab in project.labels()} == {1: "cat", 7: "bird",
                                                                 8: "person"}
        assert summary.categories == [(0, 8, "person", "new"), (1, 1, "cat", "kept"),
                                      (3, 1, "cat", "same name"), (7, 7, "bird", "kept")]
        assert "  3 -> 1 'cat' (same name as another category)" in summary.lines()
        layers = [a for image in project.images() for a in project.annotations(image.id)]
        assert sorted(a.label_id for a in layers) == [1, 1, 1]  # category 3 is "cat" too


def test_label_ids_are_never_handed_out_twice(folder: Path) -> None:
    with Project.open(folder) as project:
        cat = project.add_label("cat")
        dog = project.add_label("dog")
        project.delete_label(dog.id)
        assert project.add_label("bird").id == dog.id + 1  # not the deleted dog's id
        project.undo()
        assert project.add_label("fish").id == dog.id + 2  # not the undone bird's either
        assert project.add_label("owl", label_id=40).id == 40
        assert project.add_label("eel").id == 41
        with pytest.raises(ProjectError, match="label id 1 is already label 'cat'"):
            project.add_label("cow", label_id=cat.id)
        with pytest.raises(ProjectError, match="must be a positive integer"):
            project.add_label("cow", label_id=0)
        assert project.label_by_name("cow") is None
