"""Reading and checking a COCO instances JSON before anything is imported.

:func:`read_coco` turns the file into plain records or raises
:class:`~samdesk.errors.FormatError` naming the file and the field at fault
(``instances.json: images[3].file_name: ...``) when the file as a whole is
not COCO. A fault in one annotation (a bad polygon, an RLE that does not
cover its size, a non-integer ``category_id``) or a category whose name
cannot be a label does not reject the file: the record carries a
``problem`` and the importer reports it and imports the rest. A bad image or
category entry (a missing ``file_name``, an id used twice) is left out and
listed in ``CocoFile.skipped``; only a file none of whose images is usable is
refused. Nothing here
touches a project. Segmentations are turned into masks later, by
:func:`segmentation_to_rle`, once the image's size is known.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from samdesk import masks
from samdesk.annotations import RLE
from samdesk.errors import FormatError
from samdesk.project_edits import label_name_problem

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 4, 60, 60
"""Values quoted in messages: short, and never recursing into deep nesting."""


class FieldError(FormatError):
    """A field of the file is wrong: ``field`` names it, ``problem`` says how."""

    def __init__(self, path: Path, field: str, problem: str) -> None:
        super().__init__(f"{path.name}: {field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class CocoCategory:
    id: int
    name: str
    color: str | None
    problem: str | None = None  # why it cannot become a label; its masks are not imported


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class CocoAnnotation:
    index: int  # position in the file's "annotations" list, for messages
    id: int | None
    image_id: int | None  # None only with a problem
    category_id: int | None  # None only with a problem
    segmentation: Any  # checked later against the image size; None when absent
    score: float | None  # finite, or None
    problem: str | None = None  # "field: why" when this annotation cannot be imported
    bbox: Any = None  # the file's "bbox" as it is ([x, y, width, height]), checked by the importer
    track_id: int | None = None  # "track_id" (samdesk) or "attributes.track_id" (CVAT)


_Entry = TypeVar("_Entry", CocoCategory, CocoImage)


@dataclass(frozen=True)
class CocoFile:
    path: Path
    categories: list[CocoCategory]
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(field, problem)`` of each category or image entry left out as unusable."""


class _Fields:
    """Field checks that raise FormatError naming ``file: field``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, field: str, problem: str) -> FieldError:
        return FieldError(self.path, field, problem)

    def get(self, obj: dict[str, Any], key: str, field: str) -> Any:
        if key not in obj:
            raise self.error(f"{field}.{key}", "missing")
        return obj[key]

    def integer(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, float) and not value.is_integer()):
            raise self.error(field, f"must be an integer, got {_REPR.repr(value)}")
        return int(value)

    def size(self, obj: dict[str, Any], key: str, field: str) -> int | None:
        if obj.get(key) is None:
            return None
        value = self.integer(obj[key], f"{field}.{key}")
        if value <= 0:
            raise self.error(f"{field}.{key}", f"must be positive, got {value}")
        return value

    def objects(self, document: dict[str, Any], key: str, required: bool) -> list[dict[str, Any]]:
        if key not in document:
            if required:
                raise self.error(key, "missing (not a COCO instances file?)")
            return []
        items = document[key]
        if not isinstance(items, list):
            raise self.error(key, f"must be a list, got {type(items).__name__}")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(f"{key}[{index}]", f"must be an object, got {type(item).__name__}")
        return items


def color_of(value: Any) -> str | None:
    """A category colour as ``#rrggbb``, from ``"#rrggbb"`` or ``[r, g, b]``; None otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if len(text) == 7 and text[0] == "#" and all(c in "0123456789abcdef" for c in text[1:]):
            return text
    if (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                    for v in value)):
        return "#{:02x}{:02x}{:02x}".format(*value)
    return None


def read_coco(path: str | Path) -> CocoFile:
    """Load and check a COCO instances JSON; raises FormatError naming file and field."""
    path = Path(path)
    document = read_coco_document(path)
    check = _Fields(path)
    if not isinstance(document, dict):
        raise check.error("top level", f"must be an object, got {type(document).__name__}")
    skipped: list[tuple[str, str]] = []
    categories = _entries(check, document, "categories", _category, skipped)
    images = _entries(check, document, "images", _image, skipped)
    annotations = [_annotation(check, item, i)
                   for i, item in enumerate(check.objects(document, "annotations", False))]
    return CocoFile(path, categories, images, annotations, skipped)


def read_coco_document(path: Path) -> Any:
    """The parsed JSON of a COCO-like file; raises FormatError naming the file when it
    cannot be read or is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text (is it a JSON file?)") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path.name}: not valid JSON at line {exc.lineno} "
                          f"column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise FormatError(f"{path.name}: JSON nested too deeply to read "
                          "(a COCO file nests a few levels)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise FormatError(f"{path.name}: not valid JSON: {exc}") from None
    return document


def _entries(check: _Fields, document: dict[str, Any], key: str,
             read: Callable[[_Fields, dict[str, Any], int], _Entry],
             skipped: list[tuple[str, str]]) -> list[_Entry]:
    """The usable entries of ``document[key]``; each bad one (a wrong field, an id used
    twice) goes into ``skipped`` as ``(field, problem)`` and the rest are kept. Only when
    there were entries and none is usable is the whole file refused, naming the first."""
    items = check.objects(document, key, key == "images")
    kept: list[_Entry] = []
    first_error: FieldError | None = None
    seen: set[int] = set()
    for index, item in enumerate(items):
        try:
            entry = read(check, item, index)
            if entry.id in seen:
                raise check.error(f"{key}[{index}].id", f"id {entry.id} is used twice")
        except FieldError as exc:
            first_error = first_error or exc
            skipped.append((exc.field, exc.problem + "; skipped"))
            continue
        seen.add(entry.id)
        kept.append(entry)
    if items and not kept and first_error is not None:
        raise first_error
    return kept


def _category(check: _Fields, item: dict[str, Any], index: int) -> CocoCategory:
    field = f"categories[{index}]"
    name = check.get(item, "name", field)
    if not isinstance(name, str) or not name.strip():
        raise check.error(f"{field}.name",
                          f"must be a non-empty string, got {_REPR.repr(name)}")
    return CocoCategory(check.integer(check.get(item, "id", field), f"{field}.id"),
                        name.strip(), color_of(item.get("color")),
                        label_name_problem(name.strip()))


def _image(check: _Fields, item: dict[str, Any], index: int) -> CocoImage:
    field = f"images[{index}]"
    file_name = check.get(item, "file_name", field)
    if not isinstance(file_name, str) or not file_name.strip():
        raise check.error(f"{field}.file_name",
                          f"must be a non-empty string, got {_REPR.repr(file_name)}")
    return CocoImage(check.integer(check.get(item, "id", field), f"{field}.id"),
                     file_name.strip(), check.size(item, "width", field),
                     check.size(item, "height", field))


def _annotation(check: _Fields, item: dict[str, Any], index: int) -> CocoAnnotation:
    """One annotation; a fault in its fields is kept as its ``problem``, not raised."""
    field = f"annotations[{index}]"
    ann_id: int | None = None
    try:
        if item.get("id") is not None:
            ann_id = check.integer(item["id"], f"{field}.id")
    except FieldError:
        pass  # the id only names it in messages: fall back to its index
    score = item.get("score")
    attributes = item.get("attributes")
    if score is None and isinstance(attributes, dict):
        score = attributes.get("score")
    if (isinstance(score, bool) or not isinstance(score, (int, float))
            or not math.isfinite(score)):
        score = None  # no score, or one that is no number (inf, NaN)
    segmentation = item.get("segmentation")
    image_id = category_id = None
    try:
        image_id = check.integer(check.get(item, "image_id", field), f"{field}.image_id")
        category_id = check.integer(check.get(item, "category_id", field),
                                    f"{field}.category_id")
        if segmentation is not None:
            _check_segmentation(check, segmentation, f"{field}.segmentation")
    except FieldError as exc:
        return CocoAnnotation(index, ann_id, image_id, category_id, None, None,
                              problem=f"{exc.field}: {exc.problem}")
    track_id = item.get("track_id")
    if track_id is None and isinstance(attributes, dict):
        track_id = attributes.get("track_id")
    if isinstance(track_id, bool) or not isinstance(track_id, int):
        track_id = None  # no track, or one that is no integer id
    return CocoAnnotation(index, ann_id, image_id, category_id, segmentation,
                          None if score is None else float(score), bbox=item.get("bbox"),
                          track_id=track_id)


def _check_segmentation(check: _Fields, value: Any, field: str) -> None:
    if isinstance(value, dict):
        try:
            masks.validate(value)
        except (ValueError, UnicodeEncodeError) as exc:
            raise check.error(field, str(exc)) from None
        except OverflowError:  # pycocotools holds sizes and runs in 32 bits
            raise check.error(field, "RLE size or counts above 2^32 - 1, "
                                     "larger than any image") from None
        return
    if not isinstance(value, list):
        raise check.error(field, "must be a list of polygons or an RLE object, "
                                 f"got {type(value).__name__}")
    for index, polygon in enumerate(value):
        if not isinstance(polygon, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon):
            raise check.error(f"{field}[{index}]", "must be a list of numbers x1, y1, x2, y2...")
        if len(polygon) % 2:
            raise check.error(f"{field}[{index}]",
                              f"has an odd number of coordinates ({len(polygon)})")


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> RLE:
    """A checked segmentation (polygons or RLE) as a canonical compressed RLE of
    size (height, width).

    Raises ``ValueError`` when an RLE's own size is not (height, width).
    """
    if isinstance(segmentation, dict):
        rle = masks.normalize(segmentation)
        if rle["size"] != [height, width]:
            raise ValueError(f"mask size {rle['size'][1]}x{rle['size'][0]} is not the "
                             f"image size {width}x{height}")
        # Encode again: other tools' RLE may hold zero-length runs, and the same
        # pixels must give the same counts for duplicates to be recognised.
        return masks.encode(masks.decode(rle))
    return masks.from_polygons(segmentation, height, width)
