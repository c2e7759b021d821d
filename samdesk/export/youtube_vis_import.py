"""Import a YouTube-VIS JSON (2019 / 2021 / OVIS layout) into a project, as tracks.

Every object of the file (an ``annotations`` item: one object across the
frames of one video) becomes a track with the label of its category; each
non-null entry of its ``segmentations`` becomes that track's mask layer on
the frame its video's ``file_names`` names there (a person-made layer, as
any import). All of it is one transaction and one undo step.

* Frames are matched to project images as COCO ``file_name`` is (the path
  relative to the project folder, or its longest unique tail, down to the
  bare file name; :class:`~samdesk.export.coco_import.ImageMatcher`).
* Categories become labels as in the COCO import (ids kept in a project
  without labels, else found by name).
* Segmentations may be compressed RLE (str counts), uncompressed RLE (list
  counts) or polygons, at the video's ``height`` x ``width``.
* An object whose every mask is already on its frames with its label is not
  added again, so importing a file twice changes nothing.
* A file of one video marks the project a sequence.

A file that is not YouTube-VIS as a whole (no ``videos`` list, a video with
no ``file_names``) raises FormatError naming the file and the field before
anything is written; a fault in one object or frame (a frame file that is not
in the folder, a size that differs, a bad RLE) is listed in the summary as
one line naming the field and the file, and the rest is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samdesk import masks
from samdesk.annotations import RLE
from samdesk.export.coco_import import ImageMatcher, ImportSummary, category_labels, printable
from samdesk.export.coco_read import (
    CocoCategory,
    FieldError,
    _category,
    _check_segmentation,
    _entries,
    _Fields,
    read_coco_document,
    segmentation_to_rle,
)
from samdesk.export.detect import read_json

if TYPE_CHECKING:
    from samdesk.project import Project

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VisVideo:
    id: int
    width: int
    height: int
    file_names: tuple[str, ...]
    index: int  # position in the file's "videos" list, for messages


@dataclass(frozen=True)
class VisObject:
    index: int  # position in the file's "annotations" list, for messages
    id: int | None
    video_id: int | None  # None only with a problem
    category_id: int | None  # None only with a problem
    segmentations: tuple[Any, ...] = ()  # one per frame of the video; None where absent
    problem: str | None = None  # "field: why" when this object cannot be imported


@dataclass(frozen=True)
class VisFile:
    path: Path
    categories: list[CocoCategory]
    videos: list[VisVideo]
    objects: list[VisObject]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class VisImportSummary(ImportSummary):
    """An import summary that also counts the tracks made."""

    tracks_added: int = 0
    tracks_skipped: int = 0
    marked_sequence: bool = False

    def _first_line(self) -> str:
        return (f"{printable(self.source.name)}: {self.images_matched} frames matched, "
                f"{_count(self.tracks_added, 'track')} added "
                f"({_count(self.annotations_added, 'mask')}), "
                f"{_count(len(self.labels_created), 'new label')}")

    def _format_lines(self) -> list[str]:
        out = self._category_lines()
        if self.tracks_skipped:
            out.append(f"{self.tracks_skipped} objects were already there as tracks and were "
                       "not added")
        if self.marked_sequence:
            out.append("the project is now marked a sequence (its images are the frames)")
        return out


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


def is_youtube_vis(source: Path) -> bool:
    """A ``.json`` file holding an object with ``videos`` and ``annotations`` lists."""
    if not (source.is_file() and source.suffix.lower() == ".json"):
        return False
    document = read_json(source)
    return (isinstance(document, dict) and isinstance(document.get("videos"), list)
            and isinstance(document.get("annotations"), list))


def read_youtube_vis(path: str | Path) -> VisFile:
    """Load and check a YouTube-VIS JSON; raises FormatError naming file and field."""
    path = Path(path)
    document = read_coco_document(path)
    check = _Fields(path)
    if not isinstance(document, dict):
        raise check.error("top level", f"must be an object, got {type(document).__name__}")
    if "videos" not in document:
        raise check.error("videos", "missing (not a YouTube-VIS file?)")
    skipped: list[tuple[str, str]] = []
    categories = _entries(check, document, "categories", _category, skipped)
    videos = _entries(check, document, "videos", _video, skipped)
    objects = [_object(check, item, i)
               for i, item in enumerate(check.objects(document, "annotations", True))]
    return VisFile(path, categories, videos, objects, skipped)


def _video(check: _Fields, item: dict[str, Any], index: int) -> VisVideo:
    where = f"videos[{index}]"
    names = check.get(item, "file_names", where)
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise check.error(f"{where}.file_names", "must be a list of file names")
    width, height = check.size(item, "width", where), check.size(item, "height", where)
    if width is None or height is None:
        raise check.error(f"{where}.{'width' if width is None else 'height'}", "missing")
    return VisVideo(check.integer(check.get(item, "id", where), f"{where}.id"), width, height,
                    tuple(n.strip() for n in names), index)


def _object(check: _Fields, item: dict[str, Any], index: int) -> VisObject:
    """One object; a fault in its fields is kept as its ``problem``, not raised."""
    where = f"annotations[{index}]"
    obj_id = item.get("id") if isinstance(item.get("id"), int) else None
    video_id = category_id = None
    try:
        video_id = check.integer(check.get(item, "video_id", where), f"{where}.video_id")
        category_id = check.integer(check.get(item, "category_id", where),
                                    f"{where}.category_id")
        segmentations = check.get(item, "segmentations", where)
        if not isinstance(segmentations, list):
            raise check.error(f"{where}.segmentations", "must be a list, one entry per frame")
        for frame, segmentation in enumerate(segmentations):
            if segmentation is not None:
                _check_segmentation(check, segmentation, f"{where}.segmentations[{frame}]")
    except FieldError as exc:
        return VisObject(index, obj_id, video_id, category_id,
                         problem=f"{exc.field}: {exc.problem}")
    return VisObject(index, obj_id, video_id, category_id, tuple(segmentations))


def import_youtube_vis(project: Project, json_path: str | Path,
                       progress: Progress | None = None) -> VisImportSummary:
    """Import ``json_path`` into ``project``; see the module docstring for the rules."""
    vis = read_youtube_vis(json_path)  # a FormatError leaves the project untouched
    summary = VisImportSummary(source=Path(json_path))
    frames = _match_frames(project, vis, summary)
    if not frames:
        summary.problems.clear()
        summary.nothing_matched = _why_nothing(project, vis)
        return summary
    summary.images_matched = len(set(frames.values()))
    total = len(vis.objects)
    with project.batch(f"Import {summary.source.name}"):
        label_ids = category_labels(project, vis.categories, summary)
        videos = {video.id: video for video in vis.videos}
        for done, obj in enumerate(vis.objects, start=1):
            planned = _plan(obj, videos, label_ids, frames, summary)
            if planned:
                _add_track(project, planned, label_ids[obj.category_id], summary)
            if progress is not None:
                progress(done, total)
    summary.problems[:0] = vis.skipped
    if summary.tracks_added and len(vis.videos) == 1 and not project.is_sequence:
        project.set_sequence(True)
        summary.marked_sequence = True
    return summary


def _match_frames(project: Project, vis: VisFile, summary: VisImportSummary
                  ) -> dict[tuple[int, int], int]:
    """(video id, frame index) -> project image id for every usable frame; a frame
    not in the project, unreadable or of another size is a problem line."""
    matcher = ImageMatcher(project.images())
    found: dict[tuple[int, int], int] = {}
    name = vis.path.name
    for video in vis.videos:
        for frame, file_name in enumerate(video.file_names):
            where = f"{name}: videos[{video.index}].file_names[{frame}] ({file_name})"
            record, reason = matcher.match(file_name)
            if record is None:
                summary.problems.append((where, f"{reason} (no such frame in the folder)"))
                continue
            record = project.ensure_image_info(record.id)
            if record.width is None or record.height is None:
                summary.problems.append((where, f"cannot be read: {record.error}"))
            elif (record.width, record.height) != (video.width, video.height):
                summary.problems.append((where, (
                    f"the video is {video.width}x{video.height} but the image is "
                    f"{record.width}x{record.height} upright")))
            else:
                found[video.id, frame] = record.id
    return found


def _why_nothing(project: Project, vis: VisFile) -> str:
    name = printable(vis.path.name)
    names = [n for video in vis.videos for n in video.file_names]
    if not names:
        return f"{name} lists no frames, so there is nothing to import"
    records = project.images()
    theirs = printable(repr(names[0]))
    if not records:
        return (f"none of the {len(names)} frames of {name} (e.g. {theirs}) is in the "
                "project: the project folder has no images")
    return (f"none of the {len(names)} frames of {name} (e.g. {theirs}) matches an image of "
            f"the project (e.g. {printable(repr(records[0].path))}); file_names must be paths "
            "relative to the project folder, or end with a file name found in it")


def _plan(obj: VisObject, videos: dict[int, VisVideo], label_ids: dict[int, int],
          frames: dict[tuple[int, int], int],
          summary: VisImportSummary) -> list[tuple[int, RLE]]:
    """``(image id, mask)`` of each frame of the object that can be imported."""
    item = f"{summary.source.name}: annotations[{obj.index}]"
    if obj.problem is not None:  # it names the field: "annotations[3].segmentations: ..."
        summary.problems.append((summary.source.name, obj.problem))
        return []
    video = videos.get(obj.video_id)  # type: ignore[arg-type]
    if video is None:
        summary.problems.append((item, f"video_id {obj.video_id} is not in the videos list"))
        return []
    if obj.category_id not in label_ids:
        summary.problems.append((item, f"category_id {obj.category_id} is not a usable "
                                       "category"))
        return []
    if len(obj.segmentations) != len(video.file_names):
        summary.problems.append((item, f"segmentations has {len(obj.segmentations)} entries "
                                       f"but video {video.id} has {len(video.file_names)} "
                                       "frames"))
        return []
    planned = []
    for frame, segmentation in enumerate(obj.segmentations):
        if segmentation is None or (video.id, frame) not in frames:
            continue  # absent there, or a frame already named as a problem
        try:
            rle = segmentation_to_rle(segmentation, video.height, video.width)
        except (ValueError, OverflowError) as exc:
            summary.problems.append((f"{item}.segmentations[{frame}]",
                                     str(exc) or "segmentation cannot be read"))
            continue
        if not masks.is_empty(rle):
            planned.append((frames[video.id, frame], rle))
    return planned


def _add_track(project: Project, planned: list[tuple[int, RLE]], label_id: int,
               summary: VisImportSummary) -> None:
    """A new track holding ``planned``'s masks, unless every one is already there."""
    there = all(any(layer.label_id == label_id and layer.track_id is not None
                    and masks.normalize(layer.rle)["counts"] == rle["counts"]
                    for layer in project.annotations(image_id))
                for image_id, rle in planned)
    if there:
        summary.tracks_skipped += 1
        summary.duplicates_skipped += len(planned)
        return
    track = project.add_track(label_id)
    for image_id, rle in planned:
        project.add_annotation(image_id, rle, label_id, track_id=track.id,
                               prompts={"imported_from": summary.source.name})
        summary.annotations_added += 1
    summary.tracks_added += 1
