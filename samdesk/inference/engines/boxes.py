"""Boxes -> masks: one mask per box on an image already encoded once.

``segment_boxes`` is shared by ``samdesk batch --from-boxes`` and the
worker's answer to the window's "masks from boxes" key: every box of an
image goes to the engine in batched ``predict`` calls on one embedding (at
most :data:`CHUNK` boxes a call, so that ``(boxes, 1, H, W)`` masks of a big
photo stay within memory), each with ``multimask=False``, as SAM's authors
advise for an unambiguous box prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samdesk.inference.engines.base import Box, Embedding, Engine, Prompts

CHUNK = 32
"""The most boxes decoded in one ``predict`` call."""


@dataclass
class BoxMask:
    """The mask for one box: bool ``(H, W)`` image pixels, and the engine's score."""

    mask: np.ndarray
    score: float


def segment_boxes(engine: Engine, embedding: Embedding,
                  boxes: Sequence[Box]) -> list[BoxMask]:
    """A mask for each of ``boxes`` (XYXY image pixels, each with area), in order.

    ``embedding`` is the engine's embedding of the image (``engine.embed``
    once per image). No boxes: no call, an empty list.
    """
    found: list[BoxMask] = []
    for start in range(0, len(boxes), CHUNK):
        chunk = tuple((float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                      for b in boxes[start:start + CHUNK])
        prediction = engine.predict(embedding, Prompts(boxes=chunk), multimask=False)
        best = prediction.best()
        for row in range(len(chunk)):
            candidate = int(best[row])
            found.append(BoxMask(np.asarray(prediction.masks[row, candidate], dtype=bool),
                                 float(prediction.scores[row, candidate])))
    return found
