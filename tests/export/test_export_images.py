"""The images of an export: upright copies every reader agrees on, hard links, or none.

The fault: an export described a phone photo stored sideways (EXIF
orientation 6) upright, with upright masks, but pointed at the sideways
file; torchvision does not turn it, so image and masks disagreed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import images, masks
from samdesk.cli import main
from samdesk.export import ExportError, ExportOptions, export
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

STORED = (48, 32)  # width x height as stored; upright it is 32 wide, 48 high


def sideways_photo(path: Path, fmt: str = "JPEG") -> np.ndarray:
    """A picture stored turned (orientation 6): black, with a bright block that is at
    rows 30..44, columns 4..14 of the upright picture. Returns the upright mask."""
    upright = np.zeros((48, 32, 3), np.uint8)
    upright[30:44, 4:14] = (250, 240, 230)
    upright[2:6, 20:30] = (0, 90, 200)  # a smaller mark elsewhere
    stored = np.rot90(upright, k=1)  # orientation 6 turns the stored pixels 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(path, fmt, exif=exif, quality=100)
    mask = np.zeros((48, 32), bool)
    mask[30:44, 4:14] = True
    return mask


@pytest.fixture
def project(tmp_path: Path) -> Project:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "other").mkdir()
    mask = sideways_photo(folder / "phone.jpg")
    assert images.read_size(folder / "phone.jpg") == (32, 48)  # upright
    sideways_photo(folder / "scan.png", "PNG")
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), np.uint8)).save(folder / "sub" / "x.png")
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), np.uint8)).save(folder / "other" / "x.png")
    opened = Project.open(folder)
    label = opened.add_label("block")
    for name in ("phone.jpg", "scan.png"):
        record = opened.image_by_path(name)
        assert record is not None
        opened.add_annotation(record.id, masks.encode(mask), label.id)
    yield opened
    opened.close()


def stored_orientation(path: Path) -> int | None:
    with Image.open(path) as image:
        return image.getexif().get(0x0112)


@pytest.mark.parametrize("fmt", ["coco-rle", "coco-polygon"])
def test_torchvision_sees_each_image_at_its_annotation_size_with_masks_on_the_pixels(
        project: Project, tmp_path: Path, fmt: str) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    out = tmp_path / "export"
    summary = export(project, fmt, ExportOptions(out=out))
    assert summary.images_folder == out / "images"
    assert summary.images_written == {"copied": 4, "turned upright": 2}
    with contextlib.redirect_stdout(io.StringIO()):
        plain = datasets.CocoDetection(str(out / "images"), str(out / "instances.json"))
        wrapped = datasets.wrap_dataset_for_transforms_v2(
            plain, target_keys=("image_id", "boxes", "labels", "masks"))
    described = {im["id"]: im for im in plain.coco.dataset["images"]}
    checked = 0
    for index in range(len(wrapped)):
        picture, target = wrapped[index]
        entry = described[target["image_id"]]
        assert picture.size == (entry["width"], entry["height"]), entry["file_name"]
        if entry["file_name"] in ("phone.jpg", "scan.png"):
            pixels = np.asarray(picture.convert("L"))
            mask = target["masks"].numpy().astype(bool)
            assert mask.shape == (1, 48, 32)
            assert mask[0].sum() == 14 * 10  # the polygon keeps every pixel too
            assert pixels[mask[0]].min() > 200  # the mask covers the bright block
            assert pixels[~mask[0]].max() < 215  # and nothing of it lies outside
            checked += 1
    assert checked == 2


def test_the_copies_are_upright_without_orientation_and_named_as_in_the_project(
        project: Project, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    export(project, "coco-rle", ExportOptions(out=out))
    written = tmp_path / "images"
    document = json.loads(out.read_text())
    assert sorted(im["file_name"] for im in document["images"]) == [
        "other/x.png", "phone.jpg", "scan.png", "sub/x.png"]
    folder = project.folder
    for name in ("phone.jpg", "scan.png"):
        assert stored_orientation(folder / name) == 6
        assert stored_orientation(written / name) is None
        with Image.open(written / name) as copy:
            assert copy.format == Image.open(folder / name).format  # same kind of file
            assert copy.size == (32, 48)
    # PNG: lossless, pixel for pixel the picture samdesk shows
    assert np.array_equal(images.load_rgb(written / "scan.png"),
                          images.load_rgb(folder / "scan.png"))
    # JPEG: re-encoded once at quality 95, close to the upright source
    drift = np.abs(images.load_rgb(written / "phone.jpg").astype(int)
                   - images.load_rgb(folder / "phone.jpg").astype(int))
    assert drift.mean() < 2.0
    # same base name in two folders: both kept, each byte for byte
    for name in ("sub/x.png", "other/x.png"):
        assert (written / name).read_bytes() == (folder / name).read_bytes()


def test_link_shares_the_file_that_needs_no_turning_and_copies_the_turned_one(
        project: Project, tmp_path: Path) -> None:
    out = tmp_path / "linked"
    summary = export(project, "png-instance", ExportOptions(out=out, images="link"))
    written = out / "images"
    folder = project.folder
    for name in ("sub/x.png", "other/x.png"):
        assert os.stat(written / name).st_ino == os.stat(folder / name).st_ino
    assert os.stat(written / "phone.jpg").st_ino != os.stat(folder / "phone.jpg").st_ino
    assert stored_orientation(written / "phone.jpg") is None
    assert summary.images_written == {"linked": 2, "copied": 2, "turned upright": 2}
    assert (out / "phone.png").is_file()  # the masks beside the images folder
    assert f"images in {written}: 2 copied, 2 linked, 2 turned upright" in summary.lines()
    again = export(project, "png-instance", ExportOptions(out=out, images="link"))
    assert again.images_written["linked"] == 2  # an export made again links the same files
    assert os.stat(written / "sub/x.png").st_ino == os.stat(folder / "sub/x.png").st_ino


def test_none_names_each_turned_image_and_how_to_get_upright_copies(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = project.folder
    project.close()
    out = tmp_path / "none.json"
    assert main(["export", str(folder), "--format", "coco-polygon", "--out", str(out),
                 "--images", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "warning phone.jpg: stored turned (EXIF orientation 6); the export describes it " \
           "upright" in lines
    assert "warning scan.png: stored turned (EXIF orientation 6); the export describes it " \
           "upright" in lines
    assert any(line.startswith("2 images are stored turned") and "--images copy" in line
               for line in lines)
    assert not (tmp_path / "images").exists()
    names = [im["file_name"] for im in json.loads(out.read_text())["images"]]
    assert "phone.jpg" in names and (folder / "phone.jpg").is_file()  # the project's file


def test_the_default_export_copies_and_says_so(project: Project, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = project.folder
    project.close()
    out = tmp_path / "semantic"
    assert main(["export", str(folder), "--format", "png-semantic", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"images in {out / 'images'}: 4 copied, 2 turned upright" in lines
    assert not any("stored turned" in line for line in lines)
    assert stored_orientation(out / "images" / "phone.jpg") is None


def test_an_images_folder_onto_the_project_is_refused_before_anything_is_written(
        project: Project, tmp_path: Path) -> None:
    folder = project.folder
    inner = folder / "sub" / "images"  # a project folder that holds an images/ folder
    inner.mkdir()
    Image.new("RGB", (4, 4)).save(inner / "y.png")
    project.rescan()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ExportError, match=r"sub/images: holds images of the project "
                                          r"\(sub/images/y\.png\); write the export elsewhere"):
        export(project, "coco-rle", ExportOptions(out=folder / "sub" / "coco.json"))
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    # the layout images/ + instances.json beside it, with images/ the project: refused
    # with copy (it would write into the project), fine with none
    dataset = tmp_path / "dataset" / "images"
    dataset.mkdir(parents=True)
    sideways_photo(dataset / "p.jpg")
    with Project.open(dataset) as other:
        with pytest.raises(ExportError, match="would go into the project folder"):
            export(other, "coco-rle", ExportOptions(out=dataset.parent / "instances.json"))
        assert sorted(p.name for p in dataset.iterdir()) == [".samdesk", "p.jpg"]
        summary = export(other, "coco-rle", ExportOptions(out=dataset.parent / "instances.json",
                                                          images="none"))
        assert summary.turned == [("p.jpg", 6)]


def test_exporting_again_rewrites_only_images_that_changed(project: Project,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "again.json"
    export(project, "coco-rle", ExportOptions(out=out))
    written = tmp_path / "images"
    kept = {name: os.stat(written / name).st_ino for name in ("phone.jpg", "sub/x.png")}
    export(project, "coco-rle", ExportOptions(out=out))
    assert {name: os.stat(written / name).st_ino for name in kept} == kept  # not written again
    source = project.folder / "sub" / "x.png"
    Image.new("RGB", (30, 20), (9, 9, 9)).save(source)  # the same size, other pixels
    project.rescan()
    export(project, "coco-rle", ExportOptions(out=out))
    assert (written / "sub" / "x.png").read_bytes() == source.read_bytes()
    assert os.stat(written / "phone.jpg").st_ino == kept["phone.jpg"]


KINDS = {  # name -> (mode, largest difference from the upright source: 0 is lossless)
    "rgba.png": ("RGBA", 0), "palette.png": ("P", 0), "gray16.png": ("I;16", 0),
    "cmyk.jpg": ("CMYK", 12), "gray.jpg": ("L", 12), "photo.webp": ("RGB", 0),
    "scan.tif": ("RGB", 0),
}


def test_every_kind_of_turned_file_is_written_upright_in_its_own_format(tmp_path: Path) -> None:
    folder = tmp_path / "kinds"
    folder.mkdir()
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 30, 3), np.uint8)
    pictures = {
        "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., 0]])),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "gray16.png": Image.fromarray(rng.integers(0, 65535, (20, 30), np.uint16)),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "gray.jpg": Image.fromarray(rgb).convert("L"),
        "photo.webp": Image.fromarray(rgb),
        "scan.tif": Image.fromarray(rgb),
    }
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"  # the rest of the EXIF is kept
    for name, picture in pictures.items():
        if name.endswith(".tif"):
            picture.save(folder / name, tiffinfo={0x0112: 6})
        else:
            picture.save(folder / name, exif=exif)
    with Project.open(folder) as project:
        summary = export(project, "coco-rle", ExportOptions(out=tmp_path / "k.json"))
    assert summary.images_written == {"copied": 7, "turned upright": 7}
    for name, (mode, worst) in KINDS.items():
        copy = tmp_path / "images" / name
        with Image.open(copy) as opened:
            assert opened.mode == mode, name
            tags = opened.tag_v2 if opened.format == "TIFF" else opened.getexif()
            assert tags.get(0x0112) is None, name
            if not name.endswith(".tif"):
                assert opened.getexif().get(0x010F) == "PhoneMaker", name
        upright = images.load_rgb(folder / name)
        assert upright.shape == (30, 20, 3)
        difference = np.abs(images.load_rgb(copy).astype(int) - upright).max()
        assert difference <= worst, name


def test_link_across_file_systems_copies_instead(project: Project, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("samdesk.export.images_out.os.link", cross_device)
    summary = export(project, "coco-rle", ExportOptions(out=tmp_path / "x.json", images="link"))
    assert summary.images_written == {"copied": 4, "turned upright": 2}
    copy, source = tmp_path / "images" / "sub" / "x.png", project.folder / "sub" / "x.png"
    assert copy.read_bytes() == source.read_bytes()
    assert os.stat(copy).st_ino != os.stat(source).st_ino


def test_a_mask_png_that_would_land_on_an_image_copy_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "clash"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "a.png")  # copied to OUT/images/a.png
    Image.new("RGB", (4, 4)).save(folder / "images" / "a.jpg")  # its mask: OUT/images/a.png
    out = tmp_path / "out"
    with Project.open(folder) as project:
        with pytest.raises(ExportError, match=r"out/images/a\.png: would be both a file of the "
                                              r"export and the copy of a\.png"):
            export(project, "png-instance", ExportOptions(out=out))
        assert not out.exists()
        summary = export(project, "png-instance", ExportOptions(out=out, images="none"))
        assert summary.images == 2
