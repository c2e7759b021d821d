"""Import a COCO instances JSON into a project, in one transaction and one undo step.

* Images are matched by ``file_name`` (relative to the project folder, ``/``
  separators); failing that, with ``\\`` read as a separator too (Windows
  paths; a ``\\`` is a legal character of a Linux file name, so the name as
  it is comes first); failing that, by the longest unique tail of the path,
  down to the bare file name when only one project image has it.
* Every category becomes a label, also one with no mask (:func:`category_labels`):
  into a project without labels with the category's id, into one with labels
  by name (an existing label of that name is reused, its colour kept; a new
  name gets a new id). A new label takes the category's ``color``
  (``"#rrggbb"`` or ``[r, g, b]``) if it has one, else the next distinct colour.
  The summary lists the mapping, file id -> project id.
* Segmentations may be polygons, uncompressed RLE (list counts) or compressed
  RLE (str counts). ``score`` or ``attributes.score`` becomes the layer's score.
* Masks that share a ``track_id`` (samdesk's COCO export, or CVAT's
  ``attributes.track_id``) become one track, with the label of the first; a
  second mask of one track on one image is added in no track (a track holds
  one mask per image), and said so.
* A mask already on the image with the same label and pixels is not added
  again, so importing a file twice changes nothing.
* A box-only annotation (``segmentation`` missing or ``[]``, as CVAT,
  labelme2coco and Label Studio write detection boxes) becomes a pending box
  on its image, with its label (:mod:`samdesk.project_boxes`), its ``bbox``
  ``[x, y, width, height]`` taken as XYXY upright pixels; a segmenter turns it
  into a mask later (``samdesk batch --from-boxes``, or the window). A box
  already pending there, or already made into a mask, is not added again.

Problems that concern part of the file (an image not in the project, a size
that differs from the image's upright size, an annotation naming an unknown
image or category, a bad polygon or RLE, an empty mask, a box-only
annotation whose ``bbox`` is missing or has no area, a category whose name
holds a control character) are listed in the summary and the rest is
imported. A file that is not COCO as a whole raises FormatError before
anything is written. When no image of the file is in the project,
:attr:`ImportSummary.nothing_matched` says why (the names compared, an
example of each side), and nothing is written.
"""

from __future__ import annotations

import colorsys
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from samdesk import masks
from samdesk.annotations import RLE, ImageRecord
from samdesk.errorlog import shorten
from samdesk.export.coco_read import (
    CocoCategory,
    CocoFile,
    CocoImage,
    read_coco,
    segmentation_to_rle,
)
from samdesk.imagefiles import display_path
from samdesk.project_boxes import Box, box_problem
from samdesk.project_edits import PALETTE

if TYPE_CHECKING:
    from samdesk.project import Project

Progress = Callable[[int, int], None]
MAX_LINES = 20
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` for a line of output: control characters and undecodable bytes escaped."""
    return _UNPRINTABLE.sub(lambda found: ascii(found[0])[1:-1], text)


@dataclass
class ImportSummary:
    """What an import did: counts, new label names, and ``(item, reason)`` problems."""

    source: Path
    images_matched: int = 0
    annotations_added: int = 0
    duplicates_skipped: int = 0
    boxes_added: int = 0
    """Box-only annotations added as pending boxes (no mask yet)."""
    boxes_skipped: int = 0
    """Box-only annotations already pending on their image, or already made into masks."""
    labels_created: list[str] = field(default_factory=list)
    categories: list[tuple[int, int, str, str]] = field(default_factory=list)
    """``(file category id, project label id, name, how)`` for every category, in file
    order; ``how`` is "kept" (the file's id), "new", "existing" (a label of that name)
    or "same name" (another category of the file has its name)."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    nothing_matched: str | None = None
    """Set when no image of the file is in the project: why, in one line."""

    def lines(self) -> list[str]:
        """The summary as short lines for a person; long problem lists are cut."""
        out = [self._first_line()]
        if self.nothing_matched is not None:
            out.append(self.nothing_matched)
        out += self._format_lines()
        if self.duplicates_skipped:
            out.append(f"{self.duplicates_skipped} masks were already there and were not added")
        if self.boxes_added:
            out.append(f"{self.boxes_added} {self.BOXES} added as pending boxes (no mask yet): "
                       "'samdesk batch FOLDER --from-boxes' or G in the window makes their "
                       "masks")
        if self.boxes_skipped:
            out.append(f"{self.boxes_skipped} boxes were already there (pending or made into "
                       "masks) and were not added")
        out += [printable(f"{item}: {reason}") for item, reason in self.problems[:MAX_LINES]]
        if len(self.problems) > MAX_LINES:
            out.append(f"... and {len(self.problems) - MAX_LINES} more problems")
        return out

    BOXES: ClassVar[str] = "box-only annotations"
    """What the format's pending boxes were in the file, for the summary."""

    def _first_line(self) -> str:
        return (f"{printable(self.source.name)}: {self.images_matched} images matched, "
                f"{self.annotations_added} masks added, {len(self.labels_created)} new labels")

    def _format_lines(self) -> list[str]:
        """Lines only this format has (for COCO, the category mapping)."""
        return self._category_lines()

    def _category_lines(self) -> list[str]:
        """One line when every category kept its id; else the mapping, one line each."""
        if not self.categories:
            return []
        if all(file_id == label_id for file_id, label_id, _, _ in self.categories):
            named = ", ".join(f"{file_id} {name!r}" for file_id, _, name, _ in self.categories)
            return [printable(shorten(f"categories keep their ids: {named}", 300))]
        said = {"kept": "kept", "new": "new label", "existing": "existing label",
                "same name": "same name as another category"}
        out = ["categories, file id -> project id:"]
        out += [printable(f"  {file_id} -> {label_id} {name!r} ({said[how]})")
                for file_id, label_id, name, how in self.categories[:MAX_LINES]]
        if len(self.categories) > MAX_LINES:
            out.append(f"  ... and {len(self.categories) - MAX_LINES} more categories")
        return out


@dataclass(frozen=True)
class _Planned:
    """A mask to add (``rle``), or a pending box (``rle`` None, ``box`` XYXY pixels)."""

    image_id: int
    category_id: int
    rle: RLE | None
    score: float | None
    box: Box | None = None
    track_id: int | None = None  # the file's track id


class ImageMatcher:
    """Finds the project image a COCO ``file_name`` means."""

    def __init__(self, records: list[ImageRecord]) -> None:
        self._by_path = {r.path: r for r in records}
        self._by_name: dict[str, list[ImageRecord]] = defaultdict(list)
        for record in records:
            self._by_name[PurePosixPath(record.path).name].append(record)
        # Exports write the bytes of a name that is not UTF-8 as U+FFFD: found by that name.
        shown = [(display_path(r.path, one_line=False), r) for r in records]
        odd = Counter(name for name, r in shown if name != r.path)
        self._shown = {name: r for name, r in shown if odd[name] == 1}  # unambiguous only

    def match(self, file_name: str) -> tuple[ImageRecord | None, str]:
        """The image, or None and the reason none fits.

        The name is taken as it is first (``/`` separators: a ``\\`` may be
        part of a Linux file name); only when that finds nothing is ``\\``
        read as a separator too (a path written on Windows).
        """
        record, reason = self._match(file_name)
        if record is None and "\\" in file_name:
            record, other = self._match(file_name.replace("\\", "/"))
            if record is not None or reason == "not in the project":
                reason = other
        if record is None and "\ufffd" in file_name and file_name in self._shown:
            record, reason = self._shown[file_name], ""
        return record, reason

    def _match(self, file_name: str) -> tuple[ImageRecord | None, str]:
        parts = [p for p in PurePosixPath(file_name).parts if p not in ("/", ".")]
        if not parts:
            return None, "empty file_name"
        exact = self._by_path.get("/".join(parts))
        if exact is not None:
            return exact, ""
        candidates = self._by_name.get(parts[-1], [])
        for keep in range(len(parts), 0, -1):
            tail = "/".join(parts[-keep:])
            fits = [r for r in candidates if r.path == tail or r.path.endswith("/" + tail)]
            if len(fits) == 1:
                return fits[0], ""
            if len(fits) > 1 and keep == 1:
                return None, f"file name matches {len(fits)} images in the project"
        return None, "not in the project"


def import_coco(project: Project, json_path: str | Path,
                progress: Progress | None = None) -> ImportSummary:
    """Import ``json_path`` into ``project``; see the module docstring for the rules.

    ``progress(done, total)`` runs over the file's annotations twice: once
    while masks are made, once while they are stored.
    """
    coco = read_coco(json_path)  # a FormatError leaves the project untouched
    summary = ImportSummary(source=Path(json_path))
    summary.nothing_matched = _nothing_matched(project, coco)
    if summary.nothing_matched is not None:
        return summary
    report = _Progress(progress, 2 * len(coco.annotations))
    # One transaction: image sizes read now are stored with the masks, in one commit.
    with project.batch(f"Import {summary.source.name}"):
        planned = _plan(project, coco, summary, report)
        _apply(project, planned, coco, summary, report)
    return summary


def _nothing_matched(project: Project, coco: CocoFile) -> str | None:
    """Why no image of ``coco`` can be in ``project`` (None when one file name matches)."""
    records = project.images()
    name = printable(coco.path.name)
    if not coco.images:
        return f"{name} lists no images, so there is nothing to import"
    matcher = ImageMatcher(records)
    if any(matcher.match(image.file_name)[0] is not None for image in coco.images):
        return None
    theirs = printable(repr(coco.images[0].file_name))
    if not records:
        return (f"none of the {len(coco.images)} file names of {name} (e.g. {theirs}) is "
                f"in the project: the project folder has no images")
    ours = printable(repr(records[0].path))
    return (f"none of the {len(coco.images)} file names of {name} (e.g. {theirs}) matches "
            f"an image of the project (e.g. {ours}); file_name must be the path relative "
            "to the project folder, or end with a file name found in it")


@dataclass
class _Progress:
    callback: Progress | None
    total: int

    def __call__(self, done: int) -> None:
        if self.callback is not None:
            self.callback(done, self.total)


def _plan(project: Project, coco: CocoFile, summary: ImportSummary,
          report: _Progress) -> list[_Planned]:
    """Every mask to add, in file order; problems go into ``summary``."""
    sizes, unusable = _match_images(project, coco)
    summary.images_matched = len(sizes)
    category_ids = {c.id for c in coco.categories}
    unusable_categories = {c.id: c for c in coco.categories if c.problem is not None}
    file_names = {im.id: im.file_name for im in coco.images}
    planned: list[_Planned] = []
    not_imported: Counter[int] = Counter()
    of_unusable_category: Counter[int] = Counter()
    for done, ann in enumerate(coco.annotations, start=1):
        item = f"annotation {ann.id if ann.id is not None else f'#{ann.index}'}"
        file_name = None if ann.image_id is None else file_names.get(ann.image_id)
        where = f"{item} ({file_name})"
        if ann.problem is not None or ann.image_id is None or ann.category_id is None:
            summary.problems.append((where if file_name else item,
                                     ann.problem or "not an annotation"))
        elif ann.image_id not in file_names:
            summary.problems.append((item, f"image_id {ann.image_id} is not in the images list"))
        elif ann.category_id not in category_ids:
            summary.problems.append((where, f"category_id {ann.category_id} is not in categories"))
        elif ann.category_id in unusable_categories:
            of_unusable_category[ann.category_id] += 1
        elif ann.image_id not in sizes:
            not_imported[ann.image_id] += 1
        elif _box_only(ann.segmentation):
            image_id, height, width = sizes[ann.image_id]
            box, problem = _coco_box(ann.bbox, width, height)
            if box is None:
                summary.problems.append((where, problem))
            else:
                planned.append(_Planned(image_id, ann.category_id, None, ann.score, box))
        else:
            image_id, height, width = sizes[ann.image_id]
            try:
                rle = segmentation_to_rle(ann.segmentation, height, width)
            except (ValueError, OverflowError) as exc:
                summary.problems.append((where, str(exc) or "segmentation cannot be read"))
            else:
                if masks.is_empty(rle):
                    summary.problems.append((where, "empty mask, not imported"))
                else:
                    planned.append(_Planned(image_id, ann.category_id, rle, ann.score,
                                            track_id=ann.track_id))
        report(done)
    image_problems = []
    for coco_image_id, reason in unusable.items():
        count = not_imported[coco_image_id]
        lost = f" ({count} annotation{'s' if count != 1 else ''} not imported)" if count else ""
        image_problems.append((file_names[coco_image_id], reason + lost))
    for category_id, cat in unusable_categories.items():
        count = of_unusable_category[category_id]
        image_problems.append((f"category {category_id}", f"{cat.problem} ({count} annotation"
                                                           f"{'s' if count != 1 else ''} "
                                                           "not imported)"))
    summary.problems[:0] = [*coco.skipped, *image_problems]
    return planned


def _match_images(project: Project, coco: CocoFile
                  ) -> tuple[dict[int, tuple[int, int, int]], dict[int, str]]:
    """Usable images: COCO image id -> (project image id, upright height, width);
    and the others: COCO image id -> why not."""
    matcher = ImageMatcher(project.images())
    found: dict[int, tuple[int, int, int]] = {}
    unusable: dict[int, str] = {}
    for image in coco.images:
        record, reason = matcher.match(image.file_name)
        if record is None:
            unusable[image.id] = reason
            continue
        record = project.ensure_image_info(record.id)
        problem = _size_problem(image, record)
        if problem:
            unusable[image.id] = problem
            continue
        assert record.width is not None and record.height is not None
        found[image.id] = (record.id, record.height, record.width)
    return found, unusable


def _size_problem(image: CocoImage, record: ImageRecord) -> str | None:
    if record.width is None or record.height is None:
        return f"cannot be read: {record.error or 'unknown error'}"
    declared = (image.width, image.height)
    if None not in declared and declared != (record.width, record.height):
        hint = " (EXIF orientation?)" if declared == (record.height, record.width) else ""
        return (f"size {image.width}x{image.height} in the JSON, but the image is "
                f"{record.width}x{record.height} upright{hint}")
    return None


def _apply(project: Project, planned: list[_Planned], coco: CocoFile,
           summary: ImportSummary, report: _Progress) -> None:
    """Create labels and add masks (inside the caller's batch)."""
    label_ids = category_labels(project, coco.categories, summary)
    existing: dict[int, set[tuple[int | None, str]]] = {}
    boxes: dict[int, list[tuple[Box, int]]] = defaultdict(list)
    tracks: dict[int, int] = {}  # the file's track id -> the project's
    tracked: set[tuple[int, int]] = set()  # (project track id, image id) holding a mask
    start = len(coco.annotations)
    for done, plan in enumerate(planned, start=1):
        label_id = label_ids[plan.category_id]
        if plan.rle is None:
            assert plan.box is not None
            boxes[plan.image_id].append((plan.box, label_id))
            report(start + done * start // len(planned))
            continue
        if plan.image_id not in existing:
            existing[plan.image_id] = {(a.label_id, masks.normalize(a.rle)["counts"])
                                       for a in project.annotations(plan.image_id)}
        key = (label_id, plan.rle["counts"])
        if key in existing[plan.image_id]:
            summary.duplicates_skipped += 1
        else:
            existing[plan.image_id].add(key)
            track_id = None
            if plan.track_id is not None:
                if plan.track_id not in tracks:
                    tracks[plan.track_id] = project.add_track(label_id).id
                track_id = tracks[plan.track_id]
                if (track_id, plan.image_id) in tracked:
                    summary.problems.append((f"track_id {plan.track_id}", (
                        "two masks on one image; the second was added in no track")))
                    track_id = None
                else:
                    tracked.add((track_id, plan.image_id))
            project.add_annotation(plan.image_id, plan.rle, label_id, score=plan.score,
                                   prompts={"imported_from": summary.source.name},
                                   track_id=track_id)
            summary.annotations_added += 1
        report(start + done * start // len(planned))
    for image_id, pairs in boxes.items():
        added = project.add_pending_boxes(image_id, pairs, summary.source.name)
        summary.boxes_added += len(added)
        summary.boxes_skipped += len(pairs) - len(added)
    report(2 * start)


def category_labels(project: Project, categories: list[CocoCategory],
                    summary: ImportSummary) -> dict[int, int]:
    """Make or find a label for every usable category (those with no mask included);
    returns file category id -> project label id, listed in ``summary.categories``.

    Into a project without labels every category keeps its id (one below 1, which
    cannot be a label id, gets a new one after the others are made). Into one with
    labels a name finds the label of that name, and a new name gets a new id. A name
    the file gives two categories is one label.
    """
    usable = [c for c in categories if c.problem is None]
    keep = not project.labels()
    mapping: dict[int, int] = {}
    hows: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for category in sorted(usable, key=lambda c: keep and c.id < 1):  # kept ids first
        label_id = by_name.get(category.name)
        if label_id is not None:
            how = "same name"
        elif (label := project.label_by_name(category.name)) is not None:
            label_id, how = label.id, "existing"
        else:
            wanted = category.id if keep and category.id >= 1 else None
            color = category.color or _free_color(project)
            label_id = project.add_label(category.name, color=color, label_id=wanted).id
            summary.labels_created.append(category.name)
            how = "kept" if label_id == category.id and keep else "new"
        mapping[category.id] = by_name[category.name] = label_id
        hows[category.id] = how
    summary.categories = [(c.id, mapping[c.id], c.name, hows[c.id]) for c in usable]
    return mapping


def _box_only(segmentation: object) -> bool:
    """True for an annotation that gives no outline: no ``segmentation``, ``[]`` or ``[[]]``."""
    return segmentation is None or (isinstance(segmentation, list) and all(
        isinstance(polygon, list) and not polygon for polygon in segmentation))


def _coco_box(bbox: object, width: int, height: int) -> tuple[Box | None, str]:
    """A COCO ``bbox`` ``[x, y, width, height]`` as XYXY pixels, or None and why not."""
    if bbox is None:
        return None, "no segmentation and no bbox"
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        return None, "no segmentation, and bbox is not four numbers [x, y, width, height]"
    x, y, w, h = (float(v) for v in bbox)
    box = (x, y, x + w, y + h)
    problem = box_problem(box, width, height)
    if problem is not None:
        return None, f"no segmentation, and bbox [{x:g}, {y:g}, {w:g}, {h:g}]: " + \
            problem.replace(f"box [{x:g}, {y:g}, {x + w:g}, {y + h:g}] ", "")
    return box, ""


def _free_color(project: Project) -> str:
    """The first palette colour no label uses, else a hue the golden angle away."""
    used = {label.color for label in project.labels()}
    for color in PALETTE:
        if color not in used:
            return color
    hue = (len(used) * 0.618033988749895) % 1.0
    return _hsv_hex(hue, 0.65, 0.95)


def _hsv_hex(h: float, s: float, v: float) -> str:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
