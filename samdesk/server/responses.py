"""Pydantic response bodies (for the OpenAPI page and the shapes clients read).

Masks: ``json`` is polygons of ``[x, y]`` integer pixels; ``rle`` a COCO RLE
``{size: [H, W], counts: str}``; ``binary`` answers npz bytes instead of JSON.
``time`` is seconds spent on the request.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class EmbedResponse(BaseModel):
    image_id: str
    time: float
    embeddings: Any | None = None


class SamSegmentResponse(BaseModel):
    masks: Any
    low_res_masks: Any
    scores: list[float]
    time: float


class Sam2Prediction(BaseModel):
    masks: Any
    confidence: float
    format: str


class Sam2SegmentResponse(BaseModel):
    predictions: list[Sam2Prediction]
    time: float


class GroundedPrediction(BaseModel):
    masks: Any
    box: list[float]
    phrase: str
    score: float
    confidence: float
    format: str


class GroundedSamResponse(BaseModel):
    predictions: list[GroundedPrediction]
    time: float
