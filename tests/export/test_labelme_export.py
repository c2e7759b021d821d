"""labelme export: the files labelme opens, and masks that come back pixel for pixel."""

from __future__ import annotations

import base64
import importlib.util
import io
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
from samdesk.export import ExportError, ExportOptions, export
from samdesk.export.labelme_import import import_labelme
from samdesk.project import Project
from tests.export_fixtures import Sample, build, write_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SPACED, ACCENTED = "big dog", "chat noir é 猫"


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    built = build(tmp_path / "project")
    project = built.project
    d = project.image_by_path("d.png")
    assert d is not None
    spaced = project.add_label(SPACED)
    accented = project.add_label(ACCENTED)
    whole = np.ones((10, 12), dtype=bool)  # covers the whole image
    built.expected[project.add_annotation(d.id, masks.encode(whole), spaced.id).id] = whole
    corner = np.zeros((10, 12), dtype=bool)
    corner[6:, 8:] = True  # in front of the whole-image mask, touching two borders
    built.expected[project.add_annotation(d.id, masks.encode(corner), accented.id).id] = corner
    built.labels.update({SPACED: spaced.id, ACCENTED: accented.id})
    yield built
    project.close()


def exported_masks(sample: Sample, path: str) -> list[np.ndarray]:
    image = sample.project.image_by_path(path)
    assert image is not None
    return [sample.expected[a.id] for a in sample.project.annotations(image.id)
            if a.id in sample.expected]


def reimported(sample: Sample, out: Path, folder: Path) -> Project:
    write_images(folder)
    project = Project.open(folder)
    summary = import_labelme(project, out)
    assert summary.nothing_matched is None, summary.lines()
    return project


def test_mask_shapes_come_back_pixel_for_pixel(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "labelme"
    summary = export(sample.project, "labelme", ExportOptions(out=out))
    assert summary.images == 4 and summary.annotations == 8
    with reimported(sample, out, tmp_path / "again") as again:
        names = {label.id: label.name for label in again.labels()}
        for path in ("a.png", "sub/b.png", "c.jpg", "d.png"):
            image = again.image_by_path(path)
            assert image is not None
            got = again.annotations(image.id)
            want = exported_masks(sample, path)
            assert len(got) == len(want), path
            for layer, mask in zip(got, want, strict=True):  # same order: back to front
                assert np.array_equal(masks.decode(layer.rle), mask), path
        d = again.image_by_path("d.png")
        assert d is not None
        assert [names[a.label_id] for a in again.annotations(d.id)] == [SPACED, ACCENTED]


def test_each_file_is_laid_out_as_labelme_opens_it(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "labelme"
    export(sample.project, "labelme", ExportOptions(out=out))
    document = json.loads((out / "sub" / "b.json").read_text(encoding="utf-8"))
    assert set(document) == {"version", "flags", "shapes", "imagePath", "imageData",
                             "imageHeight", "imageWidth"}
    assert document["imageData"] is None and document["flags"] == {}
    assert (document["imageWidth"], document["imageHeight"]) == (25, 20)
    # the image beside its JSON, as labelme keeps them (--images copy, the default)
    assert document["imagePath"] == "b.png"
    assert (out / "sub" / "b.png").read_bytes() == (sample.folder / "sub" / "b.png").read_bytes()
    (shape,) = document["shapes"]
    assert shape["shape_type"] == "mask" and shape["label"] == "cat"
    assert shape["group_id"] is None and shape["flags"] == {}
    # points: the top-left and bottom-right pixels of the mask (rows 3..16, columns 4..19)
    assert shape["points"] == [[4.0, 3.0], [19.0, 16.0]]
    crop = np.array(Image.open(io.BytesIO(base64.b64decode(shape["mask"]))))
    assert crop.shape == (14, 16) and crop.dtype == np.uint8 and set(np.unique(crop)) == {1}


def test_an_exif_rotated_photo_is_copied_upright_beside_its_json(sample: Sample,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "labelme"
    summary = export(sample.project, "labelme", ExportOptions(out=out))
    document = json.loads((out / "c.json").read_text(encoding="utf-8"))
    assert document["imagePath"] == "c.jpg"
    with Image.open(out / "c.jpg") as copy:
        assert copy.size == (20, 30) == (document["imageWidth"], document["imageHeight"])
        assert copy.getexif().get(0x0112, 1) == 1  # no orientation left to apply
    assert summary.images_written["turned upright"] == 1


def test_with_images_none_image_path_leads_to_the_project_file(sample: Sample,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "labelme"
    summary = export(sample.project, "labelme", ExportOptions(out=out, images="none"))
    assert not (out / "a.png").exists() and not (out / "c.jpg").exists()
    for name, image in (("a.json", "a.png"), ("sub/b.json", "sub/b.png"), ("c.json", "c.jpg")):
        document = json.loads((out / name).read_text(encoding="utf-8"))
        assert (out / name).parent.joinpath(document["imagePath"]).resolve() == (
            sample.folder / image).resolve()
    assert any("stored turned" in line for line in summary.lines())  # c.jpg is named
    with reimported(sample, out, tmp_path / "again") as again:
        assert len(again.annotations()) == 8


def test_images_of_one_name_in_two_folders_come_back_to_their_own(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    for sub, value in (("left", 1), ("right", 2)):
        (folder / sub).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / sub / "x.png")
    with Project.open(folder) as project:
        label = project.add_label("x")
        for sub, column in (("left", 1), ("right", 5)):
            image = project.image_by_path(f"{sub}/x.png")
            assert image is not None
            mask = np.zeros((8, 8), dtype=bool)
            mask[:, column] = True
            project.add_annotation(image.id, masks.encode(mask), label.id)
        export(project, "labelme", ExportOptions(out=tmp_path / "out"))
        before = {r.path: masks.decode(project.annotations(r.id)[0].rle) for r in project.images()}
    again = tmp_path / "again"
    shutil.copytree(folder, again, ignore=shutil.ignore_patterns(".samdesk"))
    with Project.open(again) as project:
        summary = import_labelme(project, tmp_path / "out")
        assert summary.problems == [] and summary.annotations_added == 2
        for record in project.images():
            (layer,) = project.annotations(record.id)
            assert np.array_equal(masks.decode(layer.rle), before[record.path])


def test_non_ascii_labels_are_written_as_text(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "labelme"
    export(sample.project, "labelme", ExportOptions(out=out))
    text = (out / "d.json").read_text(encoding="utf-8")
    assert ACCENTED in text and SPACED in text


def smooth_masks(height: int, width: int) -> list[np.ndarray]:
    """Masks over 1,000 pixels: a disc with a hole, an ellipse, a blob of two parts."""
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - 60) ** 2 + (xx - 70) ** 2 < 45 ** 2
    ring = disc & ((yy - 60) ** 2 + (xx - 70) ** 2 >= 15 ** 2)
    ellipse = ((yy - 100) / 30.0) ** 2 + ((xx - 150) / 45.0) ** 2 < 1
    parts = (((yy - 30) ** 2 + (xx - 160) ** 2 < 20 ** 2)
             | ((np.abs(yy - 130) < 15) & (np.abs(xx - 40) < 35)))
    return [ring, ellipse, parts]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def fill_holes(mask: np.ndarray) -> np.ndarray:
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, dtype=np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def test_polygons_hold_every_part_and_lose_only_holes(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.zeros((160, 220, 3), dtype=np.uint8)).save(folder / "big.png")
    shapes = smooth_masks(160, 220)
    with Project.open(folder) as project:
        image = project.image_by_path("big.png")
        assert image is not None
        label = project.add_label(SPACED)
        for mask in shapes:
            project.add_annotation(image.id, masks.encode(mask), label.id)
        out = tmp_path / "polygons"
        summary = export(project, "labelme-polygon", ExportOptions(out=out))
    assert any("1 mask lost holes" in line for line in summary.lines())
    document = json.loads((out / "big.json").read_text(encoding="utf-8"))
    kinds = [(s["shape_type"], s["group_id"]) for s in document["shapes"]]
    assert kinds[:2] == [("polygon", None), ("polygon", None)]
    assert len(kinds) == 4 and kinds[2][1] is not None and kinds[2][1] == kinds[3][1]
    again_folder = tmp_path / "again"
    again_folder.mkdir()
    Image.fromarray(np.zeros((160, 220, 3), dtype=np.uint8)).save(again_folder / "big.png")
    with Project.open(again_folder) as again:
        import_labelme(again, out)
        image = again.image_by_path("big.png")
        assert image is not None
        got = [masks.decode(a.rle) for a in again.annotations(image.id)]
    assert len(got) == 3  # the two parts of one mask share a group_id: one mask again
    for mask, back in zip(shapes, got, strict=True):
        assert mask.sum() > 1000
        assert iou(fill_holes(mask), back) >= 0.98


def test_one_pixel_and_one_pixel_wide_parts_survive_polygons(tmp_path: Path) -> None:
    folder = tmp_path / "thin"
    folder.mkdir()
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(folder / "t.png")
    mask = np.zeros((12, 16), dtype=bool)
    mask[0, 0] = True  # a lone pixel in the corner
    mask[5, 3:12] = True  # a one-pixel-wide line
    mask[11, 15] = True  # the opposite corner
    with Project.open(folder) as project:
        image = project.image_by_path("t.png")
        assert image is not None
        project.add_annotation(image.id, masks.encode(mask), project.add_label("x").id)
        export(project, "labelme-polygon", ExportOptions(out=tmp_path / "out"))
        project.undo()  # the project is empty again: import the file back into it
        import_labelme(project, tmp_path / "out")
        (layer,) = project.annotations(image.id)
        assert np.array_equal(masks.decode(layer.rle), mask)


LABELME_SIDE = os.environ.get("SAMDESK_LABELME_PYTHONPATH")
"""Where labelme is installed, when not in this environment (it pulls PyQt5, which
must not share a process with PySide6, so it is run in a child process)."""

_READ_WITH_LABELME = """
import json, sys
from labelme._label_file import LabelFile
from labelme.utils import shapes_to_label
label_file = LabelFile(sys.argv[1])  # reads the image imagePath leads to, too
names = sorted({s["label"] for s in label_file.shapes})
document = json.load(open(sys.argv[1], encoding="utf-8"))
h, w = document["imageHeight"], document["imageWidth"]
cls, ins = shapes_to_label((h, w), label_file.shapes, {n: i + 1 for i, n in enumerate(names)})
print(json.dumps({"ins": ins.tolist(), "names": names, "cls": cls.tolist()}))
"""


@pytest.mark.skipif(importlib.util.find_spec("labelme") is None and not LABELME_SIDE,
                    reason="labelme is not installed (pip install labelme pulls PyQt5; "
                           "set SAMDESK_LABELME_PYTHONPATH to a folder holding it)")
def test_labelme_itself_reads_the_same_pixels(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "labelme"
    export(sample.project, "labelme", ExportOptions(out=out))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    if LABELME_SIDE:
        env["PYTHONPATH"] = LABELME_SIDE
    for path, json_name in (("a.png", "a.json"), ("c.jpg", "c.json"), ("d.png", "d.json")):
        done = subprocess.run([sys.executable, "-c", _READ_WITH_LABELME, str(out / json_name)],
                              capture_output=True, text=True, env=env, timeout=120, check=True)
        read = json.loads(done.stdout.strip().splitlines()[-1])
        want = np.zeros(np.array(read["ins"]).shape, dtype=np.int64)
        for index, mask in enumerate(exported_masks(sample, path), start=1):
            want[mask] = index  # labelme paints shapes in order: the front-most wins
        assert np.array_equal(np.array(read["ins"]), want), path


def test_a_file_where_the_folder_should_be_is_one_line(sample: Sample, tmp_path: Path) -> None:
    blocker = tmp_path / "labelme.json"
    blocker.write_text("{}", encoding="utf-8")
    with pytest.raises(ExportError) as caught:
        export(sample.project, "labelme", ExportOptions(out=blocker))
    assert str(caught.value) == (f"{blocker}: is a file, and labelme writes a folder of JSON "
                                 "files; give a folder path (a new or an existing folder)")


def test_gray_and_rgba_images_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.fromarray(np.arange(20 * 16, dtype=np.uint8).reshape(20, 16)).save(folder / "g.png")
    Image.fromarray(np.full((12, 18, 4), 128, np.uint8), "RGBA").save(folder / "r.png")
    wanted: dict[str, np.ndarray] = {}
    with Project.open(folder) as project:
        label = project.add_label(ACCENTED)
        for record in project.images():
            record = project.ensure_image_info(record.id)
            assert record.width is not None and record.height is not None
            mask = np.zeros((record.height, record.width), dtype=bool)
            mask[1:-1, 2:] = True  # touches the right border
            mask[4:6, 5:7] = False  # a hole
            project.add_annotation(record.id, masks.encode(mask), label.id)
            wanted[record.path] = mask
        export(project, "labelme", ExportOptions(out=tmp_path / "out"))
    assert (tmp_path / "out" / "g.png").read_bytes() == (folder / "g.png").read_bytes()
    again = tmp_path / "again"
    shutil.copytree(folder, again, ignore=shutil.ignore_patterns(".samdesk"))
    with Project.open(again) as project:
        import_labelme(project, tmp_path / "out")
        for record in project.images():
            (layer,) = project.annotations(record.id)
            assert np.array_equal(masks.decode(layer.rle), wanted[record.path])
