"""YOLO segmentation dataset, in the layout Ultralytics reads.

``out`` is a folder that receives:

* ``data.yaml``: ``path`` (the folder, absolute), ``train`` and ``val`` (both
  ``images``: every image is in both splits, which Ultralytics' dataset
  checker accepts; split the files yourself for a held-out validation set),
  ``nc`` and ``names`` (class index -> label name);
* ``images/<relative path>``: the upright images (EXIF orientation applied);
* ``labels/<relative path>.txt``: one line per mask,
  ``class x1 y1 x2 y2 ...`` with coordinates divided by the image width and
  height (6 decimals). An image with no mask gets an empty file (a
  background image).

Class indices are ``0..N-1`` over the project's labels in id order, so a
deleted label leaves no gap. A mask's parts are traced along pixel edges
(:mod:`samdesk.export.polygons`) and joined into one polygon by thin
connections, as Ultralytics' ``merge_multi_segment`` does when it converts
COCO. A polygon holds no holes: they are filled, and the summary says how
many masks lost them.

Ultralytics finds a label by replacing the last ``/images/`` of the image's
path with ``/labels/``; :func:`label_name` applies the same rule, so an
image at ``images/x.jpg`` inside the project gets ``images/labels/x.txt``.
Two images that would share a label file (``a.jpg`` and ``a.png``) keep
their extension in the copy's name: ``a.jpg.jpg`` -> ``labels/a.jpg.txt``.
A cancelled export keeps the images and label files already written but
writes no ``data.yaml``, so it is never taken for the whole dataset.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import yaml

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
from samdesk.export.images_out import IMAGES_FOLDER, ImagesOut, image_name
from samdesk.export.polygons import mask_to_polygons, polygons_area

if TYPE_CHECKING:
    from samdesk.project import Project

DATA_YAML = "data.yaml"
DECIMALS = 6
_FIXED = f"{{:.{DECIMALS}f}}"


def label_name(name: str) -> str:
    """The label file (relative to ``out``) of the image copy ``images/<name>``:
    the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``
    (Ultralytics' ``img2label_paths``)."""
    parts = ["images", *PurePosixPath(name).parts]
    last = max(i for i, part in enumerate(parts[:-1]) if part == "images")
    parts[last] = "labels"
    return "/".join(parts).rsplit(".", 1)[0] + ".txt"


def image_names(records: Sequence[ImageRecord]) -> dict[int, str]:
    """Image id -> name of its copy under ``images/`` (``/`` separators): the relative
    path, or, where two images would share a label file (compared ignoring case),
    the path with its suffix repeated (``a.jpg`` -> ``a.jpg.jpg``)."""
    clashes = Counter(label_name(image_name(r)).lower() for r in records)
    out = {}
    for r in records:
        clash = clashes[label_name(image_name(r)).lower()] > 1
        name = image_name(r)
        out[r.id] = f"{name}{PurePosixPath(name).suffix}" if clash else name
    return out


def class_indices(labels: dict[int, Label]) -> dict[int, int]:
    """Label id -> YOLO class index ``0..N-1``, in label id order (no gaps)."""
    return {label_id: index for index, label_id in enumerate(sorted(labels))}


def closest_points(one: np.ndarray, other: np.ndarray, chunk: int = 1 << 22) -> tuple[int, int]:
    """Indices ``(i, j)`` of the closest pair ``one[i]``, ``other[j]`` (``(N, 2)``, ``(M, 2)``),
    the first such pair in row-major order as ``np.argmin`` over the N x M distances
    finds it, computed a block of rows at a time (at most ``chunk`` distances in memory)."""
    rows = max(1, chunk // max(len(other), 1))
    best, found = np.inf, (0, 0)
    for start in range(0, len(one), rows):
        block = one[start:start + rows]
        dx = block[:, 0, None] - other[None, :, 0]
        dy = block[:, 1, None] - other[None, :, 1]
        distance = dx * dx + dy * dy
        flat = int(np.argmin(distance))
        value = distance.flat[flat]
        if value < best:
            best = value
            found = (start + flat // len(other), flat % len(other))
    return found


def merge_parts(parts: Sequence[Sequence[float]]) -> np.ndarray:
    """Join several polygons into one, as Ultralytics' ``merge_multi_segment`` does.

    ``parts``: flat ``[x1, y1, x2, y2, ...]`` polygons. Each neighbouring pair
    (in the order given) is joined at its two closest points by a thin
    connection that goes there and back, so the result encloses the same area.
    Returns ``(N, 2)`` float points.
    """
    segments = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in parts]
    if len(segments) == 1:
        return segments[0]
    ends: list[list[int]] = [[] for _ in segments]
    for i in range(1, len(segments)):
        first, second = closest_points(segments[i - 1], segments[i])
        ends[i - 1].append(first)
        ends[i].append(second)
    out: list[np.ndarray] = []
    last = len(segments) - 1
    for i, idx in enumerate(ends):  # forward: each part from its first connection
        if len(idx) == 2 and idx[0] > idx[1]:
            idx = [len(segments[i]) - 1 - x for x in idx]
            segments[i] = segments[i][::-1, :]
            ends[i] = idx
        segments[i] = np.roll(segments[i], -idx[0], axis=0)
        segments[i] = np.concatenate([segments[i], segments[i][:1]])
        if i in (0, last):
            out.append(segments[i])
        else:
            out.append(segments[i][: idx[1] - idx[0] + 1])
    for i in range(last - 1, 0, -1):  # back: the rest of each middle part
        out.append(segments[i][abs(ends[i][1] - ends[i][0]):])
    return np.concatenate(out, axis=0)


def polygon_line(class_index: int, points: np.ndarray, width: int, height: int) -> str:
    """``class x1 y1 ...`` with ``points`` ``(N, 2)`` pixels divided by the image size."""
    scaled = (points / np.asarray([width, height], dtype=np.float64)).ravel().tolist()
    return " ".join([str(class_index), *map(_FIXED.format, scaled)])


def image_lines(work: ImageWork, classes: dict[int, int]) -> tuple[list[str], int, int]:
    """The label lines of one image, how many of its masks had holes that were
    filled, and how many masks gave no polygon."""
    lines: list[str] = []
    holed = failed = 0
    for layer, pixels in zip(work.layers, work.areas, strict=True):
        polygons = mask_to_polygons(masks.decode(layer.rle))
        if not polygons:
            failed += 1
            continue
        holed += polygons_area(polygons) > pixels
        assert layer.label_id is not None  # walk() keeps labelled layers only
        points = merge_parts(polygons)
        lines.append(polygon_line(classes[layer.label_id], points, work.width, work.height))
    return lines, holed, failed


def data_yaml(out: Path, labels: dict[int, Label], project: Project) -> str:
    """The text of ``data.yaml``: a comment, then ``path``, ``train``, ``val``, ``nc``
    and ``names`` (written by PyYAML, so any name is quoted as it needs)."""
    names = {index: labels[label_id].name for label_id, index in class_indices(labels).items()}
    document = {"path": str(out.resolve()), "train": "images", "val": "images",
                "nc": len(names), "names": names}
    head = (f"# samdesk export of {project.folder.name}: YOLO segmentation.\n"
            "# Every image is in train and in val; move files for a held-out split.\n"
            "# If you move this folder, change path (or delete it: the folder of this\n"
            "# file is used).\n")
    return head + yaml.safe_dump(document, sort_keys=False, allow_unicode=True,
                                 default_flow_style=False, width=1000)


def export_yolo(project: Project, options: ExportOptions) -> ExportSummary:
    """Write a YOLO segmentation dataset into ``options.out``; see the module docstring."""
    if options.images == "none":
        raise ExportError("yolo: --images none cannot be: Ultralytics finds each label file "
                          "from its image under OUT/images/; use --images copy or link")
    summary = ExportSummary(format="yolo")
    labels = labels_by_id(project)
    classes = class_indices(labels)
    out = Path(options.out)
    records = project.images(ImageStatus.DONE if options.only_done else None)
    names = image_names(records)
    make_folder(out)
    mark_export_folder(out)  # also an existing folder: the project scan skips it
    pictures = ImagesOut(project, options, out / IMAGES_FOLDER, summary)
    holed = 0
    for work in walk(project, options, summary, labels):
        if not pictures.put(work.image):
            continue  # named in the summary's skipped images
        name = names[work.image.id]
        copy = out / IMAGES_FOLDER / name
        if name != image_name(work.image):  # shares its label file with another image
            os.replace(out / IMAGES_FOLDER / image_name(work.image), copy)
        lines, image_holed, failed = image_lines(work, classes)
        holed += image_holed
        if failed:
            summary.skipped_annotations["no polygon with 3 or more points"] += failed
        target = out / label_name(name)
        with atomic_file(target, durable=False) as stream:
            stream.write("".join(line + "\n" for line in lines))
        summary.files += [copy, target]
        summary.images += 1
        summary.annotations += len(lines)
    if summary.cancelled:  # no data.yaml: a part of the images must not look like all
        return summary
    yaml_path = out / DATA_YAML
    with atomic_file(yaml_path) as stream:
        stream.write(data_yaml(out, labels, project))
    summary.files.append(yaml_path)
    if holed:
        summary.notes.append(f"{holed} masks had holes, filled in their polygons: a YOLO "
                             "polygon cannot hold a hole (coco-rle and png-instance keep them)")
    return summary
