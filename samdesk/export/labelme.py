"""labelme JSON: one file per image, as labelme and X-AnyLabeling open it.

``out`` is a folder. Image ``photos/cat.jpg`` gets ``OUT/photos/cat.json``
(both keep their extension, ``a.jpg.json`` and ``a.png.json``, when two
images would share a name). Each file holds::

    {"version": "5.5.0", "flags": {}, "shapes": [...],
     "imagePath": "cat.jpg", "imageData": null,
     "imageHeight": 480, "imageWidth": 640}

* The images (``ExportOptions.images``, :mod:`samdesk.export.images_out`):
  with ``copy`` (the default) each is written beside its JSON
  (``OUT/photos/cat.jpg``), upright (a photo stored with an EXIF
  orientation is turned and its tag removed), and ``imagePath`` is its
  name; ``link`` hard-links where no turning is needed. With ``none``
  ``imagePath`` leads, relative to the JSON, to the project's file
  (labelme applies the EXIF orientation itself; the summary names the
  images stored turned).
* ``imageHeight``/``imageWidth`` are upright; ``imageData`` is null.
* ``shapes``, back to front, each ``label``, ``points``, ``group_id``,
  ``description`` (``""``), ``shape_type``, ``flags`` (``{}``):

  - ``labelme`` (default): one ``mask`` shape per mask, exact, holes kept.
    ``points`` are the top-left and bottom-right pixels of its tight box
    (inclusive, integers written as floats), ``mask`` a base64 PNG (8-bit,
    0/1) of that box's crop, as labelme 5.3+ writes it. ``group_id`` null.
  - ``labelme-polygon``: one ``polygon`` shape per separate part, its
    outline through the centres of the boundary pixels (labelme rasterises
    polygons with PIL, boundary included, so the outline gives the part
    back). Holes are filled. The parts of a mask with several share a
    ``group_id`` (the mask id): labelme reads shapes with one label and one
    ``group_id`` as one object.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageRecord, ImageStatus, Label, MaskLayer
from samdesk.export.base import (
    ExportOptions,
    ExportSummary,
    ImageWork,
    atomic_file,
    labels_by_id,
    make_folder,
    mark_export_folder,
    walk,
)
from samdesk.export.images_out import ImagesOut, image_name
from samdesk.imagefiles import display_path

if TYPE_CHECKING:
    from samdesk.project import Project

LABELME_VERSION = "5.5.0"
"""The labelme file version written: the layout of labelme 5.3 and later (mask shapes)."""


def json_names(records: list[ImageRecord]) -> dict[int, str]:
    """Image id -> relative JSON path (``/`` separators); clashing names (compared
    ignoring case) keep the image's extension: ``a.jpg.json``."""
    wanted = {r.id: str(PurePosixPath(r.path).with_suffix(".json")) for r in records}
    clashes = Counter(name.lower() for name in wanted.values())
    return {r.id: wanted[r.id] if clashes[wanted[r.id].lower()] == 1 else f"{r.path}.json"
            for r in records}


def mask_shape(mask: np.ndarray, label: str) -> dict[str, Any]:
    """A labelme ``mask`` shape for a non-empty ``bool`` (H, W) mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    crop = mask[top:bottom + 1, left:right + 1].astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG")
    return _shape(label, [[float(left), float(top)], [float(right), float(bottom)]],
                  "mask", None, mask=base64.b64encode(buffer.getvalue()).decode("ascii"))


def polygon_points(mask: np.ndarray) -> list[list[list[float]]]:
    """Outlines of each separate (8-connected) part of a ``bool`` (H, W) mask, through
    the centres of its boundary pixels, as labelme points ``[[x, y], ...]``.

    A part of one pixel or one pixel-wide line has fewer than 3 outline points;
    its points are repeated to 3, which labelme (and PIL) draw as that pixel
    or line.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(float).tolist()
        out.append(points if len(points) >= 3 else (points * 3)[:3])
    return out


def _shape(label: str, points: list[list[float]], shape_type: str, group_id: int | None,
           mask: str | None = None) -> dict[str, Any]:
    shape: dict[str, Any] = {"label": label, "points": points, "group_id": group_id,
                             "description": "", "shape_type": shape_type, "flags": {}}
    if mask is not None:
        shape["mask"] = mask
    return shape


def has_holes(mask: np.ndarray) -> bool:
    """Whether a ``bool`` (H, W) mask has a hole (background enclosed by it)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(mask.shape, dtype=np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return int(filled.sum()) > int(np.count_nonzero(mask))


def layer_shapes(layer: MaskLayer, label: str,
                 polygons: bool) -> tuple[list[dict[str, Any]], bool]:
    """The shapes one mask layer is written as (see the module docstring), and
    whether polygons filled holes of it."""
    mask = masks.decode(layer.rle)
    if not polygons:
        return [mask_shape(mask, label)], False
    parts = polygon_points(mask)
    group_id = layer.id if len(parts) > 1 else None
    return [_shape(label, points, "polygon", group_id) for points in parts], has_holes(mask)


def image_path(project: Project, work: ImageWork, target: Path, mode: str) -> str:
    """``imagePath`` for the JSON ``target``: the image's name beside it when the export
    carries its images (``copy``, ``link``), else the project's file relative to it."""
    if mode != "none":
        return PurePosixPath(image_name(work.image)).name
    source = os.path.abspath(project.image_file(work.image))
    relative = os.path.relpath(source, os.path.abspath(target.parent))
    return display_path(Path(relative).as_posix(), one_line=False)


def image_document(project: Project, work: ImageWork, target: Path, labels: dict[int, Label],
                   polygons: bool, summary: ExportSummary, mode: str) -> dict[str, Any]:
    """The labelme JSON object for one image; ``mode`` is ``ExportOptions.images``."""
    shapes: list[dict[str, Any]] = []
    filled = 0
    for layer in work.layers:
        assert layer.label_id is not None  # walk() keeps labelled layers only
        written, holes = layer_shapes(layer, labels[layer.label_id].name, polygons)
        shapes += written
        filled += holes
    if filled:
        summary.warnings.append((work.image.path, f"{filled} mask{'s' if filled > 1 else ''} "
                                 "lost holes (a polygon has none; labelme's mask shapes "
                                 "keep them)"))
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes,
            "imagePath": image_path(project, work, target, mode), "imageData": None,
            "imageHeight": work.height, "imageWidth": work.width}


def write_labelme(project: Project, options: ExportOptions, polygons: bool) -> ExportSummary:
    """One labelme JSON per image under ``options.out`` (a folder)."""
    summary = ExportSummary(format="labelme-polygon" if polygons else "labelme")
    labels = labels_by_id(project)
    out = Path(options.out)
    names = json_names(project.images(ImageStatus.DONE if options.only_done else None))
    ours = {f"{out.name}/{name}" for name in names.values()}
    image_files = ImagesOut(project, options, out, summary, ours)  # the images beside
    make_folder(out)
    mark_export_folder(out)  # also an existing folder: the project scan skips it
    for work in walk(project, options, summary, labels):
        if not image_files.put(work.image):
            continue  # unreadable now: no JSON either
        target = out / names[work.image.id]
        document = image_document(project, work, target, labels, polygons, summary,
                                  options.images)
        with atomic_file(target, durable=False) as stream:
            json.dump(document, stream, ensure_ascii=False, indent=2, allow_nan=False)
            stream.write("\n")
        summary.files.append(target)
        summary.images += 1
        summary.annotations += len(work.layers)
    return summary


def export_labelme(project: Project, options: ExportOptions) -> ExportSummary:
    """labelme JSON per image, each mask a ``mask`` shape (exact, holes kept)."""
    return write_labelme(project, options, polygons=False)


def export_labelme_polygon(project: Project, options: ExportOptions) -> ExportSummary:
    """labelme JSON per image, each part of a mask a ``polygon`` shape (holes filled)."""
    return write_labelme(project, options, polygons=True)
