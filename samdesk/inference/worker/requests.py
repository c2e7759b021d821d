"""What the window asks the inference worker, and the jobs the worker runs for it.

Requests are immutable dataclasses of plain Python and numpy objects, each
carrying the id the client gave it; the results that answer them live in
:mod:`samdesk.inference.worker.results` (re-exported here). The queue that
orders them, supersedes stale ones and turns them into jobs (:class:`Encode`,
:class:`UpsampleCandidate`) is :class:`samdesk.inference.worker.request_queue.RequestQueue`.
Qt-free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from samdesk.errors import SamdeskError
from samdesk.imagefiles import content_hash
from samdesk.inference.engines.base import Box, Prompts
from samdesk.inference.models.registry import MODELS, REMOTE_PREFIX, SEGMENTER, get_spec
from samdesk.inference.worker.results import (
    BoxMasks,
    CandidateKey,
    CandidateMasks,
    DetectResult,
    EmbeddingState,
    EmbeddingStatus,
    Failure,
    ModelLoaded,
    PredictResult,
    Progress,
    PropagationDone,
    TrackFrame,
)

__all__ = [  # the results are defined in samdesk.inference.worker.results, re-exported here
    "ImageRef",
    "SetModel",
    "FocusImage",
    "Predict",
    "DetectSegment",
    "Prefetch",
    "SegmentBoxes",
    "Propagate",
    "Request",
    "Encode",
    "UpsampleCandidate",
    "Job",
    "prefetch_list",
    "describe",
    "one_line",
    "BoxMasks",
    "CandidateKey",
    "CandidateMasks",
    "DetectResult",
    "EmbeddingState",
    "EmbeddingStatus",
    "Failure",
    "ModelLoaded",
    "PredictResult",
    "Progress",
    "PropagationDone",
    "TrackFrame",
]

if TYPE_CHECKING:
    from samdesk.inference.engines.upsample import Proposal
    from samdesk.tracking import TrackPlan


@dataclass(frozen=True)
class ImageRef:
    """An image file and its content hash (the embedding cache key)."""

    path: Path
    key: str

    @classmethod
    def from_path(cls, path: str | Path) -> ImageRef:
        """Hash the file now (reads it; the project usually knows the hash already)."""
        return cls(Path(path), content_hash(path))


# -- requests ----------------------------------------------------------------


@dataclass(frozen=True)
class SetModel:
    """Load model ``name`` (a registry name) from ``checkpoint`` on ``device``, its encoder
    in ``runtime`` (auto, torch, onnx, onnx-int8; ``None``: the default, auto)."""

    request_id: int
    name: str
    checkpoint: Path | None = None
    device: str = "cpu"
    runtime: str | None = None

    @property
    def slot(self) -> str:
        """``"segmenter"`` or ``"detector"``: the engine this request replaces."""
        if self.name.startswith(REMOTE_PREFIX):  # server:URL#MODEL: the kind of MODEL
            with contextlib.suppress(SamdeskError):
                return get_spec(self.name).kind
        spec = MODELS.get(self.name)
        return spec.kind if spec is not None else SEGMENTER


@dataclass(frozen=True)
class FocusImage:
    """The person is looking at ``image``: encode it first."""

    request_id: int
    image: ImageRef


@dataclass(frozen=True)
class Predict:
    """Masks for ``prompts`` on ``image`` (points (x, y), boxes XYXY, image pixels).

    ``mask_input``: float32 ``(1, 256, 256)`` logits of an earlier candidate of
    the same object; copied and made read-only. ``preview``: ``(h, w)`` screen
    pixels the window draws the whole image at; when much smaller than the
    image, the first answer carries the shown mask at about that size and the
    full-resolution mask follows (see :func:`samdesk.inference.worker.answers.answer`).
    """

    request_id: int
    image: ImageRef
    prompts: Prompts
    mask_input: np.ndarray | None = None
    multimask: bool = True
    preview: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.preview is not None and (len(self.preview) != 2 or min(self.preview) < 1):
            raise ValueError(f"preview must be (height, width) in pixels, got {self.preview}")
        if self.mask_input is not None:
            frozen = np.array(self.mask_input, dtype=np.float32)
            frozen.setflags(write=False)
            object.__setattr__(self, "mask_input", frozen)


@dataclass(frozen=True)
class DetectSegment:
    """Find the objects named in ``text`` on ``image``, then segment each box."""

    request_id: int
    image: ImageRef
    text: str
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    multimask: bool = False


@dataclass(frozen=True)
class Prefetch:
    """Encode these images, in order, whenever there is nothing else to do."""

    request_id: int
    images: tuple[ImageRef, ...] = ()


@dataclass(frozen=True)
class SegmentBoxes:
    """A mask for each of ``boxes`` (XYXY upright image pixels) on ``image``, in one
    embedding: the window's pending boxes made into masks. Never superseded nor
    dropped when the person moves to another image; answered by :class:`BoxMasks`."""

    request_id: int
    image: ImageRef
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Propagate:
    """Carry the tracks of ``plan`` through its frames with SAM 2's video predictor.

    ``model`` / ``checkpoint`` / ``device``: the SAM 2 or 2.1 model to use
    (a registry name); None: the segmenter loaded now, from its checkpoint.
    Runs on the worker thread frame by frame; each mask comes back as a
    :class:`TrackFrame`, then one :class:`PropagationDone` (or a
    :class:`Failure`). Never superseded; :meth:`InferenceClient.cancel`
    stops it after the frame in progress.
    """

    request_id: int
    plan: TrackPlan
    model: str | None = None
    checkpoint: Path | None = None
    device: str | None = None


Request = SetModel | FocusImage | Predict | DetectSegment | Prefetch | SegmentBoxes | Propagate


@dataclass(frozen=True)
class Encode:
    """The worker's job of making sure ``image`` is encoded.

    ``reason`` says who wants it; ``request_id`` is that request's id;
    ``position`` / ``total`` count prefetch images (1-based; 0 otherwise).
    """

    image: ImageRef
    request_id: int
    reason: Literal["focus", "predict", "prefetch"]
    position: int = 0
    total: int = 0


@dataclass(frozen=True)
class UpsampleCandidate:
    """The worker's job of upsampling one candidate the window has no mask of yet.

    ``proposal`` is the engine's answer to :class:`Predict` ``request_id``; it
    lives on the worker thread only. ``obj``, ``candidate`` index its scores.
    ``shown``: the window draws this candidate's preview, so its
    full-resolution mask is interactive work (it runs even between the chunks
    of an encode); the others wait for Tab at low priority.
    """

    request_id: int
    image: ImageRef
    proposal: Proposal
    obj: int
    candidate: int
    shown: bool = False


Job = SetModel | Predict | DetectSegment | Encode | UpsampleCandidate | SegmentBoxes | Propagate


def prefetch_list(images: Iterable[ImageRef], request_id: int) -> Prefetch:
    """A :class:`Prefetch` of ``images`` without repeats, keeping their order."""
    seen: dict[str, ImageRef] = {}
    for image in images:
        seen.setdefault(image.key, image)
    return Prefetch(request_id, tuple(seen.values()))


def describe(job: Job) -> str:
    """What a job does, for messages: 'encoding cat.jpg', 'loading sam_vit_b'."""
    if isinstance(job, SetModel):
        return f"loading {job.name}" + (f" from {job.checkpoint}" if job.checkpoint else "")
    if isinstance(job, Propagate):
        count = len(job.plan.frame_ids)
        return f"propagating {job.plan.direction} over {count} frame{'s' * (count != 1)}"
    verb = {Encode: "encoding", Predict: "segmenting", DetectSegment: "detecting on",
            UpsampleCandidate: "upsampling a candidate mask of",
            SegmentBoxes: "making masks from the boxes of"}[type(job)]
    return f"{verb} {job.image.path.name}"


def one_line(exc: BaseException, doing: str) -> str:
    """A one-line message for a failed job."""
    if isinstance(exc, SamdeskError):
        text = str(exc)
    elif isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        text = f"out of memory while {doing}; try a smaller model or the CPU"
    else:
        text = f"{doing} failed: {type(exc).__name__}: {exc}"
    return " ".join(text.split()) or f"{doing} failed"
