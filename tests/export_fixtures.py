"""A small annotated project for the export and import tests.

Images (upright sizes, width x height): ``a.png`` 40x30, ``sub/b.png`` 25x20,
``c.jpg`` stored 30x20 with EXIF orientation 6 (so 20x30 upright), ``d.png``
12x10 with no masks. ``a.png`` is marked done. Masks on ``a.png`` cover the
awkward cases: a hole with an island inside it, several parts with a
one-pixel part, a one-pixel mask in the bottom-right corner, a mask touching
the top-left border, an empty mask and an unlabelled one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageStatus
from samdesk.project import Project


def ring_with_island(height: int, width: int) -> np.ndarray:
    """Square ring (outer 5..20, hole 9..16) with a one-pixel island in the hole."""
    m = np.zeros((height, width), dtype=bool)
    m[5:21, 5:21] = True
    m[9:17, 9:17] = False
    m[12, 12] = True
    return m


def several_parts(height: int, width: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    m[2:6, 25:30] = True  # a block
    m[10:25, 32:35] = True  # a bar
    m[27, 22] = True  # a lone pixel
    return m


def one_pixel(height: int, width: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    m[height - 1, width - 1] = True
    return m


def border(height: int, width: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    m[0:7, 0:11] = True  # overlaps the top-left corner of the ring
    m[0:12, 0:2] = True
    return m


def rgb(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_images(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb(30, 40, 1)).save(folder / "a.png")
    Image.fromarray(rgb(20, 25, 2)).save(folder / "sub" / "b.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: stored 30x20, upright 20x30
    Image.fromarray(rgb(20, 30, 3)).save(folder / "c.jpg", exif=exif)
    Image.fromarray(rgb(10, 12, 4)).save(folder / "d.png")


@dataclass
class Sample:
    """The project and the masks put into it, keyed by annotation id."""

    project: Project
    folder: Path
    expected: dict[int, np.ndarray]  # exported masks: annotation id -> bool (H, W)
    labels: dict[str, int]  # label name -> id
    empty_id: int
    unlabelled_id: int


def build(folder: Path) -> Sample:
    write_images(folder)
    project = Project.open(folder)
    cat = project.add_label("cat", color="#112233")
    dog = project.add_label("dog", color="#445566")
    a = project.image_by_path("a.png")
    b = project.image_by_path("sub/b.png")
    c = project.image_by_path("c.jpg")
    assert a is not None and b is not None and c is not None
    expected: dict[int, np.ndarray] = {}

    def add(image_id: int, mask: np.ndarray, label_id: int | None,
            score: float | None = None) -> int:
        layer = project.add_annotation(image_id, masks.encode(mask), label_id, score=score)
        expected[layer.id] = mask
        return layer.id

    add(a.id, ring_with_island(30, 40), cat.id, score=0.875)
    add(a.id, several_parts(30, 40), dog.id)
    add(a.id, one_pixel(30, 40), cat.id)
    add(a.id, border(30, 40), dog.id)
    empty_id = add(a.id, np.zeros((30, 40), dtype=bool), cat.id)
    unlabelled_id = add(a.id, several_parts(30, 40)[::-1].copy(), None)
    del expected[empty_id], expected[unlabelled_id]
    b_mask = np.zeros((20, 25), dtype=bool)
    b_mask[3:17, 4:20] = True
    add(b.id, b_mask, cat.id)
    c_mask = np.zeros((30, 20), dtype=bool)  # upright frame: 30 high, 20 wide
    c_mask[20:30, 0:5] = True
    add(c.id, c_mask, dog.id)
    project.set_status(a.id, ImageStatus.DONE)
    return Sample(project, folder, expected, {"cat": cat.id, "dog": dog.id},
                  empty_id, unlabelled_id)
