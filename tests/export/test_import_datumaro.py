"""A COCO file written by datumaro's own exporter imports as datumaro meant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from samdesk import masks
from samdesk.export import import_coco
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DATA = Path(__file__).parent / "data" / "datumaro_coco"


def test_a_coco_file_written_by_datumaro_imports_as_datumaro_meant(tmp_path: Path) -> None:
    """data/datumaro_coco/instances.json was written by datumaro 1.13.12's own
    coco_instances exporter (make_datumaro_coco.py beside data/datumaro_coco)."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(DATA / name, folder / name)
    source = DATA / "instances.json"
    with Project.open(folder) as project:
        summary = import_coco(project, source)
        labels = {label.name: label.id for label in project.labels()}
        found: dict[str, list[tuple[str, np.ndarray]]] = {}
        for path in ("a.png", "b.png"):
            image = project.image_by_path(path)
            assert image is not None
            names = {label_id: name for name, label_id in labels.items()}
            found[path] = [(names[layer.label_id], masks.decode(layer.rle))
                           for layer in project.annotations(image.id)]
        a = project.image_by_path("a.png")
        boxes = [(b.image_id == a.id, b.box, b.label_id) for b in project.pending_boxes()]
    assert summary.problems == []
    assert summary.images_matched == 2 and summary.annotations_added == 5
    assert summary.boxes_added == 1 and summary.duplicates_skipped == 0
    assert labels == {"dog": 1, "traffic cone": 2, "car": 3}  # the file's ids, kept
    assert summary.lines()[1] == "categories keep their ids: 1 'dog', 2 'traffic cone', 3 'car'"
    assert [name for name, _ in found["a.png"]] == ["dog", "dog", "traffic cone"]
    assert [name for name, _ in found["b.png"]] == ["traffic cone", "dog"]

    (_, ring), (_, dog), (_, cone) = found["a.png"]
    want = np.zeros((48, 64), dtype=bool)  # the datumaro Mask: a block with a hole
    want[10:24, 30:50] = True
    want[15:19, 36:44] = False
    assert np.array_equal(ring, want)
    assert not ring[16, 40] and ring.sum() == 20 * 14 - 8 * 4  # the hole kept
    square = np.zeros((48, 64), dtype=bool)  # the Polygon [4, 4] .. [20, 16], as COCO fills it
    square[4:16, 4:20] = True
    assert np.array_equal(dog, square)
    # the triangle as pycocotools fills datumaro's polygon, the way COCO tools read it
    data = json.loads(source.read_text())
    (triangle,) = [ann["segmentation"] for ann in data["annotations"] if ann["id"] == 3]
    rle = coco_mask.merge(coco_mask.frPyObjects(triangle, 48, 64))
    assert np.array_equal(cone, coco_mask.decode(rle).astype(bool))
    assert cone.sum() == 138  # the area datumaro wrote

    (_, corner), (_, other_dog) = found["b.png"]
    want = np.zeros((30, 40), dtype=bool)  # a Mask from pixel (0, 0): RLE counts start at 0
    want[0:5, 0:7] = True
    assert np.array_equal(corner, want)
    want = np.zeros((30, 40), dtype=bool)
    want[10:25, 10:30] = True
    assert np.array_equal(other_dog, want)

    # the Bbox alone: segmentation [] and bbox [x, y, w, h] -> a pending box, XYXY
    assert boxes == [(True, (5.0, 25.0, 17.5, 35.0), labels["car"])]
