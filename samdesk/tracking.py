"""The plan of one propagation run over a frame sequence, built from the project.

Qt-free and torch-free: :func:`build_plan` reads the project (on the thread that
owns it) and gives an immutable :class:`TrackPlan`; the runner
(:func:`samdesk.inference.tracking.run_plan`) carries it out on a SAM 2 video
session and hands back :class:`FrameResult` values, which the caller writes with
``project.write_propagated``.

What conditions a run (a *conditioning input*, :class:`Conditioning`): every
person-made layer of the run's tracks (the layer's own points/box when the layer
is exactly what a video prompt made, see :func:`prompt_record`; else its mask),
every absent mark (an empty mask: "the object is not here"), and the ``extra``
inputs the caller brings (a new prompt from the command line or the window).
Frame indices are positions in ``project.frame_ids()`` (0-based); points and
boxes are upright image pixels, ``(x, y)`` and XYXY.

A run that may be killed keeps what it needs to resume under the project's meta
key :data:`RUN_KEY` (:func:`save_run`, :func:`load_run`, :func:`clear_run`);
:func:`resume_plans` turns it into the plans that finish the rest.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samdesk import images, masks
from samdesk.annotations import RLE, MaskLayer
from samdesk.errors import ImageReadError, ProjectError

DIRECTIONS = ("forward", "backward", "both")
RUN_KEY = "track_run"
"""The project meta key holding an unfinished run (JSON, see :func:`save_run`)."""


@dataclass(frozen=True)
class Conditioning:
    """One conditioning input of one track on one frame.

    Either ``points`` (``(x, y)`` upright pixels) with ``labels`` (1 positive,
    0 negative) and/or ``box`` (XYXY pixels), or ``mask`` (a person-made layer,
    or an empty mask for an absent mark). ``layer_id`` is the stored layer it
    came from (``None`` for a new prompt: the runner reports the mask such a
    prompt makes, so the caller can store it as a person-made layer).
    """

    frame: int
    track_id: int
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: RLE | None = None
    layer_id: int | None = None

    @property
    def is_prompt(self) -> bool:
        """Points or a box (``add_prompt``), not a mask (``add_mask``)."""
        return self.mask is None


@dataclass(frozen=True)
class TrackPlan:
    """What one run does: every track in ``conditioning`` is tracked together.

    ``start`` is the frame index propagation starts from (it is visited);
    ``max_frames`` is how many frames past ``start`` to go (``None``: to the
    end), per direction; ``both`` is forward, then backward from the same start.
    """

    frame_ids: tuple[int, ...]
    frame_paths: tuple[Path, ...]
    conditioning: tuple[Conditioning, ...]
    start: int
    direction: str
    max_frames: int | None
    frame_size: tuple[int, int] = (0, 0)
    """``(height, width)`` of every frame."""

    @property
    def track_ids(self) -> tuple[int, ...]:
        return tuple(sorted({c.track_id for c in self.conditioning}))

    def conditioned(self) -> set[tuple[int, int]]:
        """``(frame, track_id)`` pairs a person made: never written by the run."""
        return {(c.frame, c.track_id) for c in self.conditioning}

    def order(self) -> list[int]:
        """Frame indices in the order the run visits them (see :func:`visit_order`)."""
        return visit_order(self.start, self.direction, self.max_frames, len(self.frame_ids))


@dataclass(frozen=True)
class FrameResult:
    """A propagated mask of one track on one frame, with the model's object score logit."""

    image_id: int
    track_id: int
    rle: RLE
    object_score: float


def visit_order(start: int, direction: str, max_frames: int | None, n_frames: int) -> list[int]:
    """Frame indices visited, in order, as SAM 2's ``propagate_in_video`` visits them:
    forward ``start .. start + max_frames`` (clipped), backward down to
    ``start - max_frames`` (nothing from frame 0), ``both`` the one then the other."""
    if direction not in DIRECTIONS:
        raise ProjectError(f"direction {direction!r}: use forward, backward or both")
    span = n_frames if max_frames is None else max_frames
    forward = list(range(start, min(start + span, n_frames - 1) + 1))
    backward = list(range(start, max(start - span, 0) - 1, -1)) if start > 0 else []
    return {"forward": forward, "backward": backward, "both": forward + backward}[direction]


# ------------------------------------------------------------------ prompts
def mask_digest(rle: RLE) -> str:
    """A short digest of a mask's RLE: equal digests, equal masks."""
    text = f"{rle['size'][0]}x{rle['size'][1]}:{rle['counts']}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def prompt_record(points: Sequence[tuple[float, float]], labels: Sequence[int],
                  box: Sequence[float] | None, model: str, rle: RLE) -> dict[str, Any]:
    """The ``prompts`` JSON of a layer a video prompt made: the window's layout
    (``points`` as ``[x, y, positive]``, ``box``, ``model``) plus ``video`` and the
    digest of the mask it made, so a later plan uses these prompts again (the same
    memory as the first run) as long as nobody changed the mask."""
    return {"points": [[float(x), float(y), int(bool(lab))] for (x, y), lab
                       in zip(points, labels, strict=True)],
            "box": [float(v) for v in box] if box is not None else None,
            "model": model, "video": True, "mask_sha1": mask_digest(rle)}


def layer_conditioning(frame: int, layer: MaskLayer) -> Conditioning:
    """A person-made layer as a conditioning input: its video prompt when its mask is
    still exactly what that prompt made, else the mask itself."""
    assert layer.track_id is not None
    made = layer.prompts or {}
    if made.get("video") and made.get("mask_sha1") == mask_digest(layer.rle):
        points = tuple((float(p[0]), float(p[1])) for p in made.get("points") or ())
        labels = tuple(int(p[2]) for p in made.get("points") or ())
        box = made.get("box")
        if points or box:
            return Conditioning(frame, layer.track_id, points, labels,
                                tuple(float(v) for v in box) if box else None,  # type: ignore[arg-type]
                                layer_id=layer.id)
    return Conditioning(frame, layer.track_id, mask=layer.rle, layer_id=layer.id)


# --------------------------------------------------------------------- plan
def _frame_size(project: Any, frame_ids: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` shared by every frame; a :class:`ProjectError` naming the
    first frame that cannot be read or is of another size."""
    project.ensure_image_infos(list(frame_ids))
    size: tuple[int, int] | None = None
    first = ""
    for image_id in frame_ids:
        record = project.image(image_id)
        if record.width is None or record.height is None:
            raise ProjectError(f"{project.image_file(record)}: cannot be read"
                               f"{': ' + record.error if record.error else ''}")
        if size is None:
            size, first = (record.height, record.width), record.path
        elif (record.height, record.width) != size:
            raise ProjectError(f"{project.image_file(record)}: {record.width}x{record.height}, "
                               f"but the frames are {size[1]}x{size[0]} ({first}); every "
                               "frame of a sequence must be one size")
    if size is None:
        raise ProjectError(f"{project.folder}: no frames")
    return size


def build_plan(project: Any, track_ids: Sequence[int], start_image_id: int,
               direction: str = "forward", frames: int | None = None,
               extra: Sequence[Conditioning] = ()) -> TrackPlan:
    """The plan that propagates ``track_ids`` (and the tracks of ``extra``) from the
    frame showing ``start_image_id``.

    ``frames`` is how many frames past the start to go (``None``: to the end).
    An ``extra`` input replaces what is stored for its track on its frame. A
    track with no conditioning input at all, a start image that is not a frame,
    or frames that are not one size raise :class:`ProjectError` naming it.
    """
    if direction not in DIRECTIONS:
        raise ProjectError(f"direction {direction!r}: use forward, backward or both")
    if frames is not None and frames < 1:
        raise ProjectError(f"frames {frames}: give at least 1 (or none: to the end)")
    frame_ids = tuple(project.frame_ids())
    index = {image_id: i for i, image_id in enumerate(frame_ids)}
    if start_image_id not in index:
        raise ProjectError(f"image {start_image_id} is not a frame of {project.folder}")
    height, width = _frame_size(project, frame_ids)
    replaced = {(c.frame, c.track_id) for c in extra}
    conditioning: list[Conditioning] = []
    tracks = sorted(set(track_ids) | {c.track_id for c in extra})
    for track_id in tracks:
        project.track(track_id)  # an unknown id raises, naming it
        for image_id, layer in project.track_layers(track_id).items():
            frame = index.get(image_id)
            if not layer.edited or frame is None or (frame, track_id) in replaced:
                continue
            if tuple(layer.rle["size"]) != (height, width):
                continue  # an unfitting mask (its image was replaced): never drawn nor used
            conditioning.append(layer_conditioning(frame, layer))
        for image_id in project.absent_frames(track_id):
            frame = index.get(image_id)
            if frame is not None and (frame, track_id) not in replaced:
                conditioning.append(Conditioning(frame, track_id,
                                                 mask=masks.empty(height, width)))
    for item in extra:
        if not 0 <= item.frame < len(frame_ids):
            raise ProjectError(f"frame {item.frame}: the sequence has frames 0 to "
                               f"{len(frame_ids) - 1}")
        conditioning.append(item)
    have = {c.track_id for c in conditioning}
    for track_id in tracks:
        if track_id not in have:
            raise ProjectError(f"track {track_id} has no mask a person made on any frame: "
                               "prompt it on one frame first")
    if not tracks:
        raise ProjectError("no track to propagate")
    conditioning.sort(key=lambda c: (c.frame, c.track_id))
    paths = tuple(project.image_file(project.image(i)) for i in frame_ids)
    return TrackPlan(frame_ids, paths, tuple(conditioning), index[start_image_id], direction,
                     frames, (height, width))


# ------------------------------------------------------------- frame source
class PathFrames:
    """The plan's frames as a video engine's ``FrameSource``: ``rgb(i)`` is frame ``i``
    decoded upright, ``(H, W, 3)`` uint8, by the core's :func:`samdesk.images.load_rgb`.

    Nothing is decoded up front; the last ``keep`` frames decoded stay in memory
    (the engine keeps its own bounded cache of preprocessed frames).
    """

    def __init__(self, paths: Sequence[Path], size: tuple[int, int] | None = None,
                 keep: int = 2) -> None:
        self.paths = tuple(paths)
        self.size = size
        self.keep = keep
        self._recent: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()  # the engine may read ahead on a helper thread

    def __len__(self) -> int:
        return len(self.paths)

    def rgb(self, index: int) -> np.ndarray:
        with self._lock:
            found = self._recent.get(index)
        if found is not None:
            return found
        rgb = images.load_rgb(self.paths[index])
        with self._lock:
            if self.size is None:
                self.size = (int(rgb.shape[0]), int(rgb.shape[1]))
            elif rgb.shape[:2] != tuple(self.size):
                raise ImageReadError(self.paths[index], f"{rgb.shape[1]}x{rgb.shape[0]}, but "
                                     f"the frames are {self.size[1]}x{self.size[0]}")
            self._recent[index] = rgb
            while len(self._recent) > self.keep:
                self._recent.pop(next(iter(self._recent)))
        return rgb


def frames_of(plan: TrackPlan) -> PathFrames:
    """A :class:`PathFrames` over ``plan``'s frame files."""
    return PathFrames(plan.frame_paths, plan.frame_size)


# --------------------------------------------------------- resumable runs
@dataclass
class RunState:
    """An unfinished run, as kept under :data:`RUN_KEY`: the plans still to do
    (``segments``: start image id, direction, frames past the start), how many
    frames of the first were visited, and the model that ran it."""

    tracks: list[int]
    segments: list[dict[str, Any]]
    model: str
    checkpoint: str | None = None
    device: str = "auto"
    visited: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"tracks": self.tracks, "segments": self.segments,
                           "model": self.model, "checkpoint": self.checkpoint,
                           "device": self.device, "visited": self.visited, **self.extra})

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        known = ("tracks", "segments", "model", "checkpoint", "device", "visited")
        return cls([int(t) for t in data["tracks"]], list(data["segments"]), str(data["model"]),
                   data.get("checkpoint"), str(data.get("device", "auto")),
                   int(data.get("visited", 0)),
                   {k: v for k, v in data.items() if k not in known})


def _meta_value(project: Any, key: str) -> str | None:
    """The store's meta ``key`` (a core module reads the project's own connection)."""
    with project._mutex:
        found = project._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if found is None else str(found[0])


def _set_meta_value(project: Any, key: str, value: str | None) -> None:
    """Write (``None``: delete) meta ``key`` in one transaction, outside the undo history."""
    project._refuse_edit()
    with project._mutex, project._write("the track run's progress"):
        if value is None:
            project._conn.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            project._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def load_run(project: Any) -> RunState | None:
    """The unfinished run of ``project``, or ``None``."""
    text = _meta_value(project, RUN_KEY)
    if not text:
        return None
    try:
        return RunState.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProjectError(f"{project.folder}: the interrupted track run kept in the store "
                           f"cannot be read ({exc}); run samdesk track again without "
                           "--resume") from None


def save_run(project: Any, state: RunState) -> None:
    """Keep ``state`` in the project's meta (outside the undo history)."""
    _set_meta_value(project, RUN_KEY, state.to_json())


def clear_run(project: Any) -> None:
    _set_meta_value(project, RUN_KEY, None)


def _resume_masks(project: Any, tracks: Sequence[int], image_id: int, frame: int,
                  conditioned: set[tuple[int, int]]) -> list[Conditioning]:
    """The propagated masks on the last frame written, as mask inputs (so the rest of
    the run goes on from what was there); empty ones and person-made ones are left out."""
    found = []
    for track_id in tracks:
        layer = project.track_layers(track_id).get(image_id)
        if (layer is None or layer.edited or (frame, track_id) in conditioned
                or masks.is_empty(layer.rle)):
            continue
        found.append(Conditioning(frame, track_id, mask=layer.rle, layer_id=layer.id))
    return found


def resume_plans(project: Any, state: RunState) -> list[TrackPlan]:
    """The plans that finish ``state``'s run: the first segment goes on from its last
    frame visited (conditioned also on the masks written there), the rest as planned.
    Tracks deleted since are left out; an empty list means nothing is left to do."""
    known = {t.id for t in project.tracks()}
    tracks = [t for t in state.tracks if t in known]
    if not tracks:
        return []
    frame_ids = project.frame_ids()
    plans: list[TrackPlan] = []
    for n, segment in enumerate(state.segments):
        start_id, direction, frames = (int(segment["start"]), str(segment["direction"]),
                                       segment.get("frames"))
        if start_id not in frame_ids:
            continue
        if n > 0 or state.visited == 0:
            plans.append(build_plan(project, tracks, start_id, direction, frames))
            continue
        start = frame_ids.index(start_id)
        order = visit_order(start, direction, frames, len(frame_ids))
        done = min(state.visited, len(order))
        forward = visit_order(start, "forward", frames, len(frame_ids))
        pieces: list[tuple[int, str, int | None]] = []  # (frame, direction, frames past it)
        if direction == "both" and done < len(forward):
            pieces.append((forward[done - 1], "forward", len(forward) - done))
        if direction == "both" and done <= len(forward):
            pieces.append((start, "backward", frames))
        elif done < len(order):
            way = "backward" if direction == "both" else direction
            pieces.append((order[done - 1], way, len(order) - done))
        for frame, way, count in pieces:
            if count is not None and count < 1:
                continue
            base = build_plan(project, tracks, frame_ids[frame], way, count)
            extra = _resume_masks(project, tracks, frame_ids[frame], frame, base.conditioned())
            plans.append(build_plan(project, tracks, frame_ids[frame], way, count, extra)
                         if extra else base)
    return plans
