"""Propagation on the worker thread: one :class:`Propagate` job, frame by frame.

The worker hands a job here with its loaded segmenter's name, checkpoint and
device; :class:`VideoEngines` loads SAM 2's video engine
(``samdesk.inference.engines.sam2_video.load_video_engine``) for that model once
and keeps it for the next run, and :func:`run_propagation` runs the plan with
the runner (``samdesk.inference.tracking.run_plan``) on lazily decoded frames
(:class:`FileFrames`), sending each mask back as it comes. Between frames the
worker answers clicks (see ``InferenceWorker._between_frames``); a cancel
stops the run after the frame in progress. Qt-free: the worker turns the
callbacks into signals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samdesk.inference.engines.base import EngineError
from samdesk.inference.models import checkpoints
from samdesk.inference.models.registry import REMOTE_PREFIX, ModelSpec, get_spec
from samdesk.inference.worker.results import PropagationDone

if TYPE_CHECKING:
    from samdesk.inference.worker.requests import Propagate
    from samdesk.tracking import FrameResult

VideoLoader = Callable[[ModelSpec, Path, str], Any]
"""``(spec, checkpoint, device) -> SAM2VideoEngine``."""
ModelSource = tuple[str, Path | None, str]
"""``(registry name, checkpoint or None, device)`` of a loaded model."""

VIDEO_FAMILIES = ("sam2",)


def load_video(spec: ModelSpec, checkpoint: Path, device: str) -> Any:
    """The default :data:`VideoLoader` (imports torch and sam2 only when first used)."""
    from samdesk.inference.engines.sam2_video import load_video_engine

    return load_video_engine(spec, checkpoint, device)


def propagation_refusal(name: str) -> str | None:
    """Why model ``name`` cannot propagate (one line), or None when it can (SAM 2 / 2.1)."""
    if not name:
        return "no segmentation model is loaded yet"
    if name.startswith(REMOTE_PREFIX):
        return f"{name} runs on a server; propagation needs a local SAM 2 or SAM 2.1 model"
    try:
        spec = get_spec(name)
    except Exception as exc:  # noqa: BLE001 - an unknown name is a reason, not a crash
        return str(exc)
    if spec.family not in VIDEO_FAMILIES:
        return f"{spec.title} cannot propagate; propagation needs a SAM 2 or SAM 2.1 model"
    return None


class FileFrames:
    """A frame source over image files: frame ``i`` is ``image_loader(paths[i])``,
    decoded when asked ((H, W, 3) uint8 upright RGB); nothing is kept here."""

    def __init__(self, paths: Sequence[Path], image_loader: Callable[[Path], np.ndarray]) -> None:
        self._paths = tuple(Path(p) for p in paths)
        self._load = image_loader

    def __len__(self) -> int:
        return len(self._paths)

    def rgb(self, index: int) -> np.ndarray:
        return self._load(self._paths[index])


class VideoEngines:
    """The video engine of the model last propagated with, kept for the next run."""

    def __init__(self, loader: VideoLoader = load_video) -> None:
        self._loader = loader
        self._key: tuple[str, str, str] | None = None
        self._engine: Any = None

    def get(self, name: str, checkpoint: Path | None, device: str) -> Any:
        """The video engine of ``name``; raises :class:`EngineError` when it has none."""
        why = propagation_refusal(name)
        if why is not None:
            raise EngineError(f"propagation: {why}")
        if checkpoint is None:
            checkpoint = checkpoints.installed(name)
        if checkpoint is None:
            raise EngineError(f"propagation: {name} has no checkpoint installed "
                              "(File > Models fetches or adds one)")
        key = (name, str(checkpoint), device)
        if key != self._key:
            self._engine, self._key = None, None  # free the old one before loading
            self._engine = self._loader(get_spec(name), Path(checkpoint), device)
            self._key = key
        return self._engine

    def drop(self) -> None:
        self._engine, self._key = None, None

    def keep_only(self, name: str) -> None:
        """The segmenter became ``name``: free a video engine of another model."""
        if self._key is not None and self._key[0] != name:
            self.drop()

    @property
    def loaded(self) -> str | None:
        """The model name of the video engine kept, if any."""
        return None if self._key is None else self._key[0]


def run_propagation(
    job: Propagate,
    engines: VideoEngines,
    loaded: ModelSource | None,
    image_loader: Callable[[Path], np.ndarray],
    on_frame: Callable[[FrameResult, int, int], None],
    between_frames: Callable[[int, int], None],
    cancelled: Callable[[], bool],
) -> PropagationDone:
    """Run ``job`` to its end or until ``cancelled()``; what happened, in one line.

    ``loaded``: the segmenter loaded now, used where the job names no model.
    ``on_frame(result, done, total)`` gets each mask as it comes;
    ``between_frames(done, total)`` runs after each frame (frames visited, of
    all). Raises what loading or the model raises; masks sent before stay sent.
    """
    from samdesk.inference.tracking import run_plan

    name, checkpoint, device = job.model, job.checkpoint, job.device
    if name is None:
        if loaded is None:
            raise EngineError("propagation: no segmentation model is loaded; "
                              "choose SAM 2 or SAM 2.1 first")
        name, checkpoint = loaded[0], checkpoint or loaded[1]
        device = device or loaded[2]
    engine = engines.get(name, checkpoint, device or "auto")
    frames = FileFrames(job.plan.frame_paths, image_loader)
    state = {"sent": 0, "done": 0, "total": 0}

    def frame(result: FrameResult) -> None:
        state["sent"] += 1
        on_frame(result, state["done"], state["total"])

    def progress(done: int, total: int) -> None:
        state["done"], state["total"] = done, total
        between_frames(done, total)

    run_plan(engine, job.plan, frames, frame, progress, cancelled)
    sent, done, total = state["sent"], state["done"], state["total"]
    masks = f"{sent} mask{'s' * (sent != 1)}"
    if cancelled() and done < total:
        return PropagationDone(job.request_id, sent, True,
                               f"Propagation cancelled after {done} of {total} frames; "
                               f"the {masks} written are kept")
    return PropagationDone(job.request_id, sent, False,
                           f"Propagated {job.plan.direction}: {masks} over {done} frames")
