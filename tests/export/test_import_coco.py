"""Importing COCO JSON: every mask kind, image matching, problems reported, one undo step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samdesk import masks
from samdesk.errors import FormatError
from samdesk.export import ExportOptions, export, import_coco
from samdesk.project import Project
from tests.export_fixtures import Sample, build, write_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    built = build(tmp_path / "project")
    yield built
    built.project.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Project:
    """The same images in a new folder, with no labels or masks."""
    folder = tmp_path / "fresh"
    write_images(folder)
    project = Project.open(folder)
    yield project
    project.close()


def masks_by_file(path: Path) -> dict[tuple[str, str], list[bytes]]:
    """(file_name, category name) -> sorted decoded masks, from a COCO RLE file."""
    data = json.loads(path.read_text())
    files = {im["id"]: im["file_name"] for im in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}
    found: dict[tuple[str, str], list[bytes]] = {}
    for ann in data["annotations"]:
        key = (files[ann["image_id"]], names[ann["category_id"]])
        found.setdefault(key, []).append(np.packbits(masks.decode(ann["segmentation"])).tobytes())
    return {key: sorted(value) for key, value in found.items()}


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_round_trip_import_then_export_keeps_every_pixel(sample: Sample, fresh: Project,
                                                         tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    export(sample.project, "coco-rle", ExportOptions(out=first))
    calls: list[tuple[int, int]] = []
    summary = import_coco(fresh, first, progress=lambda done, total: calls.append((done, total)))
    assert summary.problems == []
    assert calls[-1] == (2 * len(sample.expected), 2 * len(sample.expected))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert summary.images_matched == 4 and summary.annotations_added == len(sample.expected)
    assert summary.labels_created == ["cat", "dog"]
    assert {lab.name: lab.color for lab in fresh.labels()} == {"cat": "#112233",
                                                               "dog": "#445566"}
    second = tmp_path / "second.json"
    export(fresh, "coco-rle", ExportOptions(out=second))
    assert masks_by_file(second) == masks_by_file(first)
    scores = [a.score for a in fresh.annotations() if a.score is not None]
    assert scores == [0.875]


def test_importing_twice_adds_nothing_and_is_one_undo_step(sample: Sample, fresh: Project,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    export(sample.project, "coco-rle", ExportOptions(out=path))
    import_coco(fresh, path)
    again = import_coco(fresh, path)
    assert again.annotations_added == 0 and again.duplicates_skipped == len(sample.expected)
    assert len(fresh.annotations()) == len(sample.expected)
    assert fresh.undo() == "Import instances.json"  # the second import changed nothing
    assert fresh.annotations() == [] and fresh.labels() == []
    assert fresh.undo() is None


def test_polygons_uncompressed_and_compressed_rle_all_import(fresh: Project,
                                                             tmp_path: Path) -> None:
    block = np.zeros((30, 40), bool)
    block[2:6, 3:9] = True
    ring = np.zeros((30, 40), bool)
    ring[10:20, 10:20] = True
    ring[13:17, 13:17] = False
    flat = ring.ravel(order="F").astype(np.int8)
    edges = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(edges).tolist()
    document = {
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 3, "name": "box", "color": [255, 0, 0]}, {"id": 4, "name": "ring"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3,
             "segmentation": [[3, 2, 9, 2, 9, 6, 3, 6]]},
            {"id": 2, "image_id": 7, "category_id": 4, "iscrowd": 1,  # zero runs: same pixels
             "segmentation": {"size": [30, 40], "counts": [runs[0], 0, 0, *runs[1:]]}},
            {"id": 3, "image_id": 7, "category_id": 4,
             "segmentation": {"size": [30, 40], "counts": masks.encode(ring)["counts"]}},
        ],
    }
    summary = import_coco(fresh, write_json(tmp_path / "mixed.json", document))
    assert summary.problems == []
    layers = fresh.annotations(fresh.image_by_path("a.png").id)
    assert np.array_equal(masks.decode(layers[0].rle), block)
    assert np.array_equal(masks.decode(layers[1].rle), ring)
    assert summary.duplicates_skipped == 1  # annotation 3 is annotation 2, encoded otherwise
    labels = {lab.name: lab.color for lab in fresh.labels()}
    assert labels["box"] == "#ff0000" and labels["ring"] not in ("#ff0000", None)


def test_problems_are_reported_and_the_rest_imported(fresh: Project, tmp_path: Path) -> None:
    square = [[1, 1, 5, 1, 5, 5, 1, 5]]
    document = {
        "images": [
            {"id": 1, "file_name": "elsewhere/sub/b.png", "width": 25, "height": 20},
            {"id": 2, "file_name": "missing.png", "width": 10, "height": 10},
            {"id": 3, "file_name": "c.jpg", "width": 30, "height": 20},  # stored, not upright
            {"id": 4, "file_name": "d.png", "width": 12, "height": 10},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": square},
            {"id": 11, "image_id": 2, "category_id": 1, "segmentation": square},
            {"id": 12, "image_id": 3, "category_id": 1, "segmentation": square},
            {"id": 13, "image_id": 99, "category_id": 1, "segmentation": square},
            {"id": 14, "image_id": 4, "category_id": 5, "segmentation": square},
            {"id": 15, "image_id": 4, "category_id": 1,
             "segmentation": {"size": [20, 25], "counts": [500]}},
            {"id": 16, "image_id": 4, "category_id": 1, "bbox": [0, 0, 3, 3]},
            {"id": 17, "image_id": 4, "category_id": 1, "segmentation": [[0, 0, 4, 4]]},
            {"id": 18, "image_id": 4, "category_id": 1,
             "segmentation": {"size": [20, 25], "counts": "0"}},
        ],
    }
    summary = import_coco(fresh, write_json(tmp_path / "partial.json", document))
    problems = dict(summary.problems)
    assert problems["annotation 18 (d.png)"].startswith(
        "annotations[8].segmentation: RLE counts cover")
    assert problems["missing.png"] == "not in the project (1 annotation not imported)"
    assert problems["c.jpg"] == ("size 30x20 in the JSON, but the image is 20x30 upright "
                                 "(EXIF orientation?) (1 annotation not imported)")
    assert problems["annotation 13"] == "image_id 99 is not in the images list"
    assert problems["annotation 14 (d.png)"] == "category_id 5 is not in categories"
    assert "mask size 25x20 is not the image size 12x10" in problems["annotation 15 (d.png)"]
    assert "annotation 16 (d.png)" not in problems  # box-only: a pending box now
    [box] = fresh.pending_boxes(fresh.image_by_path("d.png").id)
    assert box.box == (0.0, 0.0, 3.0, 3.0) and summary.boxes_added == 1
    assert problems["annotation 17 (d.png)"] == "empty mask, not imported"
    # b.png matched by its path tail; its one annotation imported
    assert summary.images_matched == 2 and summary.annotations_added == 1
    [layer] = fresh.annotations(fresh.image_by_path("sub/b.png").id)
    assert masks.area(layer.rle) == 16


def test_a_bare_file_name_matches_only_when_unique(fresh: Project, tmp_path: Path) -> None:
    shutil.copy(fresh.folder / "a.png", fresh.folder / "sub" / "a.png")
    fresh.rescan()
    document = {"images": [{"id": 1, "file_name": "b.png"}, {"id": 2, "file_name": "z/a.png"}],
                "categories": [], "annotations": []}
    summary = import_coco(fresh, write_json(tmp_path / "names.json", document))
    assert summary.images_matched == 1
    assert summary.problems == [("z/a.png", "file name matches 2 images in the project")]


def test_existing_labels_are_reused_with_their_colour(fresh: Project, tmp_path: Path) -> None:
    cat = fresh.add_label("cat", color="#010203")
    document = {"images": [{"id": 1, "file_name": "d.png", "width": 12, "height": 10}],
                "categories": [{"id": 9, "name": "cat", "color": "#ffffff"}],
                "annotations": [{"image_id": 1, "category_id": 9,
                                 "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]]}]}
    summary = import_coco(fresh, write_json(tmp_path / "cats.json", document))
    assert summary.labels_created == []
    assert [(lab.id, lab.color) for lab in fresh.labels()] == [(cat.id, "#010203")]
    assert fresh.annotations()[0].label_id == cat.id


def test_many_new_categories_get_distinct_colours(fresh: Project, tmp_path: Path) -> None:
    document = {"images": [{"id": 1, "file_name": "d.png"}],
                "categories": [{"id": i, "name": f"c{i}"} for i in range(1, 41)],
                "annotations": [{"image_id": 1, "category_id": i,
                                 "segmentation": [[0, 0, i % 12 + 1, 0, i % 12 + 1, 1, 0, 1]]}
                                for i in range(1, 41)]}
    import_coco(fresh, write_json(tmp_path / "many.json", document))
    colours = [lab.color for lab in fresh.labels()]
    assert len(colours) == 40 and len(set(colours)) == 40


def test_a_missing_file_is_named(fresh: Project, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"nothere.json: cannot be read: No such file"):
        import_coco(fresh, tmp_path / "nothere.json")


def test_one_bad_image_or_category_entry_is_skipped_and_the_rest_imported(
        fresh: Project, tmp_path: Path) -> None:
    square = [[0, 0, 4, 0, 4, 4, 0, 4]]
    document = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2},  # no file_name
                   {"id": 1, "file_name": "b.png"}],  # id 1 again
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": ""}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": square},
                        {"id": 11, "image_id": 1, "category_id": 2, "segmentation": square}]}
    summary = import_coco(fresh, write_json(tmp_path / "partly.json", document))
    assert [lab.name for lab in fresh.labels()] == ["cat"]
    assert len(fresh.annotations()) == 1
    reported = "\n".join(summary.lines())
    assert "images[1].file_name: missing; skipped" in reported
    assert "images[2].id: id 1 is used twice; skipped" in reported
    assert "categories[1].name: must be a non-empty string" in reported


@pytest.mark.parametrize("document, message", [
    ("{not json", r"bad.json: not valid JSON at line 1 column 2"),
    ([], r"bad.json: top level: must be an object"),
    ({"annotations": []}, r"bad.json: images: missing"),
    ({"images": [{"id": 1}]}, r"bad.json: images\[0\].file_name: missing"),
    ({"images": [{"id": "x", "file_name": "a.png"}]}, r"images\[0\].id: must be an integer"),
])
def test_bad_files_raise_format_error_naming_the_field(fresh: Project, tmp_path: Path,
                                                       document: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(FormatError, match=message):
        import_coco(fresh, path)
    assert fresh.labels() == [] and fresh.annotations() == []
