"""Text prompt -> masks: a detector finds boxes, a mask engine segments each box.

``segment_text`` is the text tool's whole pipeline, shared by the worker and
the ``segment`` command: GroundingDINO turns a phrase into boxes, then the
mask engine (SAM, SAM 2, GrabCut) segments every box in one batched call,
and each object comes back labelled by the phrase that found it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samdesk.inference.engines.base import Box, Detector, Embedding, Engine, EngineError, Prompts


@dataclass
class TextObject:
    """One object the text prompt found, with its mask.

    ``box``: XYXY image pixels. ``score``: the detector's confidence (0..1).
    ``mask``: bool ``(H, W)`` in image pixels. ``mask_score``: the mask
    engine's estimate for the chosen candidate. ``logits``: float32
    ``(1, 256, 256)`` low-resolution logits to refine the mask with clicks,
    or ``None`` for engines that keep none (GrabCut).
    """

    phrase: str
    box: Box
    score: float
    mask: np.ndarray
    mask_score: float
    logits: np.ndarray | None = None


def _usable(box: np.ndarray) -> bool:
    """Whether a detector box has area (clipping can flatten one at an edge)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x1 > x0 and y1 > y0


def segment_text(
    detector: Detector,
    engine: Engine,
    rgb: np.ndarray,
    text: str,
    box_threshold: float = 0.3,
    text_threshold: float = 0.25,
    embedding: Embedding | None = None,
) -> list[TextObject]:
    """Detect the objects ``text`` names in ``rgb`` and segment each one.

    ``rgb``: ``(H, W, 3)`` uint8. ``embedding``: the engine's embedding of
    this image if the caller has one (from the cache); it is computed only
    when something was detected. Objects come best detector score first;
    nothing detected gives an empty list and the engine is not called.
    """
    detections = detector.detect(rgb, text, box_threshold, text_threshold)
    keep = [i for i in range(len(detections)) if _usable(detections.boxes[i])]
    if not keep:
        return []
    height, width = rgb.shape[:2]
    if embedding is None:
        embedding = engine.embed(rgb)
    elif tuple(embedding.image_size) != (height, width):
        raise EngineError(
            f"embedding is for a {embedding.image_size[1]}x{embedding.image_size[0]} image, "
            f"not this {width}x{height} one"
        )
    boxes: tuple[Box, ...] = tuple(
        (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        for b in (detections.boxes[i] for i in keep)
    )
    prediction = engine.predict(embedding, Prompts(boxes=boxes), multimask=False)
    best = prediction.best()
    objects = []
    for row, (index, box) in enumerate(zip(keep, boxes, strict=True)):
        candidate = int(best[row])
        logits = None
        if prediction.logits is not None:
            logits = prediction.logits[row, candidate][None].astype(np.float32)
        objects.append(
            TextObject(
                phrase=detections.phrases[index],
                box=box,
                score=float(detections.scores[index]),
                mask=prediction.masks[row, candidate].astype(bool),
                mask_score=float(prediction.scores[row, candidate]),
                logits=logits,
            )
        )
    return objects
