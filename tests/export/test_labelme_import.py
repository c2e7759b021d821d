"""labelme import: every shape labelme writes means what labelme meant, bad parts reported."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.export.labelme_import import import_labelme
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DATA = Path(__file__).parent / "data"


def picture(path: Path, width: int = 40, height: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)


def b64_png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def masks_by_label(project: Project, path: str) -> dict[str, list[np.ndarray]]:
    image = project.image_by_path(path)
    assert image is not None
    names = {label.id: label.name for label in project.labels()}
    out: dict[str, list[np.ndarray]] = {}
    for layer in project.annotations(image.id):
        out.setdefault(names[layer.label_id], []).append(masks.decode(layer.rle))
    return out


def test_a_file_written_by_labelme_imports_as_labelme_meant(tmp_path: Path) -> None:
    """tests/export/data/labelme_written.json was written by labelme 6.3.1's own
    LabelFile.save (make_labelme_written.py beside it)."""
    folder = tmp_path / "project"
    picture(folder / "labelme_written.png")
    shutil.copy(DATA / "labelme_written.json", folder / "labelme_written.json")
    with Project.open(folder) as project:
        summary = import_labelme(project, folder / "labelme_written.json")
        found = masks_by_label(project, "labelme_written.png")
        boxes = project.pending_boxes()
        names = {label.id: label.name for label in project.labels()}
    lines = summary.lines()
    assert lines[0] == ("labelme_written.json: 1 labelme files, 1 images matched, "
                        "3 masks and 1 pending boxes added, 3 new labels")
    assert "skipped 1 line shapes: they have no area" in lines
    assert "skipped 1 point shapes: they have no area" in lines
    assert summary.problems == []
    polygon, group = found["big dog"]
    want = np.zeros((30, 40), dtype=bool)
    want[3:10, 2:13] = True  # corners (2, 3) and (12, 9), boundary included, as PIL draws
    assert np.array_equal(polygon, want)
    ring = np.zeros((30, 40), dtype=bool)
    ring[18:24, 20:28] = True  # the mask shape: an 8x6 crop with origin (20, 18)...
    ring[20:22, 22:26] = False  # ...and its hole
    ring[20:27, 1:6] = True  # the polygon of the same group_id (7): one object
    assert np.array_equal(group, ring)
    (disc,) = found["chat noir"]
    rows, cols = np.nonzero(disc)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (17, 23, 27, 33)  # radius 3
    assert disc[20, 30] and not disc[17, 27]
    (box,) = boxes
    assert box.box == (14.5, 2.25, 24.75, 11.5) and names[box.label_id] == "箱"


def hand_written(image_path: str | None, shapes: list[dict], **extra) -> dict:
    document = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imageHeight": 30,
                "imageWidth": 40, **extra}
    if image_path is not None:
        document["imagePath"] = image_path
    return document


def write(path: Path, document: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


def test_rectangle_circle_polygon_and_mask_shapes_written_by_hand(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    picture(folder / "photos" / "a.jpg")
    crop = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.uint8)
    shapes = [
        {"label": "box", "points": [[30, 25], [10, 5]], "shape_type": "rectangle"},
        {"label": "box", "points": [[1, 1], [9, 1], [9, 9], [1, 9]],  # X-AnyLabeling: 4 points
         "shape_type": "rectangle"},
        {"label": "disc", "points": [[10, 10], [10, 12]], "shape_type": "circle"},
        {"label": "tri", "points": [[0, 0], [4, 0], [0, 4]]},  # no shape_type: a polygon
        {"label": "piece", "points": [[38, 28], [40, 29]], "shape_type": "mask",
         "mask": b64_png(crop)},  # reaches past the right border: cut there
    ]
    # labels: imagePath leads out of the labels folder to the image; no imageData at all
    write(folder / "labels" / "a.json", hand_written("../photos/a.jpg", shapes))
    with Project.open(folder) as project:
        existing = project.add_label("disc", color="#abcdef")
        summary = import_labelme(project, folder / "labels")
        found = masks_by_label(project, "photos/a.jpg")
        boxes = [(b.box, b.label_id) for b in project.pending_boxes()]
        box_label = project.label_by_name("box")
        disc_label = project.label_by_name("disc")
    assert summary.problems == [] and summary.labels_created == ["box", "tri", "piece"]
    assert disc_label == existing  # an existing label is used, its id and colour kept
    assert box_label is not None
    assert boxes == [((10.0, 5.0, 30.0, 25.0), box_label.id), ((1.0, 1.0, 9.0, 9.0),
                                                                box_label.id)]
    (disc,) = found["disc"]
    assert disc[10, 10] and disc[12, 10] and disc[10, 8] and not disc[13, 10]
    (tri,) = found["tri"]
    assert tri[0, 0] and tri[0, 4] and tri[4, 0] and not tri[4, 4] and tri.sum() == 15
    (piece,) = found["piece"]
    want = np.zeros((30, 40), dtype=bool)
    want[28, 38:40] = True
    want[29, 39] = True  # the crop's third column lies outside the image
    assert np.array_equal(piece, want)


def test_one_bad_shape_or_file_is_reported_and_the_rest_imported(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    picture(folder / "a.png")
    picture(folder / "b.png")
    good = {"label": "ok", "points": [[1, 1], [8, 1], [8, 8]], "shape_type": "polygon"}
    write(folder / "a.json", hand_written("a.png", [
        {"label": "ok", "points": [[1, 1], [2, 2]], "shape_type": "polygon"},
        {"label": "ok", "points": [[1, "x"]], "shape_type": "polygon"},
        {"label": "ok", "points": [[1, 1], [3, 3]], "shape_type": "mask", "mask": "@@@"},
        {"label": "ok", "points": [[1, 1], [3, 3]], "shape_type": "cuboid"},
        {"label": "", "points": [[1, 1], [3, 3], [1, 3]]},
        {"label": "ok", "points": [[100, 100], [120, 100], [120, 120]]},  # outside the image
        good,
    ]))
    write(folder / "b.json", "{ not json")
    write(folder / "c.json", hand_written("c.png", [good]))  # no such image
    write(folder / "d.json", hand_written("b.png", [good], imageWidth=30, imageHeight=40))
    with Project.open(folder) as project:
        summary = import_labelme(project, folder)
        a = project.image_by_path("a.png")
        assert a is not None and len(project.annotations(a.id)) == 1
    problems = dict(summary.problems)
    assert problems["a.json: shapes[0] (polygon 'ok')"] == (
        "a polygon needs at least 3 points, got 2")
    assert "points[0] must be [x, y]" in problems["a.json: shapes[1] (polygon 'ok')"]
    assert "not a base64 PNG" in problems["a.json: shapes[2] (mask 'ok')"]
    assert "'cuboid' is not one labelme writes" in problems["a.json: shapes[3] (cuboid 'ok')"]
    assert "label must be a non-empty string" in problems["a.json: shapes[4] (polygon '')"]
    assert "covers no pixel of the 40x30 image" in problems["a.json: shapes[5] (polygon 'ok')"]
    assert problems["b.json"].startswith("not valid JSON at line 1 column 3")
    assert problems["c.json"] == "imagePath 'c.png' is not in the project"
    assert problems["d.json"] == ("size 30x40 in the JSON, but b.png is 40x30 upright "
                                  "(EXIF orientation?); its shapes were not imported")
    assert summary.annotations_added == 1 and summary.nothing_matched is None


def test_importing_twice_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    picture(folder / "a.png")
    write(folder / "a.json", hand_written("a.png", [
        {"label": "x", "points": [[1, 1], [8, 1], [8, 8]]},
        {"label": "x", "points": [[2, 2], [9, 9]], "shape_type": "rectangle"}]))
    with Project.open(folder) as project:
        import_labelme(project, folder / "a.json")
        again = import_labelme(project, folder / "a.json")
        assert len(project.annotations()) == 1 and len(project.pending_boxes()) == 1
    assert again.annotations_added == 0 and again.duplicates_skipped == 1
    assert again.boxes_added == 0 and again.boxes_skipped == 1


def test_nothing_is_written_when_no_file_names_an_image_of_the_project(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    picture(folder / "a.png")
    source = write(tmp_path / "elsewhere" / "z.json", hand_written("z.png", [
        {"label": "x", "points": [[1, 1], [8, 1], [8, 8]]}]))
    with Project.open(folder) as project:
        summary = import_labelme(project, source)
        assert project.labels() == [] and project.undo() is None
    assert summary.nothing_matched is not None
    assert "none of the images of its 1 labelme files is in the project" in (
        summary.nothing_matched)
    assert "imagePath 'z.png' is not in the project" in summary.nothing_matched


def test_a_json_without_image_path_finds_the_image_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    picture(folder / "sub" / "cat.jpg")
    write(folder / "sub" / "cat.json", hand_written(None, [
        {"label": "x", "points": [[1, 1], [8, 1], [8, 8]]}]))
    with Project.open(folder) as project:
        summary = import_labelme(project, folder)
        assert summary.annotations_added == 1 and summary.images_matched == 1


@pytest.mark.parametrize("image_path", ["..\\photos\\a.jpg", "C:\\data\\photos\\a.jpg"])
def test_windows_image_paths_are_read_as_labelme_reads_them(tmp_path: Path,
                                                            image_path: str) -> None:
    folder = tmp_path / "project"
    picture(folder / "photos" / "a.jpg")
    write(folder / "labels" / "a.json", hand_written(image_path, [
        {"label": "x", "points": [[1, 1], [8, 1], [8, 8]]}]))
    with Project.open(folder) as project:
        summary = import_labelme(project, folder / "labels" / "a.json")
    assert summary.annotations_added == 1, summary.lines()
