"""PNG exports: pixel values, front-most mask wins, palettes and sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageRecord, Label
from samdesk.export import ExportError, ExportOptions, export
from samdesk.export.png import palette, png_names
from tests.export_fixtures import Sample, build

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    built = build(tmp_path / "project")
    yield built
    built.project.close()


def painted(sample: Sample, image_path: str, value_of) -> np.ndarray:
    """What the PNG should hold: layers painted back to front with ``value_of(layer)``."""
    image = sample.project.image_by_path(image_path)
    assert image is not None and image.width is not None and image.height is not None
    canvas = np.zeros((image.height, image.width), dtype=np.int64)
    exported = [a for a in sample.project.annotations(image.id) if a.id in sample.expected]
    for index, layer in enumerate(exported, start=1):
        canvas[masks.decode(layer.rle)] = value_of(index, layer)
    return canvas


def test_instance_pngs_hold_indices_by_z_order(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "instances"
    summary = export(sample.project, "png-instance", ExportOptions(out=out))
    png = Image.open(out / "a.png")
    assert png.mode == "I;16" and png.size == (40, 30)
    pixels = np.array(png)
    expected = painted(sample, "a.png", lambda index, layer: index)
    assert np.array_equal(pixels, expected)
    # the border mask (in front) covers the ring's top-left corner (behind it)
    assert (pixels == 4).sum() == sample.expected[4].sum()
    assert (pixels == 1).sum() == sample.expected[1].sum() - 12
    sidecar = json.loads((out / "a.json").read_text())
    assert [(i["index"], i["annotation_id"], i["label"]) for i in sidecar["instances"]] == [
        (1, 1, "cat"), (2, 2, "dog"), (3, 3, "cat"), (4, 4, "dog")]
    assert [i["pixels"] for i in sidecar["instances"]] == [
        int((pixels == k).sum()) for k in range(1, 5)]
    assert summary.images == 4 and summary.annotations == 6


def test_every_image_gets_a_png_in_its_folder_and_upright(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "instances"
    export(sample.project, "png-instance", ExportOptions(out=out))
    assert np.array(Image.open(out / "d.png")).max() == 0  # no masks: all background
    assert np.array(Image.open(out / "sub" / "b.png")).sum() == 14 * 16
    c = np.array(Image.open(out / "c.png"))
    assert c.shape == (30, 20) and c[20:30, 0:5].min() == 1 and c.sum() == 50


def test_semantic_pngs_hold_label_ids_with_the_label_colours(sample: Sample,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "semantic"
    summary = export(sample.project, "png-semantic", ExportOptions(out=out))
    png = Image.open(out / "a.png")
    assert png.mode == "P"
    pixels = np.array(png)
    assert pixels.dtype == np.uint8
    assert np.array_equal(pixels, painted(sample, "a.png", lambda i, layer: layer.label_id))
    colours = png.getpalette()
    cat, dog = sample.labels["cat"], sample.labels["dog"]
    assert colours[3 * cat:3 * cat + 3] == [0x11, 0x22, 0x33]
    assert colours[3 * dog:3 * dog + 3] == [0x44, 0x55, 0x66]
    assert colours[0:3] == [0, 0, 0]
    assert (out / "labels.txt").read_text().splitlines() == ["_background_", "cat", "dog"]
    table = json.loads((out / "labels.json").read_text())
    assert [(row["id"], row["name"], row["color"]) for row in table] == [
        (0, "_background_", "#000000"), (cat, "cat", "#112233"), (dog, "dog", "#445566")]
    assert out / "labels.txt" in summary.files


def test_only_done_writes_only_done_images(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "semantic"
    summary = export(sample.project, "png-semantic", ExportOptions(out=out, only_done=True))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "images/a.png"]  # its mask, and the image itself
    assert summary.images == 1


def test_png_names_keep_extensions_when_two_images_would_clash() -> None:
    records = [ImageRecord(1, "x/a.jpg"), ImageRecord(2, "x/a.PNG"), ImageRecord(3, "b.tif")]
    assert png_names(records) == {1: "x/a.jpg.png", 2: "x/a.PNG.png", 3: "b.png"}


def test_semantic_refuses_label_ids_past_255(sample: Sample, tmp_path: Path) -> None:
    assert palette({300: Label(300, "far", "#ffffff")}) == [0] * 768
    for n in range(3, 257):
        sample.project.add_label(f"class {n}")
    with pytest.raises(ExportError, match="'class 256' has id 256"):
        export(sample.project, "png-semantic", ExportOptions(out=tmp_path / "s"))
    assert not (tmp_path / "s").exists()
