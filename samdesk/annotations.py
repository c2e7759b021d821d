"""Plain records of a project: images, labels and mask layers.

These are immutable values read from the project store. Changing one goes
through :class:`samdesk.project.Project`, which writes it and records the
change in the undo history. Nothing here draws itself or knows about Qt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

RLE = dict[str, Any]
"""A COCO run-length encoded mask: ``{"size": [height, width], "counts": str}``.

``counts`` is pycocotools' compressed string, decoded from bytes so that it
can be written to JSON and SQLite as text.
"""


class ImageStatus(enum.StrEnum):
    """Where a person is with an image."""

    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image file of a project.

    ``path`` is relative to the project folder, with ``/`` separators.
    ``width`` and ``height`` are in the upright frame (EXIF orientation
    applied) and are ``None`` until the image has been looked at once.
    ``content_hash`` is the hash recorded when the image was first read;
    ``changed`` is set when the file on disk no longer matches it.
    """

    id: int
    path: str
    width: int | None = None
    height: int | None = None
    content_hash: str | None = None
    status: ImageStatus = ImageStatus.TODO
    error: str | None = None
    changed: bool = False
    annotation_count: int = 0


@dataclass(frozen=True)
class Label:
    """A class name. ``id`` is stable and becomes the COCO category id."""

    id: int
    name: str
    color: str = "#ff0000"
    hotkey: str | None = None


@dataclass(frozen=True)
class MaskLayer:
    """One annotated object on one image.

    ``rle`` is the mask in the image's upright frame, holes and every part
    kept. ``z`` orders layers back (low) to front (high). ``prompts`` records
    how the mask was made (points, boxes, text, model) as JSON-able data.
    Times are seconds since the epoch (UTC). ``track_id`` is the track the
    layer belongs to (``None``: none); ``edited`` is False only for a layer
    propagation wrote and no person touched since, whose ``object_score`` is
    the model's object score logit (``None`` otherwise).
    """

    id: int
    image_id: int
    label_id: int | None
    rle: RLE
    z: int = 0
    visible: bool = True
    locked: bool = False
    score: float | None = None
    prompts: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    track_id: int | None = None
    edited: bool = True
    object_score: float | None = None


@dataclass(frozen=True)
class Track:
    """One object across the frames of a sequence, with one label.

    ``id`` is the object id SAM 2's video predictor knows it by (``obj_id``).
    """

    id: int
    label_id: int | None
    name: str | None
