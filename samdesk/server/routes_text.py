"""Text to masks, ``POST /grounded_sam/segment_image`` (ComfyUI's
GroundingDinoSAMSegment node as a service).

GroundingDINO finds the objects the phrase names (``threshold`` on the box
score, ``text_threshold`` on the phrase), then SAM 2 (or the named
segmenter) masks each box. One prediction per object: mask, box XYXY, phrase
and score. Nothing found is an empty list with 200. Without the GroundingDINO
package installed, the route answers 501 saying so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from samdesk.inference.engines import packages
from samdesk.inference.engines.base import Prompts
from samdesk.server import formats, images, served
from samdesk.server.common import Context
from samdesk.server.errors import ApiError
from samdesk.server.requests import GroundedSamRequest
from samdesk.server.responses import GroundedPrediction, GroundedSamResponse

router = APIRouter()


def detector_missing() -> str | None:
    """What the text detector lacks here (the ``text`` extra), one line; None if nothing."""
    return packages.missing("groundingdino")


def _require_detector() -> None:
    problem = detector_missing()
    if problem is not None:
        raise ApiError(501, f"this server cannot read text prompts: {problem}")


def find_objects(ctx: Context, rgb: np.ndarray, data: bytes, text: str, model: str,
                 threshold: float = 0.3, text_threshold: float | None = None,
                 detector: str | None = None) -> list[dict[str, Any]]:
    """Each object ``text`` names: ``{mask, box, phrase, score, confidence}``, best first."""
    _require_detector()
    name = served.detector(ctx.settings, detector)
    found = ctx.scheduler.detect(name, rgb, text, threshold,
                                 0.25 if text_threshold is None else text_threshold)
    height, width = rgb.shape[:2]
    boxes = np.asarray(found.boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = [i for i in np.argsort(-np.asarray(found.scores)) if
            boxes[i, 2] - boxes[i, 0] >= 1 and boxes[i, 3] - boxes[i, 1] >= 1]
    if not keep:
        return []
    image_id = images.image_id_of(data)
    ctx.scheduler.embed(model, rgb, image_id, ctx.scope)
    chosen = tuple(tuple(float(v) for v in boxes[i]) for i in keep)
    proposal = ctx.scheduler.predict(model, image_id, Prompts(boxes=chosen),  # type: ignore[arg-type]
                                     None, False, ctx.scope)
    best = proposal.best()
    return [{"mask": proposal.mask(row, int(best[row])), "box": list(chosen[row]),
             "phrase": found.phrases[i], "score": float(found.scores[i]),
             "confidence": float(proposal.scores[row, int(best[row])])}
            for row, i in enumerate(keep)]


@router.post("/grounded_sam/segment_image", response_model=GroundedSamResponse,
             tags=["Text"])
def grounded_sam(body: GroundedSamRequest, request: Request, response: Response) -> object:
    """Masks of the objects a phrase names ("car . person")."""
    ctx = Context.of(request, body, response)
    _require_detector()
    model = served.any_segmenter(ctx.settings, body.sam2_version_id)
    data, rgb = ctx.image(body.image)
    objects = find_objects(ctx, rgb, data, body.prompt, model, body.threshold,
                           body.text_threshold, body.detector)
    if body.format == "binary":
        height, width = rgb.shape[:2]
        masks = (np.stack([o["mask"] for o in objects]) if objects
                 else np.zeros((0, height, width), bool))
        data = formats.npz_bytes(
            masks=masks, boxes=np.asarray([o["box"] for o in objects], np.float32).reshape(-1, 4),
            scores=np.asarray([o["score"] for o in objects], np.float32),
            phrases=np.asarray([o["phrase"] for o in objects], dtype=str))
        return Response(data, media_type="application/octet-stream", headers=ctx.headers())
    predictions = [GroundedPrediction(masks=formats.mask_out(o["mask"], body.format),
                                      box=o["box"], phrase=o["phrase"], score=o["score"],
                                      confidence=o["confidence"], format=body.format)
                   for o in objects]
    return GroundedSamResponse(predictions=predictions, time=ctx.seconds())
