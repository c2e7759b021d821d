"""Importing mask PNGs: samdesk's own png-instance and png-semantic, and VOC's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.cli import main
from samdesk.errors import FormatError
from samdesk.export import ExportOptions, export
from samdesk.export.detect import recognise
from samdesk.export.png_import import import_png
from samdesk.export.png_read import VOC_CLASSES
from samdesk.project import Project
from tests.export import stress_images
from tests.export.stress_images import Stress, same_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def stress(tmp_path: Path) -> Stress:
    built = stress_images.build(tmp_path / "stress")
    yield built
    built.project.close()


def visible(stress: Stress, path: str) -> list[tuple[np.ndarray, int]]:
    """Each exported mask of ``path`` as the PNG holds it (front masks cover those behind),
    back to front, with its label id."""
    record = stress.project.image_by_path(path)
    layers = stress.project.annotations(record.id)
    out = []
    for k, layer in enumerate(layers):
        mask = masks.decode(layer.rle).copy()
        for front in layers[k + 1:]:
            mask &= ~masks.decode(front.rle)
        out.append((mask, layer.label_id))
    return out


def test_png_instance_round_trip_is_pixel_exact(stress: Stress, tmp_path: Path) -> None:
    out = tmp_path / "instances"
    export(stress.project, "png-instance", ExportOptions(out=out))
    with same_images(stress, tmp_path / "again") as project:
        summary = import_png(project, out)
        assert summary.problems == [] and summary.annotations_added == 6
        assert [(lab.id, lab.name, lab.color) for lab in project.labels()] == [
            (lab.id, lab.name, lab.color) for lab in stress.project.labels()]
        for record in project.images():
            back = [(masks.decode(a.rle), a.label_id) for a in project.annotations(record.id)]
            expected = visible(stress, record.path)
            assert len(back) == len(expected)
            for (got, label), (want, want_label) in zip(back, expected, strict=True):
                assert np.array_equal(got, want) and label == want_label
        again = import_png(project, out)  # a second time adds nothing
        assert again.annotations_added == 0 and again.duplicates_skipped == 6
    # the masks nothing covers come back whole: several parts, one pixel, the whole image
    for what in ("parts", "pixel", "whole", "front"):
        (ann_id,) = [k for k, name in stress.names.items() if name == what]
        record = stress.project.image(stress.project.annotation(ann_id).image_id)
        assert any(np.array_equal(m, stress.masks[ann_id]) for m, _ in visible(stress,
                                                                             record.path))


def test_a_mask_hidden_entirely_is_reported(stress: Stress, tmp_path: Path) -> None:
    gray = stress.project.image_by_path("gray.png")
    stress.project.add_annotation(gray.id, masks.encode(np.ones((100, 150), bool)),
                                  stress.project.labels()[0].id)  # in front of the other two
    out = tmp_path / "instances"
    export(stress.project, "png-instance", ExportOptions(out=out))
    with same_images(stress, tmp_path / "again") as project:
        summary = import_png(project, out)
    assert summary.annotations_added == 5
    hidden = [line for line in summary.lines() if "hidden entirely by masks in front" in line]
    assert [line.split(":")[0] for line in hidden] == ["gray.png instance 1",
                                                       "gray.png instance 2"]


def test_png_semantic_gives_one_mask_per_class(stress: Stress, tmp_path: Path) -> None:
    out = tmp_path / "semantic"
    export(stress.project, "png-semantic", ExportOptions(out=out))
    with same_images(stress, tmp_path / "again") as project:
        summary = import_png(project, out)
        assert summary.problems == []
        for record in project.images():
            expected: dict[int, np.ndarray] = {}
            for mask, label in visible(stress, record.path):
                expected[label] = expected.get(label, np.zeros_like(mask)) | mask
            back = {a.label_id: masks.decode(a.rle) for a in project.annotations(record.id)}
            assert sorted(back) == sorted(expected)
            assert all(np.array_equal(back[k], expected[k]) for k in back)


def voc(tmp_path: Path) -> Path:
    """A VOC2012-like folder: JPEGImages/x.jpg (the project), SegmentationClass and
    SegmentationObject PNGs with a 255 boundary, two people and a dog."""
    root = tmp_path / "VOC2012"
    for name in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (root / name).mkdir(parents=True)
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(root / "JPEGImages" / "x.jpg")
    classes = np.zeros((40, 60), np.uint8)
    objects = np.zeros((40, 60), np.uint8)
    for index, (rows, cols, value) in enumerate(
            [((2, 12), (2, 20), 15), ((20, 38), (5, 25), 15), ((5, 30), (35, 58), 12)], 1):
        classes[rows[0]:rows[1], cols[0]:cols[1]] = value
        objects[rows[0]:rows[1], cols[0]:cols[1]] = index
        for plane in (classes, objects):  # the boundary band VOC draws
            plane[rows[0], cols[0]:cols[1]] = 255
    for plane, folder in ((classes, "SegmentationClass"), (objects, "SegmentationObject")):
        picture = Image.fromarray(plane, "P")
        picture.putpalette([0, 0, 0, 128, 0, 0] + [64, 64, 64] * 254)
        picture.save(root / folder / "x.png")
    return root


def test_voc_objects_with_their_class_map_give_one_mask_per_object(tmp_path: Path) -> None:
    root = voc(tmp_path)
    assert recognise(root) == "png"
    with Project.open(root / "JPEGImages") as project:
        summary = import_png(project, root)
        layers = project.annotations()
        names = {lab.id: lab.name for lab in project.labels()}
    assert summary.problems == []
    assert names[15] == "person" and names[12] == "dog"  # value v is label id v
    assert summary.lines()[1].startswith("categories keep their ids: 1 'aeroplane'")
    assert [names[a.label_id] for a in layers] == ["person", "person", "dog"]
    assert [masks.area(a.rle) for a in layers] == [9 * 18, 17 * 20, 24 * 23]  # 255 left out
    assert list(names.values()) == list(VOC_CLASSES[1:])  # every VOC class, in value order


def test_voc_classes_alone_give_one_mask_per_class(tmp_path: Path) -> None:
    root = voc(tmp_path)
    with Project.open(root / "JPEGImages") as project:
        summary = import_png(project, root / "SegmentationClass")
        got = {project.label(a.label_id).name: masks.area(a.rle) for a in project.annotations()}
    assert summary.problems == [] and got == {"person": 9 * 18 + 17 * 20, "dog": 24 * 23}


def test_bad_pngs_are_reported_and_the_rest_imported(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / name)
    pngs = tmp_path / "masks"
    pngs.mkdir()
    good = np.zeros((20, 30), np.uint8)
    good[5:10, 5:10] = 1
    good[0, 0] = 2
    Image.fromarray(good).save(pngs / "a.png")
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(pngs / "b.png")  # turned
    Image.fromarray(good).save(pngs / "zebra.png")  # no such image
    (pngs / "labels.txt").write_text("_background_\nleaf\n", encoding="utf-8")
    with Project.open(folder) as project:
        summary = import_png(project, pngs)
        (layer,) = project.annotations()
        assert project.label(layer.label_id).name == "leaf" and masks.area(layer.rle) == 25
    lines = summary.lines()
    assert "b.png: size 20x30, but b.jpg is 30x20 upright (EXIF orientation?)" in lines
    assert "zebra.png: no image of the project has this name" in lines
    assert ("a.png: value 2 has pixels but no class name in labels.txt; not imported"
            in lines)


def test_import_command_recognises_png(stress: Stress, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "instances"
    export(stress.project, "png-instance", ExportOptions(out=out))
    assert recognise(out) == "png"
    with pytest.raises(FormatError, match="not a dataset samdesk recognises"):
        recognise(stress.folder)  # its gray.png is a photo, not a mask
    again = tmp_path / "again"
    same_images(stress, again).close()
    assert main(["import", str(again), str(out)]) == 0
    assert "6 masks added" in capsys.readouterr().out
    sidecar = json.loads((out / "photo.json").read_text(encoding="utf-8"))
    assert [i["label"] for i in sidecar["instances"]] == list(stress_images.NAMES)
