"""Import labelme JSON files (labelme, X-AnyLabeling, ISAT) into a project.

``source`` is one labelme JSON or a folder: every ``*.json`` under it is
read (subfolders too; hidden folders, ``.samdesk`` and samdesk's export
folders are left out). All of it goes in as one transaction and one undo
step.

* **Image.** ``imagePath`` is relative to the JSON (a ``\\`` read as a
  separator, as labelme does). The file it names, when it is an image of
  the project; else, joined to the JSON's folder within the imported
  folder, or as it is, the longest tail of the path naming exactly one
  project image (as the COCO importer matches ``file_name``); else an
  image beside the JSON with its stem (labelme's own layout). ``imageData``
  is never needed. When ``imageWidth``/``imageHeight`` are given and differ
  from the image's upright size, the file's shapes are not imported.
* **Shapes** (see :mod:`samdesk.export.labelme_shapes`): polygons,
  circles, oriented rectangles and mask shapes become masks; shapes of
  one label that share a ``group_id`` are one object (one mask), as
  labelme counts them. Rectangles become pending boxes with their label.
  Point and line shapes are skipped and counted.
* **Labels** by name: an existing label is reused, a new name becomes a
  new label (in the order the files name them).
* A mask already on the image with the same label and pixels, or a box
  already pending there, is not added again: importing twice changes
  nothing.

One bad file or shape is reported (``photos/a.json: shapes[3] (polygon
'cat'): a polygon needs at least 3 points, got 2``) and the rest imported.
When no file names an image of the project, nothing is written and
:attr:`ImportSummary.nothing_matched` says why.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from samdesk import masks
from samdesk.annotations import RLE, ImageRecord
from samdesk.export.coco_import import (
    ImageMatcher,
    ImportSummary,
    _free_color,
    printable,
)
from samdesk.export.detect import json_files
from samdesk.export.labelme_shapes import ShapeProblem, ShapeSkipped, read_shape, shape_kind
from samdesk.imagefiles import is_image_name
from samdesk.project_boxes import box_problem

if TYPE_CHECKING:
    from samdesk.project import Project

Progress = Callable[[int, int], None]


@dataclass
class LabelmeImportSummary(ImportSummary):
    """:class:`ImportSummary` plus the files read and the shapes skipped by kind;
    ``boxes_added`` counts rectangles made pending boxes, ``boxes_skipped`` those
    already pending (or already made into masks)."""

    files_read: int = 0
    skipped_shapes: Counter[str] = field(default_factory=Counter)

    BOXES: ClassVar[str] = "rectangles"

    def _first_line(self) -> str:
        return (f"{printable(self.source.name)}: {self.files_read} labelme files, "
                f"{self.images_matched} images matched, {self.annotations_added} masks "
                f"and {self.boxes_added} pending boxes added, "
                f"{len(self.labels_created)} new labels")

    def _format_lines(self) -> list[str]:
        return [f"skipped {count} {kind} shapes: they have no area"
                for kind, count in sorted(self.skipped_shapes.items())]


@dataclass
class _FilePlan:
    """What one JSON adds to one image: masks ``(label, rle)`` and boxes ``(label, box)``."""

    image: ImageRecord
    source: str
    masks: list[tuple[str, RLE]] = field(default_factory=list)
    boxes: list[tuple[str, tuple[float, float, float, float]]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # in the order the file names them


def labelme_beside_images(project: Project, peek: int = 65536) -> int:
    """How many images of ``project`` have a labelme JSON beside them (``a.jpg`` and
    ``a.json`` in one folder, the JSON naming ``"shapes"`` in its first ``peek`` bytes,
    where labelme and X-AnyLabeling write it). One folder listing per folder."""
    by_folder: dict[str, list[str]] = {}
    for record in project.images():
        folder, _, name = record.path.rpartition("/")
        by_folder.setdefault(folder, []).append(name)
    count = 0
    for folder, names in by_folder.items():
        place = project.folder / folder if folder else project.folder
        try:
            jsons = {entry.name for entry in os.scandir(place)
                     if entry.name.lower().endswith(".json")}
        except OSError:
            continue
        for name in names:
            candidate = f"{PurePosixPath(name).stem}.json"
            if candidate in jsons and _names_shapes(place / candidate, peek):
                count += 1
    return count


def _names_shapes(path: Path, peek: int) -> bool:
    try:
        with open(path, "rb") as stream:
            return b'"shapes"' in stream.read(peek)
    except OSError:
        return False


def labelme_files(source: Path) -> list[Path]:
    """The JSON files an import of ``source`` reads."""
    return [source] if source.is_file() else list(json_files(source))


def import_labelme(project: Project, source: str | Path,
                   progress: Progress | None = None) -> LabelmeImportSummary:
    """Import a labelme JSON or a folder of them; see the module docstring.

    ``progress(done, total)`` counts files read.
    """
    source = Path(source)
    summary = LabelmeImportSummary(source=source)
    files = labelme_files(source)
    matcher = ImageMatcher(project.images())
    plans: list[_FilePlan] = []
    images: set[int] = set()
    for done, path in enumerate(files, start=1):
        item = _item(path, source)
        plan = _plan_file(project, matcher, path, item, summary)
        if plan is not None:
            plans.append(plan)
            images.add(plan.image.id)
        if progress is not None:
            progress(done, len(files))
    summary.images_matched = len(images)
    if not plans:
        summary.nothing_matched = _nothing_matched(project, source, summary)
        return summary
    with project.batch(f"Import {source.name}"):
        _apply(project, plans, summary)
    return summary


def _item(path: Path, source: Path) -> str:
    """How a file is named in messages: relative to the source folder."""
    if source.is_dir():
        try:
            return path.relative_to(source).as_posix()
        except ValueError:
            pass
    return path.name


def _nothing_matched(project: Project, source: Path, summary: LabelmeImportSummary) -> str:
    name = printable(str(source))
    if summary.files_read == 0:
        return f"{name}: no labelme JSON file (an object with 'shapes') found"
    if not project.images():
        return f"{name}: none of its images is in the project: the project folder has no images"
    unmatched = next((why for _, why in summary.problems if "not in the project" in why), None)
    example = f" (e.g. {unmatched})" if unmatched else ""
    return (f"{name}: none of the images of its {summary.files_read} labelme files is in the "
            f"project{example}; imagePath must lead to an image of the project, or end with "
            "a file name found in it")


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return None, "not UTF-8 text (is it a JSON file?)"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except (ValueError, RecursionError):
        return None, "not valid JSON"
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        return None, "not a labelme file (no 'shapes' list); skipped"
    return document, None


def _plan_file(project: Project, matcher: ImageMatcher, path: Path, item: str,
               summary: LabelmeImportSummary) -> _FilePlan | None:
    """Read one JSON into masks and boxes for its image; problems go into ``summary``."""
    document, problem = _read(path)
    if document is None:
        summary.problems.append((item, problem or "cannot be read"))
        return None
    summary.files_read += 1
    record, reason = _find_image(project, matcher, path, item, document.get("imagePath"))
    if record is None:
        summary.problems.append((item, reason))
        return None
    record = project.ensure_image_info(record.id)
    if record.width is None or record.height is None:
        summary.problems.append((item, f"image {record.path} cannot be read: "
                                       f"{record.error or 'unknown error'}"))
        return None
    declared = (document.get("imageWidth"), document.get("imageHeight"))
    if all(isinstance(v, int) for v in declared) and declared != (record.width, record.height):
        hint = " (EXIF orientation?)" if declared == (record.height, record.width) else ""
        summary.problems.append((item, f"size {declared[0]}x{declared[1]} in the JSON, but "
                                       f"{record.path} is {record.width}x{record.height} "
                                       f"upright{hint}; its shapes were not imported"))
        return None
    plan = _FilePlan(record, path.name)
    groups: dict[tuple[str, int], int] = {}
    pieces: list[tuple[str, np.ndarray]] = []
    for index, shape in enumerate(document["shapes"]):
        try:
            read = read_shape(shape, record.height, record.width)
        except ShapeSkipped as skipped:
            summary.skipped_shapes[skipped.args[0]] += 1
            continue
        except ShapeProblem as exc:
            label = shape.get("label") if isinstance(shape, dict) else None
            named = f" {label!r:.40}" if isinstance(label, str) else ""
            summary.problems.append((f"{item}: shapes[{index}] ({shape_kind(shape)}{named})",
                                     str(exc)))
            continue
        if read.label not in plan.labels:
            plan.labels.append(read.label)
        if read.box is not None:
            plan.boxes.append((read.label, read.box))
            continue
        assert read.mask is not None
        key = (read.label, read.group_id) if read.group_id is not None else None
        if key is not None and key in groups:
            pieces[groups[key]][1][read.mask] = True  # one object in several shapes
            continue
        if key is not None:
            groups[key] = len(pieces)
        pieces.append((read.label, read.mask.copy()))
    plan.masks = [(label, masks.encode(mask)) for label, mask in pieces]
    return plan


def _find_image(project: Project, matcher: ImageMatcher, path: Path, item: str,
                image_path: Any) -> tuple[ImageRecord | None, str]:
    """The project image a labelme file is about, or None and why not.

    ``item`` is the JSON's path relative to the imported folder: an export's
    ``OUT/sub/b.json`` naming ``b.png`` beside it means the project's
    ``sub/b.png`` even when another folder has a ``b.png`` too."""
    named = ""
    if isinstance(image_path, str) and image_path.strip():
        named = PureWindowsPath(image_path.strip()).as_posix()  # labelme reads it so too
        beside = Path(os.path.normpath(path.parent.absolute() / named))
        try:
            relative = beside.relative_to(project.folder.absolute()).as_posix()
        except ValueError:
            relative = None
        if relative is not None:
            record = project.image_by_path(relative)
            if record is not None:
                return record, ""
        within = posixpath.normpath(posixpath.join(posixpath.dirname(item), named))
        for name in (within, named):
            record, _ = matcher.match(name)
            if record is not None:
                return record, ""
    record = _image_beside(project, path)
    if record is not None:
        return record, ""
    if named:
        return None, f"imagePath {printable(repr(named))} is not in the project"
    return None, "no imagePath, and no image beside it with its name is in the project"


def _image_beside(project: Project, path: Path) -> ImageRecord | None:
    """An image of the project in the JSON's folder with the JSON's stem (``a.json`` ->
    ``a.jpg``), when exactly one has it."""
    try:
        folder = path.parent.absolute().relative_to(project.folder.absolute()).as_posix()
    except ValueError:
        return None
    prefix = "" if folder == "." else folder + "/"
    stem = path.stem
    found = [r for r in project.images()
             if r.path.startswith(prefix) and "/" not in r.path[len(prefix):]
             and PurePosixPath(r.path).stem == stem and is_image_name(r.path)]
    return found[0] if len(found) == 1 else None


def _apply(project: Project, plans: list[_FilePlan], summary: LabelmeImportSummary) -> None:
    """Create labels, add masks and pending boxes (inside the caller's batch)."""
    label_ids: dict[str, int] = {}

    def label_id(name: str) -> int:
        if name not in label_ids:
            label = project.label_by_name(name)
            if label is None:
                label = project.add_label(name, color=_free_color(project))
                summary.labels_created.append(name)
            label_ids[name] = label.id
        return label_ids[name]

    existing: dict[int, set[tuple[int | None, str]]] = {}
    for plan in plans:
        image_id = plan.image.id
        for name in plan.labels:  # new labels get ids in the file's order
            label_id(name)
        if image_id not in existing:
            existing[image_id] = {(a.label_id, masks.normalize(a.rle)["counts"])
                                  for a in project.annotations(image_id)}
        for name, rle in plan.masks:
            key = (label_id(name), rle["counts"])
            if key in existing[image_id]:
                summary.duplicates_skipped += 1
                continue
            existing[image_id].add(key)
            project.add_annotation(image_id, rle, key[0],
                                   prompts={"imported_from": plan.source})
            summary.annotations_added += 1
        boxes = []
        for name, box in plan.boxes:
            problem = box_problem(box, plan.image.width, plan.image.height)
            if problem is not None:
                summary.problems.append((f"{plan.source} ({plan.image.path})", problem))
            else:
                boxes.append((box, label_id(name)))
        if boxes:
            added = project.add_pending_boxes(image_id, boxes, plan.source)
            summary.boxes_added += len(added)
            summary.boxes_skipped += len(boxes) - len(added)
