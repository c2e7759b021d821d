"""The engine protocol shared by every model family.

Coordinates are always in pixels of the upright image the caller passed to
``embed``: points are ``(x, y)``, boxes are ``(x0, y0, x1, y1)`` (XYXY).
Masks are boolean arrays of shape ``(objects, candidates, height, width)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

# defined in the core so that models/ raises it too; engines and their callers import it here
from samdesk.errors import EngineError as EngineError

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Point:
    """A click at ``(x, y)`` image pixels; ``positive`` False marks background."""

    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class Prompts:
    """What a person asked for on one image.

    With no box or one box, the points and the box describe one object.
    With several boxes, each box is one object (batched) and ``points`` must
    be empty.
    """

    points: tuple[Point, ...] = ()
    boxes: tuple[Box, ...] = ()

    def __post_init__(self) -> None:
        if len(self.boxes) > 1 and self.points:
            raise EngineError("points cannot be combined with several boxes")
        for box in self.boxes:
            x0, y0, x1, y1 = box
            if not (x1 > x0 and y1 > y0):
                raise EngineError(f"box {box} must have x1 > x0 and y1 > y0")

    @property
    def is_empty(self) -> bool:
        return not self.points and not self.boxes

    @property
    def object_count(self) -> int:
        return max(1, len(self.boxes))


@dataclass
class Embedding:
    """The encoder's output for one image, as numpy arrays.

    ``image_size`` is ``(height, width)`` of the image given to ``embed``;
    ``tensors`` maps names to float arrays (the family decides the names).
    ``model_id`` says which model made it; an engine refuses another's.
    """

    model_id: str
    image_size: tuple[int, int]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.tensors.values()))


@dataclass
class Prediction:
    """Masks for the objects of one request.

    ``masks``: bool ``(objects, candidates, H, W)`` in image pixels.
    ``scores``: float32 ``(objects, candidates)``, the model's IoU estimate.
    ``logits``: float32 ``(objects, candidates, 256, 256)`` low-resolution
    logits to pass back as ``mask_input`` (one candidate's ``(1, 256, 256)``)
    so the next click refines the same object; ``None`` for engines that have
    none (GrabCut).
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray | None = None

    def best(self) -> np.ndarray:
        """Index of the best candidate for each object, shape ``(objects,)``."""
        return np.argmax(self.scores, axis=1)


@dataclass
class Detections:
    """Objects a text detector found: boxes XYXY in image pixels."""

    boxes: np.ndarray  # float32 (N, 4)
    phrases: list[str]
    scores: np.ndarray  # float32 (N,)

    def __len__(self) -> int:
        return len(self.phrases)


@runtime_checkable
class Engine(Protocol):
    """A promptable mask model: encode once, decode many prompts."""

    model_id: str

    def embed(self, rgb: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image."""
        ...

    def predict(
        self,
        embedding: Embedding,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """Decode ``prompts`` on an image encoded by ``embed``.

        ``mask_input``: float32 ``(1, 256, 256)`` logits of a previous
        prediction of the same object, to refine it.
        """
        ...


@runtime_checkable
class Detector(Protocol):
    """A text-prompted box detector (GroundingDINO)."""

    model_id: str

    def detect(
        self,
        rgb: np.ndarray,
        text: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> Detections:
        """Find the objects named in ``text`` (phrases split by ``.``)."""
        ...
