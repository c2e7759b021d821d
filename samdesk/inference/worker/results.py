"""What the inference worker sends back to the window: immutable results of plain data.

Every result carries the id of the request it answers (see
:mod:`samdesk.inference.worker.requests`); the client drops those no longer current.
Masks are bool ``(H, W)`` arrays in upright image pixels, made read-only.
Qt-free and torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import numpy as np

from samdesk.annotations import RLE
from samdesk.inference.engines.base import Detections, Prediction, Prompts

if TYPE_CHECKING:
    from samdesk.tracking import FrameResult


@dataclass(frozen=True)
class ModelLoaded:
    """Model ``name`` now serves as the ``slot`` engine on ``device``, its encoder in
    ``runtime`` (``torch``, ``onnx``, ``onnx-int8``); ``runtime_note``: why that is not the
    runtime asked for (or why auto chose it), one line, or ``""``."""

    request_id: int
    name: str
    slot: str
    device: str
    runtime: str = "torch"
    runtime_note: str = ""


CandidateKey = tuple[int, int]
"""``(object, candidate)``: indices into a prediction's ``scores``."""


def distinct_candidates(masks: np.ndarray, scores: np.ndarray) -> list[int]:
    """Indices of one object's distinct candidates, in candidate order.

    ``masks``: bool ``(candidates, H, W)``; ``scores``: ``(candidates,)``. Of
    candidates with pixel-identical masks only the best-scoring one is kept
    (the first of equal scores), so Tab never shows the same mask twice.
    """
    kept: list[int] = []
    for c in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        if not any(np.array_equal(masks[c], masks[k]) for k in kept):
            kept.append(int(c))
    return sorted(kept)


def distinct(prediction: Prediction) -> Prediction:
    """``prediction`` without repeated candidate masks, scores and logits kept with their masks.

    A candidate is dropped when its mask repeats a better one for every
    object (the candidate axis stays one axis for all objects; with one
    object, as from a click or a box, every candidate left is distinct).
    """
    masks, scores = prediction.masks, prediction.scores
    if masks.shape[1] < 2:
        return prediction
    keep = sorted({c for i in range(masks.shape[0])
                   for c in distinct_candidates(masks[i], scores[i])})
    if len(keep) == masks.shape[1]:
        return prediction
    logits = None if prediction.logits is None else prediction.logits[:, keep]
    return Prediction(masks[:, keep], scores[:, keep], logits)


def _frozen_masks(masks: Mapping[CandidateKey, np.ndarray]) -> Mapping[CandidateKey, np.ndarray]:
    for mask in masks.values():
        mask.setflags(write=False)
    return MappingProxyType(dict(masks))


@dataclass(frozen=True)
class PredictResult:
    """The answer to one :class:`Predict`: every score and logit, and the masks made so far.

    ``scores``: float32 ``(objects, candidates)``; ``logits``: float32
    ``(objects, candidates, 256, 256)`` for refining, or None (GrabCut);
    ``masks``: bool ``(H, W)`` image-pixel masks by ``(object, candidate)``.
    Engines without ``propose`` (GrabCut) answer with every candidate; SAM and
    SAM 2 answer at once with each object's best candidate, and the others
    follow as :class:`CandidateMasks` of the same ``request_id``. When the
    request asked for a ``preview``, the best candidates come as ``previews``
    (bool ``(h, w)``, the image at screen size) and their full-resolution masks
    follow first.
    """

    request_id: int
    image_key: str
    prompts: Prompts
    scores: np.ndarray
    logits: np.ndarray | None
    masks: Mapping[CandidateKey, np.ndarray]
    previews: Mapping[CandidateKey, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "masks", _frozen_masks(self.masks))
        object.__setattr__(self, "previews", _frozen_masks(self.previews))

    @classmethod
    def of(cls, request_id: int, image_key: str, prompts: Prompts,
           prediction: Prediction) -> PredictResult:
        """A complete result holding every candidate of ``prediction``."""
        objects, candidates = prediction.scores.shape
        masks = {(i, c): prediction.masks[i, c] for i in range(objects) for c in range(candidates)}
        return cls(request_id, image_key, prompts, prediction.scores, prediction.logits, masks)

    @property
    def complete(self) -> bool:
        """Whether every candidate's mask is here."""
        return len(self.masks) == self.scores.size

    @property
    def prediction(self) -> Prediction:
        """The complete answer as :class:`Prediction` (what ``Engine.predict`` returns)."""
        if not self.complete:
            raise ValueError(f"request {self.request_id}: candidates are still being upsampled")
        objects, candidates = self.scores.shape
        masks = np.stack([np.stack([self.masks[i, c] for c in range(candidates)])
                          for i in range(objects)])
        return Prediction(masks, self.scores, self.logits)

    def best(self) -> np.ndarray:
        """Index of each object's best-scoring candidate, shape ``(objects,)``."""
        return np.argmax(self.scores, axis=1)


@dataclass(frozen=True)
class CandidateMasks:
    """More masks for :class:`PredictResult` ``request_id`` (candidates upsampled later).

    ``masks``: bool ``(H, W)`` image-pixel masks by ``(object, candidate)``.
    """

    request_id: int
    image_key: str
    masks: Mapping[CandidateKey, np.ndarray]

    def __post_init__(self) -> None:
        object.__setattr__(self, "masks", _frozen_masks(self.masks))


@dataclass(frozen=True)
class DetectResult:
    """Boxes found for ``text`` and their masks; ``prediction`` is None when none were found."""

    request_id: int
    image_key: str
    text: str
    detections: Detections
    prediction: Prediction | None


@dataclass(frozen=True)
class BoxMasks:
    """The masks for the boxes of one :class:`~samdesk.inference.worker.requests.SegmentBoxes`.

    ``masks``: one COCO RLE per box, in the request's order, in upright image
    pixels and clipped to its box; None where nothing inside the box was found.
    ``scores``: the engine's estimate for each.
    """

    request_id: int
    image_key: str
    masks: tuple[RLE | None, ...]
    scores: tuple[float, ...]


EmbeddingStatus = Literal["queued", "computing", "ready", "failed"]


@dataclass(frozen=True)
class EmbeddingState:
    """Where an image's embedding stands, for the status bar.

    ``source`` (with ``"ready"``): ``"memory"``, ``"disk"`` or ``"computed"``;
    ``seconds``: how long the encode took (0 for a cache hit).
    """

    image_key: str
    status: EmbeddingStatus
    request_id: int = 0
    source: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps of request ``request_id`` (prefetching)."""

    request_id: int
    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class Failure:
    """Request ``request_id`` failed; ``message`` is one line a person can act on."""

    request_id: int
    message: str


@dataclass(frozen=True)
class TrackFrame:
    """One propagated mask of a :class:`~samdesk.inference.worker.requests.Propagate` run.

    ``frame``: the image id, track id, COCO RLE (upright image pixels) and the
    model's object score logit; the window writes it with
    ``project.write_propagated``. ``done`` / ``total``: frames visited so far
    and in all (a frame counts once for all its tracks).
    """

    request_id: int
    frame: FrameResult
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class PropagationDone:
    """A propagation run ended: ``frames`` masks were sent back; ``cancelled`` when a
    person stopped it (after the frame in progress); ``message`` says so in one line."""

    request_id: int
    frames: int
    cancelled: bool
    message: str
