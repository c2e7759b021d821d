"""PNG mask exports: one PNG per image, at the image's relative path under ``out``.

``photos/cat.jpg`` becomes ``OUT/photos/cat.png``; the image itself is written
upright to ``OUT/images/photos/cat.jpg`` (``ExportOptions.images``, see
:mod:`samdesk.export.images_out`). When two images would
land on the same PNG (``a.jpg`` and ``a.png`` side by side), both keep their
extension instead: ``a.jpg.png`` and ``a.png.png``. Every exported image
gets a PNG, also one with no masks (all background). Masks are painted back
to front, so where layers overlap the front-most one wins.

* ``png-instance``: 16-bit grayscale; pixel = instance index 1..K in the
  image's back-to-front order, 0 = background. A JSON sidecar next to each PNG
  (``cat.json``) maps each index to its annotation id, label id and name and
  the number of pixels it still shows.
* ``png-semantic``: 8-bit palette PNG; pixel = label id, 0 = background, the
  palette entry of each label id is the label's colour. ``labels.txt`` (line
  *i* names pixel value *i*) and ``labels.json`` sit at the top of ``out``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageRecord, ImageStatus, Label
from samdesk.export.base import (
    ExportError,
    ExportOptions,
    ExportSummary,
    ImageWork,
    atomic_file,
    labels_by_id,
    make_folder,
    mark_export_folder,
    walk,
)
from samdesk.export.images_out import IMAGES_FOLDER, ImagesOut
from samdesk.imagefiles import display_path

if TYPE_CHECKING:
    from samdesk.project import Project

MAX_INSTANCES = 65535
MAX_SEMANTIC_ID = 255
BACKGROUND = "_background_"
UNUSED = "_unused_"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Painter = Callable[[ImageWork, Path, dict[int, Label], ExportSummary], None]


def png_names(records: list[ImageRecord]) -> dict[int, str]:
    """Image id -> relative PNG path (``/`` separators), with clashes resolved.

    Clashes are found ignoring case, as on Windows and macOS file systems.
    """
    wanted = {r.id: str(PurePosixPath(r.path).with_suffix(".png")) for r in records}
    clashes = Counter(name.lower() for name in wanted.values())
    return {r.id: wanted[r.id] if clashes[wanted[r.id].lower()] == 1 else f"{r.path}.png"
            for r in records}


def hex_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``."""
    text = color.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def _save_png(image: Image.Image, path: Path) -> None:
    with atomic_file(path, "wb", durable=False) as stream:
        image.save(stream, format="PNG", optimize=False)


def _save_json(value: Any, path: Path) -> None:
    # No indent: json's C encoder is used only without it (sidecars add up).
    with atomic_file(path, durable=False) as stream:
        stream.write(json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                allow_nan=False) + "\n")


def paint_instances(work: ImageWork) -> np.ndarray:
    """``uint16`` (H, W): pixel = 1-based index of the front-most layer there, 0 = none."""
    if len(work.layers) > MAX_INSTANCES:
        raise ExportError(f"{work.image.path}: {len(work.layers)} masks; "
                          f"png-instance holds at most {MAX_INSTANCES} per image")
    canvas = np.zeros((work.height, work.width), dtype=np.uint16)
    for index, layer in enumerate(work.layers, start=1):
        canvas[masks.decode(layer.rle)] = index
    return canvas


def paint_semantic(work: ImageWork) -> np.ndarray:
    """``uint8`` (H, W): pixel = label id of the front-most layer there, 0 = none."""
    canvas = np.zeros((work.height, work.width), dtype=np.uint8)
    for layer in work.layers:
        assert layer.label_id is not None  # walk() keeps labelled layers only
        canvas[masks.decode(layer.rle)] = layer.label_id
    return canvas


def _write_instance(work: ImageWork, target: Path, labels: dict[int, Label],
                    summary: ExportSummary) -> None:
    canvas = paint_instances(work)
    _save_png(Image.fromarray(canvas), target)
    shown = np.bincount(canvas.ravel(), minlength=len(work.layers) + 1)
    sidecar = {
        "image": display_path(work.image.path, one_line=False),
        "width": work.width,
        "height": work.height,
        "instances": [
            {"index": index, "annotation_id": layer.id, "label_id": layer.label_id,
             "label": labels[layer.label_id].name if layer.label_id in labels else None,
             "pixels": int(shown[index])}
            for index, layer in enumerate(work.layers, start=1)
        ],
    }
    sidecar_path = target.with_suffix(".json")
    _save_json(sidecar, sidecar_path)
    summary.files += [target, sidecar_path]


def _write_semantic(work: ImageWork, target: Path, labels: dict[int, Label],
                    summary: ExportSummary) -> None:
    canvas = paint_semantic(work)
    image = Image.frombytes("P", (work.width, work.height), canvas.tobytes())
    image.putpalette(palette(labels))
    _save_png(image, target)
    summary.files.append(target)


def palette(labels: dict[int, Label]) -> list[int]:
    """768 ints (256 RGB triples): black background, each label id its colour."""
    flat = [0] * (3 * 256)
    for label_id, label in labels.items():
        if 0 < label_id <= MAX_SEMANTIC_ID:
            flat[3 * label_id:3 * label_id + 3] = hex_rgb(label.color)
    return flat


def one_line(name: str) -> str:
    """``name`` with control characters and line breaks written as ``\\xNN`` / ``\\uNNNN``,
    so that ``labels.txt`` keeps one name a line (label names made before such
    names were refused may hold them)."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}" if ord(found[0]) < 256
                        else f"\\u{ord(found[0]):04x}", name)


def _label_table(labels: dict[int, Label]) -> list[dict[str, Any]]:
    top = max(labels, default=0)
    table = [{"id": 0, "name": BACKGROUND, "color": "#000000"}]
    for value in range(1, top + 1):
        label = labels.get(value)
        table.append({"id": value, "name": label.name if label else UNUSED,
                      "color": label.color if label else "#000000"})
    return table


def _write_label_files(out: Path, labels: dict[int, Label], summary: ExportSummary) -> None:
    table = _label_table(labels)
    txt = out / "labels.txt"
    with atomic_file(txt) as stream:
        stream.write("".join(f"{one_line(row['name'])}\n" for row in table))
    _save_json(table, out / "labels.json")
    summary.files += [txt, out / "labels.json"]


def write_pngs(project: Project, options: ExportOptions, format_name: str,
               painter: Painter) -> ExportSummary:
    """Walk the images and write one PNG (and whatever ``painter`` adds) for each."""
    summary = ExportSummary(format=format_name)
    labels = labels_by_id(project)
    out = Path(options.out)
    status = ImageStatus.DONE if options.only_done else None
    names = png_names(project.images(status))
    ours = {"labels.txt", "labels.json", *names.values(),
            *(str(PurePosixPath(name).with_suffix(".json")) for name in names.values())}
    image_files = ImagesOut(project, options, out / IMAGES_FOLDER, summary, ours)
    make_folder(out)
    mark_export_folder(out)  # also an existing folder: the project scan skips it
    _write_label_files(out, labels, summary)
    for work in walk(project, options, summary, labels):
        if not image_files.put(work.image):
            continue  # unreadable now: no mask PNG either
        painter(work, out / names[work.image.id], labels, summary)
        summary.images += 1
        summary.annotations += len(work.layers)
    return summary


def export_png_instance(project: Project, options: ExportOptions) -> ExportSummary:
    """16-bit instance-index PNGs with a JSON sidecar per image."""
    return write_pngs(project, options, "png-instance", _write_instance)


def export_png_semantic(project: Project, options: ExportOptions) -> ExportSummary:
    """8-bit palette PNGs of label ids, with labels.txt and labels.json."""
    too_big = [lab for lab in project.labels() if lab.id > MAX_SEMANTIC_ID]
    if too_big:
        raise ExportError(f"label {too_big[0].name!r} has id {too_big[0].id}; png-semantic "
                          f"holds ids up to {MAX_SEMANTIC_ID} (use png-instance or coco-rle)")
    return write_pngs(project, options, "png-semantic", _write_semantic)
