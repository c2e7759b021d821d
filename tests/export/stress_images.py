"""A project whose masks stress a format, on images that stress a reader.

Images: ``photo.jpg`` stored 160x120 with EXIF orientation 6 (120x160
upright), ``gray.png`` 8-bit grayscale 150x100, ``rgba.png`` RGBA 90x80.
Masks (upright frame), with label names that hold spaces and non-ASCII:

* ``donut``: a disc with a hole, over 1,000 pixels;
* ``parts``: three separate blobs (two big, one a single pixel);
* ``borders``: a frame touching all four borders;
* ``whole``: every pixel of the image;
* ``pixel``: one pixel in a corner;
* ``front``: a block overlapping ``donut`` (in front of it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samdesk import masks
from samdesk.project import Project

NAMES = ("red car", "chien à poils", "猫")


def disc(height: int, width: int, cx: int, cy: int, radius: int) -> np.ndarray:
    m = np.zeros((height, width), np.uint8)
    cv2.circle(m, (cx, cy), radius, 1, -1)
    return m.astype(bool)


def donut(height: int, width: int) -> np.ndarray:
    return disc(height, width, 60, 70, 40) & ~disc(height, width, 60, 70, 12)


def parts(height: int, width: int) -> np.ndarray:
    m = disc(height, width, 30, 30, 22) | disc(height, width, 95, 120, 18)
    m[height - 3, 2] = True
    return m


def borders(height: int, width: int) -> np.ndarray:
    m = np.ones((height, width), bool)
    m[6:-6, 6:-6] = False
    return m


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 160 wide, 120 high; upright 120 wide, 160 high
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(
        folder / "photo.jpg", exif=exif, quality=90)
    Image.fromarray(rng.integers(0, 256, (100, 150), dtype=np.uint8), "L").save(
        folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (80, 90, 4), dtype=np.uint8), "RGBA").save(
        folder / "rgba.png")


@dataclass
class Stress:
    project: Project
    folder: Path
    masks: dict[int, np.ndarray]
    """Annotation id -> bool (H, W) mask, as put into the project."""
    names: dict[int, str]
    """Annotation id -> what the mask is (``donut``, ``parts``...)."""


def build(folder: Path) -> Stress:
    write_images(folder)
    project = Project.open(folder)
    labels = [project.add_label(name) for name in NAMES]
    made: dict[int, np.ndarray] = {}
    named: dict[int, str] = {}

    def add(path: str, what: str, mask: np.ndarray, label: int) -> None:
        record = project.image_by_path(path)
        assert record is not None
        layer = project.add_annotation(record.id, masks.encode(mask), labels[label].id)
        made[layer.id], named[layer.id] = mask, what

    add("photo.jpg", "donut", donut(160, 120), 0)
    add("photo.jpg", "parts", parts(160, 120), 1)
    front = np.zeros((160, 120), bool)
    front[50:90, 70:110] = True
    add("photo.jpg", "front", front, 2)
    add("gray.png", "borders", borders(100, 150), 2)
    pixel = np.zeros((100, 150), bool)
    pixel[0, 149] = True
    add("gray.png", "pixel", pixel, 0)
    add("rgba.png", "whole", np.ones((80, 90), bool), 1)
    return Stress(project, folder, made, named)


def same_images(stress: Stress, folder: Path) -> Project:
    """A new project in ``folder`` holding copies of the stress images, with no labels."""
    folder.mkdir(parents=True)
    for name in ("photo.jpg", "gray.png", "rgba.png"):
        shutil.copy2(stress.folder / name, folder / name)
    return Project.open(folder)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled (what a polygon can hold)."""
    from samdesk.export.polygons import mask_to_polygons

    return masks.decode(masks.from_polygons(mask_to_polygons(mask), *mask.shape))
