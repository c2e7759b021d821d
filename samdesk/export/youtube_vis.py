"""YouTube-VIS video instance segmentation JSON (the 2019 / 2021 / OVIS layout).

The file holds ``info``, ``licenses`` (empty), ``categories``, ``videos`` and
``annotations``, as ``pycocotools.ytvos.YTVOS`` and the detectron2 / mmdet
YouTube-VIS loaders read it:

* ``videos``: one per folder of frames (a flat sequence is one video; a
  project of ``JPEGImages/<video>/<frame>`` folders is one video each), with
  ``id`` (1, 2, ... in project order), ``width``/``height`` (upright, of its
  first frame), ``length`` and ``file_names``: its frames in frame order
  (natural order of paths), named as the COCO export names images (relative
  to ``images/`` beside the JSON, or to the project folder with
  ``--images none``). A frame of another size than its video's first is
  left out and named in the summary.
* ``categories``: every label, as in the COCO export.
* ``annotations``: one per track and video (one object across frames): ``id``
  (1, 2, ...), ``video_id``, ``category_id``, ``iscrowd`` 0, ``width``,
  ``height``, and one entry per frame of the video in ``segmentations``
  (compressed RLE, str counts), ``areas`` (pixels) and ``bboxes``
  (``[x, y, w, h]``), each ``null`` on a frame where the object has no mask;
  samdesk's ``track_id`` is kept beside them. A mask in no track is an
  object of its own, on that one frame.

The JSON is assembled in memory (it is one object per track, each listing
every frame) and moved into place atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import samdesk
from samdesk import masks
from samdesk.export.base import ExportOptions, ExportSummary, atomic_file, labels_by_id, walk
from samdesk.export.coco import category, coco_path
from samdesk.export.images_out import IMAGES_FOLDER, ImagesOut, image_name

if TYPE_CHECKING:
    from samdesk.project import Project

FORMAT = "youtube-vis"


@dataclass
class _Video:
    id: int
    width: int
    height: int
    file_names: list[str] = field(default_factory=list)


@dataclass
class _Object:
    """One object of one video: its category and, by frame index, its mask's JSON parts."""

    video: _Video
    category_id: int
    track_id: int | None
    frames: dict[int, tuple[dict[str, Any], int, list[float]]] = field(default_factory=dict)


def export_youtube_vis(project: Project, options: ExportOptions) -> ExportSummary:
    """Write one YouTube-VIS JSON; see the module docstring for its content."""
    summary = ExportSummary(format=FORMAT)
    labels = labels_by_id(project)
    track_labels = {track.id: track.label_id for track in project.tracks()}
    target = coco_path(options.out)
    image_files = ImagesOut(project, options, target.parent / IMAGES_FOLDER, summary)
    videos: dict[str, _Video] = {}
    objects: dict[tuple[int, str, int], _Object] = {}
    try:
        for work in walk(project, options, summary, labels):
            folder = PurePosixPath(work.image.path).parent.as_posix()
            video = videos.get(folder)
            if video is not None and (video.width, video.height) != (work.width, work.height):
                summary.skipped_images.append((work.image.path, (
                    f"{work.width}x{work.height}, not the {video.width}x{video.height} of the "
                    "other frames of its video")))
                continue
            if not image_files.put(work.image):
                continue  # unreadable now: neither frame nor masks
            if video is None:
                video = videos[folder] = _Video(len(videos) + 1, work.width, work.height)
            frame = len(video.file_names)
            video.file_names.append(image_name(work.image))
            for layer, pixels, box in zip(work.layers, work.areas, work.boxes, strict=True):
                if layer.track_id is None:
                    key = (video.id, "layer", layer.id)
                else:
                    key = (video.id, "track", layer.track_id)
                found = objects.get(key)
                if found is None:
                    label_id = track_labels.get(layer.track_id) if layer.track_id else None
                    found = objects[key] = _Object(
                        video, label_id if label_id in labels else layer.label_id,
                        layer.track_id)
                found.frames[frame] = (masks.normalize(layer.rle), pixels, box)
                summary.annotations += 1
        if summary.cancelled:
            image_files.discard()
            return summary
        summary.images = sum(len(v.file_names) for v in videos.values())
        document = _document(project, labels, list(videos.values()), list(objects.values()))
        with atomic_file(target) as stream:
            json.dump(document, stream, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
            stream.write("\n")
    except BaseException:  # a failed or cancelled export leaves no images
        image_files.discard()
        raise
    tracked = sum(1 for o in objects.values() if o.track_id is not None)
    loose = len(objects) - tracked
    summary.notes.append(f"{_count(len(objects), 'object')} in {_count(len(videos), 'video')}: "
                         f"{_count(tracked, 'track')}" + (
                             f", and {_count(loose, 'mask')} in no track as one-frame objects"
                             if loose else ""))
    summary.files.append(target)
    return summary


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


def _document(project: Project, labels: dict, videos: list[_Video],
              objects: list[_Object]) -> dict[str, Any]:
    info = {
        "description": f"samdesk export of {project.folder.name}",
        "version": samdesk.__version__,
        "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    video_entries = [{"id": v.id, "width": v.width, "height": v.height,
                      "length": len(v.file_names), "file_names": v.file_names}
                     for v in videos]
    annotations = []
    for number, obj in enumerate(objects, start=1):
        length = len(obj.video.file_names)
        segmentations: list[Any] = [None] * length
        areas: list[Any] = [None] * length
        bboxes: list[Any] = [None] * length
        for frame, (rle, pixels, box) in obj.frames.items():
            segmentations[frame], areas[frame], bboxes[frame] = rle, pixels, box
        entry: dict[str, Any] = {
            "id": number, "video_id": obj.video.id, "category_id": obj.category_id,
            "iscrowd": 0, "width": obj.video.width, "height": obj.video.height,
            "segmentations": segmentations, "areas": areas, "bboxes": bboxes}
        if obj.track_id is not None:
            entry["track_id"] = obj.track_id
        annotations.append(entry)
    return {"info": info, "licenses": [],
            "categories": [category(label) for label in labels.values()],
            "videos": video_entries, "annotations": annotations}
