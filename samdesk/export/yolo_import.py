"""Import a YOLO segmentation (or detection) dataset into a project, as one undo step.

:mod:`samdesk.export.yolo_read` finds the class names and each label file
with the name it gives its image. The image is the project image whose
relative path, suffix aside, is that name (or ends with it:
:class:`~samdesk.export.stems.StemMatcher`).

* A line ``class x1 y1 x2 y2 ...`` (3 points or more) is a polygon in
  coordinates divided by the image's width and height; it becomes one mask,
  rasterised at the project image's upright size (pixel ``(c, r)`` covers
  ``[c, c+1) x [r, r+1)``, as for COCO polygons). Coordinates up to 0.01
  outside ``0..1`` are clipped, as Ultralytics allows.
* A line ``class cx cy w h`` is a detection box: it becomes a pending box on
  its image (a segmenter makes its mask later).
* Every class of ``names`` becomes a label of that name, in class order (an
  existing label of that name is used); a project with no labels gets label
  ids ``class + 1``. The summary prints the mapping.
* A mask already on the image with the same label and pixels is not added
  again: importing twice changes nothing.

Each bad line is reported (``labels/a.txt line 3: ...``) and the rest is
imported; so is a dataset image that is in the project under no name, or
whose size is the project image's turned a quarter (EXIF orientation).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from samdesk import masks
from samdesk.annotations import RLE
from samdesk.errors import SamdeskError
from samdesk.export.coco_import import ImportSummary, printable
from samdesk.export.stems import StemMatcher
from samdesk.export.yolo_read import (
    LabelSource,
    YoloDataset,
    find_yaml,
    load_yaml_or_none,
    read_dataset,
)
from samdesk.project_boxes import box_problem
from samdesk.project_edits import label_name_problem

if TYPE_CHECKING:
    from samdesk.project import Project

Progress = Callable[[int, int], None]
SLACK = 0.01
"""How far outside 0..1 a coordinate may lie (then clipped), as Ultralytics allows."""


def is_yolo(source: Path) -> bool:
    """A YOLO data YAML, a folder holding one, or a folder with ``labels/*.txt``."""
    if source.is_file():
        if source.suffix.lower() not in (".yaml", ".yml"):
            return False
        document = load_yaml_or_none(source)
        return isinstance(document, dict) and ("names" in document or "nc" in document)
    if not source.is_dir():
        return False
    if find_yaml(source) is not None:
        return True
    labels = source / "labels"
    return labels.is_dir() and next(labels.rglob("*.txt"), None) is not None


def parse_line(text: str, classes: int) -> tuple[int, np.ndarray]:
    """``(class, values)`` of one label line: values ``(N, 2)`` polygon points or ``(4,)``
    a ``cx cy w h`` box, normalised and clipped to 0..1. Raises ValueError saying why
    the line cannot be read."""
    tokens = text.split()
    try:
        number = float(tokens[0])
    except ValueError:
        raise ValueError(f"class {tokens[0]!r} is not a number") from None
    if not number.is_integer():
        raise ValueError(f"class {tokens[0]!r} is not a whole number")
    index = int(number)
    if not 0 <= index < classes:
        known = f"0..{classes - 1}" if classes else "none"
        raise ValueError(f"class {index} is not in the dataset's names (classes {known})")
    try:
        values = np.asarray([float(t) for t in tokens[1:]], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens[1:] if not _is_number(t))
        raise ValueError(f"coordinate {bad!r} is not a number") from None
    if not np.isfinite(values).all():
        raise ValueError("a coordinate is not a finite number")
    if len(values) == 4:
        if (values < -SLACK).any() or (values > 1 + SLACK).any():
            raise ValueError("box values must lie in 0..1 (normalised cx cy w h)")
        return index, np.clip(values, 0.0, 1.0)
    if len(values) % 2:
        raise ValueError(f"an odd number of coordinates ({len(values)})")
    if len(values) < 6:
        raise ValueError(f"a polygon needs 3 points or more, this line has {len(values) // 2}")
    if (values < -SLACK).any() or (values > 1 + SLACK).any():
        worst = values[np.argmax(np.abs(values - 0.5))]
        raise ValueError(f"coordinate {worst:g} lies outside 0..1 (YOLO coordinates are "
                         "divided by the image's width and height)")
    return index, np.clip(values, 0.0, 1.0).reshape(-1, 2)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def import_yolo(project: Project, source: str | Path,
                progress: Progress | None = None) -> ImportSummary:
    """Import the dataset at ``source``; see the module docstring. ``progress(done, total)``
    runs over the label files."""
    source = Path(source)
    dataset = read_dataset(source)  # a FormatError leaves the project untouched
    summary = ImportSummary(source=dataset.yaml_path or source)
    summary.problems += [(printable(item), reason) for item, reason in dataset.problems]
    matcher = StemMatcher(project.images())
    matched = []
    for item in dataset.sources:
        record, reason = matcher.match(item.name)
        if record is None:
            summary.problems.append((_shown(dataset, item), f"{item.name}: {reason}"))
        else:
            matched.append((item, record.id))
    if not matched:
        summary.nothing_matched = _nothing_matched(project, dataset)
        return summary
    with project.batch(f"Import {summary.source.name}"):
        label_ids = _labels(project, dataset, summary)
        existing: dict[int, set[tuple[int, str]]] = {}
        boxes: dict[int, list[tuple[tuple[float, float, float, float], int]]] = defaultdict(list)
        images: set[int] = set()
        for done, (item, image_id) in enumerate(matched, start=1):
            if _import_file(project, dataset, item, image_id, label_ids, summary,
                            existing, boxes):
                images.add(image_id)
            if progress is not None:
                progress(done, len(matched))
        for image_id, pairs in boxes.items():
            added = project.add_pending_boxes(image_id, pairs, summary.source.name)
            summary.boxes_added += len(added)
            summary.boxes_skipped += len(pairs) - len(added)
        summary.images_matched = len(images)
    return summary


def _shown(dataset: YoloDataset, item: LabelSource) -> str:
    try:
        return item.label.relative_to(dataset.root).as_posix()
    except ValueError:
        return str(item.label)


def _nothing_matched(project: Project, dataset: YoloDataset) -> str:
    where = printable(str(dataset.yaml_path or dataset.root))
    if not dataset.sources:
        return (f"{where}: no label files found (labels/…/*.txt beside images/…), so there "
                "is nothing to import")
    records = project.images()
    theirs = printable(repr(dataset.sources[0].name))
    if not records:
        return f"none of the {len(dataset.sources)} label files of {where} (e.g. {theirs}) " \
               "has its image in the project: the project folder has no images"
    return (f"none of the {len(dataset.sources)} label files of {where} (e.g. {theirs}) "
            f"names an image of the project (e.g. {printable(repr(records[0].path))}); the "
            "image's path under images/, suffix aside, must be its path in the project "
            "or end with a name found in it")


def _labels(project: Project, dataset: YoloDataset, summary: ImportSummary) -> list[int | None]:
    """Label id of each class index (None: the class cannot be a label), creating
    labels in class order: into a project without labels, class ``c`` gets label id
    ``c + 1``. The mapping goes into ``summary.categories``."""
    keep = not project.labels()
    out: list[int | None] = []
    made: set[str] = set()
    for index, name in enumerate(dataset.names):
        name = name.strip()
        problem = "an empty name" if not name else label_name_problem(name)
        if problem is not None:
            summary.problems.append((f"class {index}", f"{problem}; its masks are not imported"))
            out.append(None)
            continue
        label = project.label_by_name(name)
        if label is None:
            label = project.add_label(name, label_id=index + 1 if keep else None)
            summary.labels_created.append(name)
            made.add(name)
            how = "new"
        else:
            how = "same name" if name in made else "existing"
        summary.categories.append((index, label.id, name, how))
        out.append(label.id)
    return out


def _import_file(project: Project, dataset: YoloDataset, item: LabelSource, image_id: int,
                 label_ids: list[int | None], summary: ImportSummary,
                 existing: dict[int, set[tuple[int, str]]],
                 boxes: dict[int, list[tuple[tuple[float, float, float, float], int]]]) -> bool:
    """Add the masks of one label file to its image; False when the file cannot be used."""
    shown = _shown(dataset, item)
    record = project.ensure_image_info(image_id)
    if record.width is None or record.height is None:
        summary.problems.append((shown, f"{record.path} cannot be read: "
                                 f"{record.error or 'unknown error'}"))
        return False
    width, height = record.width, record.height
    if item.image is not None and width != height:
        from samdesk import images

        try:
            theirs = images.read_size(item.image)
        except SamdeskError:
            theirs = None
        if theirs == (height, width):
            summary.problems.append((shown, f"the dataset's image is {height}x{width}, the "
                                     f"project's {width}x{height} upright (EXIF orientation?); "
                                     "not imported"))
            return False
    try:
        text = item.label.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        summary.problems.append((shown, f"cannot be read: {exc}"))
        return False
    if image_id not in existing:
        existing[image_id] = {(a.label_id, masks.normalize(a.rle)["counts"])
                              for a in project.annotations(image_id) if a.label_id is not None}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{shown} line {number}"
        try:
            index, values = parse_line(line, len(dataset.names))
        except ValueError as exc:
            summary.problems.append((where, str(exc)))
            continue
        label_id = label_ids[index]
        if label_id is None:
            continue  # its class was reported once
        if values.ndim == 1:
            cx, cy, w, h = values
            box = (float((cx - w / 2) * width), float((cy - h / 2) * height),
                   float((cx + w / 2) * width), float((cy + h / 2) * height))
            problem = box_problem(box, width, height)
            if problem is not None:
                summary.problems.append((where, problem))
            else:
                boxes[image_id].append((box, label_id))
            continue
        rle = _polygon_mask(values, width, height)
        if masks.is_empty(rle):
            summary.problems.append((where, "the polygon covers no pixel; not imported"))
            continue
        key = (label_id, rle["counts"])
        if key in existing[image_id]:
            summary.duplicates_skipped += 1
            continue
        existing[image_id].add(key)
        project.add_annotation(image_id, rle, label_id,
                               prompts={"imported_from": summary.source.name})
        summary.annotations_added += 1
    return True


def _polygon_mask(points: np.ndarray, width: int, height: int) -> RLE:
    """Normalised ``(N, 2)`` points as a mask of ``height`` x ``width`` pixels."""
    pixels = points * np.asarray([width, height], dtype=np.float64)
    return masks.from_polygons([pixels.ravel().tolist()], height, width)
