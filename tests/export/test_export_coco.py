"""COCO exports load in pycocotools and torchvision and give back every mask exactly."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samdesk import masks
from samdesk.export import FORMATS, ExportError, ExportOptions, export
from samdesk.export.polygons import contour_to_polygon, mask_to_polygons, polygons_area
from tests.export_fixtures import Sample, build

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    built = build(tmp_path / "project")
    yield built
    built.project.close()


def quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def fill_holes(m: np.ndarray) -> np.ndarray:
    """The mask with every hole filled: background 4-connected to the outside stays."""
    padded = np.pad(m.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 2, flags=4)
    return (flood != 2)[1:-1, 1:-1]


def test_coco_rle_gives_back_every_mask_pixel_for_pixel(sample: Sample, tmp_path: Path) -> None:
    summary = export(sample.project, "coco-rle", ExportOptions(out=tmp_path / "out"))
    path = tmp_path / "out" / "instances.json"
    assert summary.files == [path]
    coco = quiet_coco(path)
    assert sorted(coco.getAnnIds()) == sorted(sample.expected)
    for ann_id, mask in sample.expected.items():
        ann = coco.anns[ann_id]
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask), ann_id
        assert ann["area"] == int(mask.sum())
        rows, cols = np.nonzero(mask)
        assert ann["bbox"] == [cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1]
        assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
    # the empty and the unlabelled mask are left out, and said so
    assert summary.annotations == len(sample.expected)
    assert summary.skipped_annotations == {"empty mask": 1, "no label": 1}


def test_images_and_categories_describe_the_project(sample: Sample, tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    export(sample.project, "coco-rle", ExportOptions(out=path))
    data = json.loads(path.read_text())
    images = {im["file_name"]: (im["width"], im["height"]) for im in data["images"]}
    # c.jpg is stored 30x20 with EXIF orientation 6: exported upright, 20 wide
    assert images == {"a.png": (40, 30), "sub/b.png": (25, 20), "c.jpg": (20, 30),
                      "d.png": (12, 10)}
    assert {c["id"]: c["name"] for c in data["categories"]} == {
        sample.labels["cat"]: "cat", sample.labels["dog"]: "dog"}
    scored = [a for a in data["annotations"] if "attributes" in a]
    assert [a["attributes"]["score"] for a in scored] == [0.875]
    assert all("score" not in a for a in data["annotations"])


def test_ground_truth_fed_back_as_results_scores_ap_one(sample: Sample, tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    export(sample.project, "coco-rle", ExportOptions(out=path))
    gt = quiet_coco(path)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"],
                "segmentation": a["segmentation"], "score": 1.0} for a in gt.anns.values()]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluation = COCOeval(gt, dt, "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP @ IoU .50:.95
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP @ IoU .50


def test_torchvision_coco_detection_reads_the_export(sample: Sample, tmp_path: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    path = tmp_path / "instances.json"
    export(sample.project, "coco-rle", ExportOptions(out=path))
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = datasets.CocoDetection(str(sample.folder), str(path))
    assert len(dataset) == 4
    seen = {}
    for index in range(len(dataset)):
        image, targets = dataset[index]
        file_name = dataset.coco.imgs[dataset.ids[index]]["file_name"]
        seen[file_name] = (image.size, len(targets))
    assert seen["a.png"] == ((40, 30), 4)
    assert seen["sub/b.png"] == ((25, 20), 1)
    assert seen["d.png"] == ((12, 10), 0)


def test_only_done_exports_just_the_done_images(sample: Sample, tmp_path: Path) -> None:
    path = tmp_path / "done.json"
    summary = export(sample.project, "coco-rle", ExportOptions(out=path, only_done=True))
    data = json.loads(path.read_text())
    assert [im["file_name"] for im in data["images"]] == ["a.png"]
    assert {a["image_id"] for a in data["annotations"]} == {data["images"][0]["id"]}
    assert summary.images == 1 and summary.annotations == 4


def test_polygon_export_keeps_every_part_and_fills_holes(sample: Sample, tmp_path: Path) -> None:
    path = tmp_path / "polygons.json"
    summary = export(sample.project, "coco-polygon", ExportOptions(out=path))
    coco = quiet_coco(path)
    assert sorted(coco.getAnnIds()) == sorted(sample.expected)
    for ann_id, mask in sample.expected.items():
        ann = coco.anns[ann_id]
        assert isinstance(ann["segmentation"], list)
        assert all(len(p) >= 6 for p in ann["segmentation"])
        filled = fill_holes(mask)
        assert np.array_equal(coco.annToMask(ann).astype(bool), filled), ann_id
        assert ann["area"] == int(filled.sum())
    parts = next(a for a in coco.anns.values() if len(a["segmentation"]) > 1)
    assert len(parts["segmentation"]) == 3  # block, bar and the lone pixel
    assert summary.annotations == len(sample.expected)


def test_polygons_drop_pieces_under_three_points() -> None:
    two_points = np.array([[[4, 4]], [[5, 5]]], dtype=np.int32)
    repeated = np.array([[[4, 4]], [[4, 4]], [[5, 4]]], dtype=np.int32)
    assert contour_to_polygon(two_points) == []
    assert contour_to_polygon(repeated) == []  # two distinct corners after snapping
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    one = np.zeros((5, 5), bool)
    one[4, 4] = True
    assert mask_to_polygons(one) == [[4.0, 4.0, 4.0, 5.0, 5.0, 5.0, 5.0, 4.0]]


def test_random_masks_survive_the_polygon_round_trip() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = rng.random((h, w)) < rng.random()
        polygons = mask_to_polygons(m)
        back = masks.decode(masks.from_polygons(polygons, h, w))
        assert np.array_equal(back, fill_holes(m))
        assert polygons_area(polygons) == int(fill_holes(m).sum())


def test_cancel_writes_nothing_and_keeps_an_older_file(sample: Sample, tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text("older export")
    calls: list[tuple[int, int]] = []
    options = ExportOptions(out=path, progress=lambda d, t: calls.append((d, t)),
                            cancel=lambda: len(calls) >= 2)
    summary = export(sample.project, "coco-rle", options)
    assert summary.cancelled and summary.files == []
    assert calls == [(1, 4), (2, 4)]
    assert path.read_text() == "older export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances.json", "project"]


def test_registry_names_every_format_and_refuses_unknown_ones(sample: Sample,
                                                              tmp_path: Path) -> None:
    assert set(FORMATS) == {"coco-rle", "coco-polygon", "png-instance", "png-semantic",
                            "labelme", "labelme-polygon", "yolo", "youtube-vis"}
    with pytest.raises(ExportError, match="unknown export format 'voc'"):
        export(sample.project, "voc", ExportOptions(out=tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="file: is a file, and png-instance writes a folder "
                                          "of PNGs; give a folder path"):
        export(sample.project, "png-instance", ExportOptions(out=blocker))
    with pytest.raises(ExportError, match=r"instances.json: .*/file is a file, not a folder; "
                                          "remove it or choose another place"):
        export(sample.project, "coco-rle", ExportOptions(out=blocker / "instances.json"))
