"""What a folder of mask PNGs holds: which PNGs, of which kind, and the class names.

Three kinds, recognised in this order:

* **samdesk png-instance**: a PNG with a JSON sidecar beside it (``cat.png``,
  ``cat.json`` holding ``image`` and ``instances``): pixel = instance index,
  the sidecar names each index's label.
* **VOC instances**: ``SegmentationObject/x.png`` (pixel = object index,
  255 = boundary, ignored) with ``SegmentationClass/x.png`` beside it (pixel =
  class); each object takes the class most of its pixels have.
* **semantic**: any other one-channel PNG (palette, 8- or 16-bit gray):
  pixel = class, 0 = background, 255 = ignore (VOC's boundary). One with
  more than :data:`MAX_VALUES` values is a grayscale picture, not a mask.

Class names of semantic PNGs: ``labels.txt`` or ``class_names.txt`` in the
folder (or the VOC root above it), line *i* naming value *i* (samdesk's
png-semantic and labelme2voc write them so), or ``labels.json``
(``[{"id", "name", "color"}]``). A VOC devkit folder without one gets the 20
PASCAL VOC classes. Otherwise value *v* is named ``class_v``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from samdesk.imagefiles import EXPORT_MARKER

IMAGES_FOLDER = "images"
"""Where an export puts the images' copies (``--images copy``): not masks."""

MASK_MODES = ("P", "L", "1", "I;16", "I;16B", "I;16L", "I")
"""PIL modes of a one-channel PNG: a mask, not a photo."""
IGNORE = 255
"""VOC's value for boundary and unlabelled pixels: never part of a mask."""
SKIPPED_NAMES = {"_background_", "_unused_", "__ignore__", "background"}
"""Names in a class list that are no class (samdesk's, labelme2voc's)."""
VOC_CLASSES = ("_background_", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
MAX_VALUES = 128
"""A one-channel PNG with more values than this is a picture, not a class mask."""
PEEK = 20
"""How many PNGs of a folder are looked at to recognise it."""


@dataclass(frozen=True)
class MaskPng:
    """One mask PNG: ``kind`` is "instance" (samdesk, ``sidecar`` set), "voc-instance"
    (``classes`` the SegmentationClass PNG) or "semantic"; ``name`` its path relative
    to the folder read."""

    path: Path
    name: str
    kind: str
    sidecar: Path | None = None
    classes: Path | None = None


@dataclass
class PngFolder:
    root: Path
    pngs: list[MaskPng] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    """Class value -> name, for semantic and VOC PNGs (empty: unnamed)."""
    colors: dict[int, str] = field(default_factory=dict)
    names_from: str | None = None
    """The file the names came from, "PASCAL VOC" or None (``class_v``)."""


def _pngs(folder: Path) -> list[Path]:
    """PNGs under ``folder``; in a samdesk export, those of its ``images/`` copies only
    where a sidecar makes them masks (a project folder named ``images``)."""
    found = []
    copies = folder / IMAGES_FOLDER
    copies = copies if (copies / EXPORT_MARKER).is_file() else None
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        inside = copies is not None and Path(root).is_relative_to(copies)
        found += [Path(root) / f for f in sorted(files)
                  if f.lower().endswith(".png") and not f.startswith(".")
                  and (not inside or (Path(root) / f).with_suffix(".json").is_file())]
    return found


def is_mask_png(path: Path) -> bool:
    """A one-channel PNG with a sidecar, or with at most :data:`MAX_VALUES` values (a
    grayscale photo has more)."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.mode not in MASK_MODES:
                return False
            if path.with_suffix(".json").is_file():
                return True
            image.thumbnail((256, 256), Image.Resampling.NEAREST)
            return distinct_values(image) <= MAX_VALUES
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def distinct_values(image: Image.Image) -> int:
    """How many different pixel values a one-channel image holds."""
    import numpy as np

    return int(np.unique(np.asarray(image)).size)


def _voc_root(source: Path) -> Path | None:
    """The VOC folder (holding SegmentationClass) ``source`` is or is in."""
    for place in (source, source.parent):
        if (place / "SegmentationClass").is_dir():
            return place
    return None


def is_png_masks(source: Path) -> bool:
    """A folder whose first PNGs (up to :data:`PEEK`) include a one-channel one."""
    if not source.is_dir():
        return False
    folder = source
    voc = _voc_root(source)
    if voc is not None and source == voc:
        folder = voc / "SegmentationClass"
    for count, path in enumerate(_pngs(folder)):
        if count >= PEEK:
            return False
        if is_mask_png(path):
            return True
    return False


def read_folder(source: Path) -> PngFolder:
    """The PNGs under ``source`` and what they are; see the module docstring."""
    voc = _voc_root(source)
    if voc is not None and source.name != "SegmentationClass":
        objects = voc / "SegmentationObject"
        if objects.is_dir() and source in (voc, objects):
            out = PngFolder(source)
            for path in _pngs(objects):
                pair = voc / "SegmentationClass" / path.relative_to(objects)
                out.pngs.append(MaskPng(path, path.relative_to(objects).as_posix(),
                                        "voc-instance", classes=pair))
            _read_names(out, [voc])
            return out
        source = voc / "SegmentationClass" if source == voc else source
    out = PngFolder(source)
    for path in _pngs(source):
        sidecar = path.with_suffix(".json")
        if _is_sidecar(sidecar):
            out.pngs.append(MaskPng(path, path.relative_to(source).as_posix(), "instance",
                                    sidecar=sidecar))
        else:
            out.pngs.append(MaskPng(path, path.relative_to(source).as_posix(), "semantic"))
    _read_names(out, [source, source.parent] if voc is not None else [source])
    return out


def _is_sidecar(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(document, dict) and isinstance(document.get("instances"), list)


def _read_names(out: PngFolder, places: list[Path]) -> None:
    for place in places:
        for name in ("labels.json", "labels.txt", "class_names.txt"):
            path = place / name
            if path.is_file() and _names_from(out, path):
                out.names_from = name
                return
    if _voc_root(out.root) is not None:
        out.names = dict(enumerate(VOC_CLASSES))
        out.names_from = "PASCAL VOC"


def _names_from(out: PngFolder, path: Path) -> bool:
    """Fill ``out.names`` (and colours) from one names file; False when it holds none."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".json":
        try:
            table = json.loads(text)
        except ValueError:
            return False
        if not isinstance(table, list):
            return False
        for row in table:
            if (isinstance(row, dict) and isinstance(row.get("id"), int)
                    and isinstance(row.get("name"), str)):
                out.names[row["id"]] = row["name"]
                if isinstance(row.get("color"), str):
                    out.colors[row["id"]] = row["color"]
    else:
        out.names = dict(enumerate(line.strip() for line in text.splitlines()))
    return bool(out.names)
