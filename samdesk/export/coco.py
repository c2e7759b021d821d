"""COCO instances JSON, with masks as compressed RLE or as polygons.

The file holds ``info``, ``licenses`` (empty), ``categories``, ``images`` and
``annotations``:

* ``images``: ``id`` (the project's image id), ``file_name`` (path relative
  to ``images/`` beside the JSON, where the export writes the images upright,
  or, with ``images="none"``, to the project folder: the same text, ``/``
  separators; bytes of a name that is not UTF-8 are written as U+FFFD),
  ``width``/``height`` (upright, of the file as it is now);
* ``categories``: every project label, ``id`` = label id, ``name``,
  ``supercategory`` "object", and samdesk's ``color`` ("#rrggbb");
* ``annotations``: ``id`` (the mask layer id), ``image_id``, ``category_id``,
  ``segmentation``, ``area`` (pixels of the segmentation), ``bbox``
  ``[x, y, w, h]`` from the mask, ``iscrowd`` 0, and, when the mask came
  with a model score, ``attributes: {"score": s}`` (ground truth has no
  top-level ``score``; CVAT keeps extra fields under ``attributes`` too);
  a score that is not finite (inf, NaN) is written as ``null``: the file is
  standard JSON that strict parsers accept; a mask of a track (one object
  across the frames of a sequence) carries its ``track_id`` (the masks of one
  object share it), and a propagated one its model's object score logit as
  ``attributes: {"object_score": s}``.

Annotations are streamed to a temporary file while images are walked, then
the JSON is assembled and moved into place atomically.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import samdesk
from samdesk import masks
from samdesk.annotations import Label, MaskLayer
from samdesk.export.base import (
    ExportOptions,
    ExportSummary,
    atomic_file,
    labels_by_id,
    make_folder,
    walk,
)
from samdesk.export.images_out import IMAGES_FOLDER, ImagesOut, image_name
from samdesk.export.polygons import mask_to_polygons, polygons_area

if TYPE_CHECKING:
    from samdesk.project import Project

Segmentation = Callable[[MaskLayer, int], tuple[Any, int] | None]
"""Turns a layer and its pixel count into ``(segmentation, area)``; None when it
cannot be written."""

DEFAULT_NAME = "instances.json"


def coco_path(out: Path) -> Path:
    """The JSON file for ``out``: itself when it ends in ``.json`` or is an existing
    file, else ``out/instances.json``."""
    out = Path(out)
    if out.suffix.lower() == ".json" or (out.exists() and not out.is_dir()):
        return out
    return out / DEFAULT_NAME


def rle_segmentation(layer: MaskLayer, pixels: int) -> tuple[Any, int]:
    """Compressed RLE with str counts, and its pixel count."""
    return masks.normalize(layer.rle), pixels


def polygon_segmentation(layer: MaskLayer, pixels: int) -> tuple[Any, int] | None:
    """Outer polygons of every part (holes filled), and the pixels they cover."""
    polygons = mask_to_polygons(masks.decode(layer.rle))
    if not polygons:
        return None
    return polygons, polygons_area(polygons)


def category(label: Label) -> dict[str, Any]:
    return {"id": label.id, "name": label.name, "supercategory": "object", "color": label.color}


def annotation_entry(layer: MaskLayer, segmentation: Any, area: int,
                     box: list[float] | None = None) -> dict[str, Any]:
    """One ``annotations`` item; ``box`` is the layer's ``[x, y, w, h]`` when already known."""
    entry: dict[str, Any] = {
        "id": layer.id,
        "image_id": layer.image_id,
        "category_id": layer.label_id,
        "segmentation": segmentation,
        "area": area,
        "bbox": masks.bbox(layer.rle) if box is None else box,
        "iscrowd": 0,
    }
    if layer.score is not None:
        score = float(layer.score)
        entry["attributes"] = {"score": score if math.isfinite(score) else None}
    if layer.track_id is not None:
        entry["track_id"] = layer.track_id
        if layer.object_score is not None:
            score = float(layer.object_score)
            entry.setdefault("attributes", {})["object_score"] = (
                score if math.isfinite(score) else None)
    return entry


def write_coco(project: Project, options: ExportOptions, format_name: str,
               segmentation: Segmentation) -> ExportSummary:
    """Write one COCO instances file; see the module docstring for its content."""
    summary = ExportSummary(format=format_name)
    labels = labels_by_id(project)
    target = coco_path(options.out)
    image_files = ImagesOut(project, options, target.parent / IMAGES_FOLDER, summary)
    image_entries: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8", dir=_temp_dir(target)) as body:
            first = True
            for work in walk(project, options, summary, labels):
                if not image_files.put(work.image):
                    continue  # unreadable now: neither image nor masks
                image_entries.append({"id": work.image.id, "file_name": image_name(work.image),
                                      "width": work.width, "height": work.height})
                for layer, pixels, box in zip(work.layers, work.areas, work.boxes, strict=True):
                    made = segmentation(layer, pixels)
                    if made is None:
                        summary.skipped_annotations["no polygon with 3 or more points"] += 1
                        continue
                    entry = annotation_entry(layer, *made, box)
                    body.write(("" if first else ",\n") + _dump(entry))
                    first = False
                    summary.annotations += 1
            if summary.cancelled:
                image_files.discard()
                return summary
            summary.images = len(image_entries)
            body.seek(0)
            with atomic_file(target) as stream:
                _write_document(stream, body, image_entries, labels, project)
    except BaseException:  # a failed or cancelled COCO export leaves no images
        image_files.discard()
        raise
    summary.files.append(target)
    return summary


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Compact, standard JSON (no ``NaN``/``Infinity``); made once (``json.dumps`` with
options builds an encoder per call)."""


def _dump(value: Any) -> str:
    return _ENCODER.encode(value)


def _temp_dir(target: Path) -> Path:
    make_folder(target.parent)
    return target.parent


def _write_document(stream: IO[str], body: IO[str], image_entries: list[dict[str, Any]],
                    labels: dict[int, Label], project: Project) -> None:
    info = {
        "description": f"samdesk export of {project.folder.name}",
        "version": samdesk.__version__,
        "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    categories = [category(lab) for lab in labels.values()]
    stream.write('{"info":' + _dump(info) + ',\n"licenses":[],\n')
    stream.write('"categories":' + _dump(categories) + ",\n")
    stream.write('"images":[\n' + ",\n".join(_dump(e) for e in image_entries))
    stream.write('],\n"annotations":[\n')
    shutil.copyfileobj(body, stream)
    stream.write("]}\n")


def export_coco_rle(project: Project, options: ExportOptions) -> ExportSummary:
    """COCO instances JSON with compressed-RLE segmentations (exact masks, holes kept)."""
    return write_coco(project, options, "coco-rle", rle_segmentation)


def export_coco_polygon(project: Project, options: ExportOptions) -> ExportSummary:
    """COCO instances JSON with polygon segmentations (every part kept, holes filled)."""
    return write_coco(project, options, "coco-polygon", polygon_segmentation)
