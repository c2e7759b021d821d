"""Import mask PNGs into a project, as one undo step (:mod:`samdesk.export.png_read` says
which PNGs are of which kind).

* **samdesk png-instance**: each instance index of the sidecar becomes one mask
  of its label: exactly the pixels the PNG gives that index. Where masks
  overlapped, the PNG kept only the front one's pixels, so a mask behind
  comes back without them; one hidden entirely is reported, not imported.
* **VOC instances** (SegmentationObject with SegmentationClass): one mask per
  object index, with the class most of its pixels have.
* **semantic** (VOC SegmentationClass, samdesk png-semantic, labelme2voc):
  one mask per class present in the image (all its pixels, separate regions
  included: a semantic PNG does not say which pixels are one object).
  0 is background and 255 ignored.

A PNG's image is the project image with its path under the folder, suffix
aside (``photos/cat.png`` -> ``photos/cat.jpg``; ``a.jpg.png`` -> ``a.jpg``),
or named by the sidecar's ``image``. A PNG must have the image's upright size.
Class names become labels by name (existing ones reused); the names of the
folder's table (``labels.txt``...) are made first, in value order, classes
without a mask included, and into a project without labels value *v* becomes
label id *v* (the summary prints the mapping). A new label takes the table's colour, else the PNG's
palette colour. A mask already on the image with the same label and pixels is not
added again. Each PNG, index or class that cannot be imported is reported and
the rest imported.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from samdesk import masks
from samdesk.export.coco_import import ImageMatcher, ImportSummary, printable
from samdesk.export.png_read import (
    IGNORE,
    MASK_MODES,
    MAX_VALUES,
    SKIPPED_NAMES,
    MaskPng,
    PngFolder,
    is_png_masks,
    read_folder,
)
from samdesk.export.stems import StemMatcher
from samdesk.project_edits import label_name_problem

if TYPE_CHECKING:
    from samdesk.annotations import ImageRecord
    from samdesk.project import Project

Progress = Callable[[int, int], None]
Planned = list[tuple[np.ndarray, str, str | None]]
"""Masks of one PNG: ``(bool (H, W) mask, label name, colour or None)``."""

_COLOR = re.compile("#[0-9a-fA-F]{6}")

__all__ = ["import_png", "is_png_masks"]


class _Skip(Exception):
    """This PNG cannot be imported; the message says why."""


def import_png(project: Project, source: str | Path,
               progress: Progress | None = None) -> ImportSummary:
    """Import the mask PNGs under ``source``; see the module docstring.
    ``progress(done, total)`` runs over the PNGs."""
    folder = read_folder(Path(source))
    summary = ImportSummary(source=Path(source))
    if folder.pngs and folder.names_from is None and any(
            p.kind == "semantic" for p in folder.pngs):
        summary.problems.append((printable(str(source)), "no labels.txt, class_names.txt or "
                                 "labels.json names the classes: value v becomes label "
                                 "class_v"))
    records = project.images()
    stems, exact = StemMatcher(records), ImageMatcher(records)
    matched: list[tuple[MaskPng, ImageRecord]] = []
    for png in folder.pngs:
        record, reason = _image_of(png, stems, exact)
        if record is None:
            summary.problems.append((printable(png.name), reason))
        else:
            matched.append((png, record))
    if not matched:
        summary.nothing_matched = _nothing_matched(folder, records, source)
        return summary
    with project.batch(f"Import {summary.source.name}"):
        label_ids: dict[str, int | None] = {}
        keep = not project.labels()
        for value, name in sorted(folder.names.items()):  # the table's order, empty ones too
            if name.strip() and name.strip() not in SKIPPED_NAMES:
                made = len(summary.labels_created)
                label_id = _label_id(project, name, folder.colors.get(value), label_ids,
                                     summary, value if keep and value >= 1 else None)
                if label_id is not None:
                    how = "new" if len(summary.labels_created) > made else "existing"
                    summary.categories.append((value, label_id, name.strip(), how))
        for done, (png, record) in enumerate(matched, start=1):
            try:
                planned = _masks_of(png, project.ensure_image_info(record.id), folder,
                                    summary)
            except _Skip as why:
                summary.problems.append((printable(png.name), str(why)))
            else:
                summary.images_matched += 1
                _add(project, record.id, planned, label_ids, summary)
            if progress is not None:
                progress(done, len(matched))
    return summary


def _image_of(png: MaskPng, stems: StemMatcher,
              exact: ImageMatcher) -> tuple[ImageRecord | None, str]:
    if png.sidecar is not None:
        named = _sidecar(png).get("image")
        if isinstance(named, str):
            record, _ = exact.match(named)
            if record is not None:
                return record, ""
    return stems.match(png.name)


def _nothing_matched(folder: PngFolder, records: list[ImageRecord], source: str | Path) -> str:
    where = printable(str(source))
    if not folder.pngs:
        return f"{where}: no mask PNG (one channel: palette or gray) found, nothing to import"
    theirs = printable(repr(folder.pngs[0].name))
    if not records:
        return (f"none of the {len(folder.pngs)} PNGs of {where} (e.g. {theirs}) has its "
                "image in the project: the project folder has no images")
    return (f"none of the {len(folder.pngs)} PNGs of {where} (e.g. {theirs}) names an image "
            f"of the project (e.g. {printable(repr(records[0].path))}); a PNG's path under "
            "the folder, suffix aside, must be the image's path in the project or end with it")


def _sidecar(png: MaskPng) -> dict[str, Any]:
    assert png.sidecar is not None
    try:
        with open(png.sidecar, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, ValueError, RecursionError) as exc:
        raise _Skip(f"{png.sidecar.name}: cannot be read: {exc}") from exc
    return document if isinstance(document, dict) else {}


def _pixels(path: Path, record: ImageRecord) -> tuple[np.ndarray, Image.Image]:
    """The PNG's values ``(H, W)`` (ints) and the opened image; its size checked."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _Skip(f"cannot be read: {exc}") from exc
    if image.mode not in MASK_MODES:
        raise _Skip(f"a {image.mode} picture, not a mask PNG (one channel: palette or gray)")
    if record.width is None or record.height is None:
        raise _Skip(f"its image {record.path} cannot be read: {record.error or 'unknown'}")
    if image.size != (record.width, record.height):
        turned = " (EXIF orientation?)" if image.size == (record.height, record.width) else ""
        raise _Skip(f"size {image.size[0]}x{image.size[1]}, but {record.path} is "
                    f"{record.width}x{record.height} upright{turned}")
    return np.asarray(image).astype(np.int64), image


def _masks_of(png: MaskPng, record: ImageRecord, folder: PngFolder,
              summary: ImportSummary) -> Planned:
    values, image = _pixels(png.path, record)
    if png.kind == "instance":
        return _instances(png, values, summary)
    if png.kind == "voc-instance":
        return _voc_instances(png, values, record, folder, summary)
    palette = image.getpalette() if image.mode == "P" else None
    present = np.unique(values).tolist()
    if len(present) > MAX_VALUES:
        raise _Skip(f"holds {len(present)} different values: a grayscale picture, not a "
                    "class mask")
    planned: Planned = []
    for value in present:
        if value in (0, IGNORE):
            continue
        name = folder.names.get(value) if folder.names else f"class_{value}"
        if name is None or name.strip() in SKIPPED_NAMES:
            summary.problems.append((printable(png.name), f"value {value} has pixels but no "
                                     f"class name in {folder.names_from}; not imported"))
            continue
        color = folder.colors.get(value) or _palette_color(palette, value)
        planned.append((values == value, name, color))
    return planned


def _palette_color(palette: list[int] | None, value: int) -> str | None:
    if palette is None or len(palette) < 3 * value + 3:
        return None
    r, g, b = palette[3 * value:3 * value + 3]
    return f"#{r:02x}{g:02x}{b:02x}" if (r, g, b) != (0, 0, 0) else None


def _instances(png: MaskPng, values: np.ndarray, summary: ImportSummary) -> Planned:
    rows = _sidecar(png).get("instances")
    planned: Planned = []
    listed: set[int] = set()
    for row in rows if isinstance(rows, list) else []:
        index = row.get("index") if isinstance(row, dict) else None
        if not isinstance(index, int) or isinstance(index, bool):
            summary.problems.append((printable(png.name), f"instance {row!r}: no index"))
            continue
        listed.add(index)
        name = row.get("label")
        mask = values == index
        where = f"{png.name} instance {index}"
        if not isinstance(name, str) or not name.strip():
            summary.problems.append((printable(where), "no label; not imported"))
        elif not mask.any():
            summary.problems.append((printable(where), "hidden entirely by masks in front of "
                                     "it (the PNG holds none of its pixels); not imported"))
        else:
            planned.append((mask, name, None))
    stray = sorted(set(np.unique(values).tolist()) - listed - {0})
    if stray:
        summary.problems.append((printable(png.name), f"values {stray[:5]} are not in "
                                 f"{png.sidecar.name if png.sidecar else 'the sidecar'}; "
                                 "not imported"))
    return planned


def _voc_instances(png: MaskPng, values: np.ndarray, record: ImageRecord,
                   folder: PngFolder, summary: ImportSummary) -> Planned:
    assert png.classes is not None
    if not png.classes.is_file():
        raise _Skip(f"no SegmentationClass/{png.name} gives its objects' classes")
    classes, _ = _pixels(png.classes, record)
    planned: Planned = []
    for index in np.unique(values).tolist():
        if index in (0, IGNORE):
            continue
        mask = values == index
        counts = Counter(v for v in classes[mask].tolist() if v not in (0, IGNORE))
        value = counts.most_common(1)[0][0] if counts else None
        name = folder.names.get(value) if value is not None else None
        if name is None:
            summary.problems.append((printable(f"{png.name} object {index}"),
                                     "no class in SegmentationClass; not imported"))
        else:
            planned.append((mask, name, folder.colors.get(value)))
    return planned


def _add(project: Project, image_id: int, planned: Planned, label_ids: dict[str, int | None],
         summary: ImportSummary) -> None:
    existing = {(a.label_id, masks.normalize(a.rle)["counts"])
                for a in project.annotations(image_id)}
    for mask, name, color in planned:
        label_id = _label_id(project, name, color, label_ids, summary)
        if label_id is None:
            continue
        rle = masks.encode(mask)
        if (label_id, rle["counts"]) in existing:
            summary.duplicates_skipped += 1
            continue
        existing.add((label_id, rle["counts"]))
        project.add_annotation(image_id, rle, label_id,
                               prompts={"imported_from": summary.source.name})
        summary.annotations_added += 1


def _label_id(project: Project, name: str, color: str | None, label_ids: dict[str, int | None],
              summary: ImportSummary, wanted: int | None = None) -> int | None:
    """The id of the label named ``name``, made when there is none (with id ``wanted``
    when that is free); None when the name cannot be a label (reported once)."""
    name = name.strip()
    if name not in label_ids:
        problem = "an empty name" if not name else label_name_problem(name)
        if problem is not None:
            summary.problems.append((f"label {printable(repr(name))}",
                                     f"{problem}; its masks are not imported"))
            label_ids[name] = None
            return None
        label = project.label_by_name(name)
        if label is None:
            valid = color if color is not None and _COLOR.fullmatch(color) else None
            label = project.add_label(name, color=valid, label_id=wanted)
            summary.labels_created.append(name)
        label_ids[name] = label.id
    return label_ids[name]
