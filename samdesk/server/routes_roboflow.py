"""Roboflow Inference's SAM routes: ``/sam/*`` and ``/sam2/*``.

Embed once under an ``image_id``, then segment many prompts on it. Bodies are
Roboflow's entities (:mod:`samdesk.server.requests`); a SAM 2 prediction is
each prompt's most confident candidate, as Roboflow answers it.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request, Response

from samdesk.server import formats, served
from samdesk.server.common import Context
from samdesk.server.requests import (
    Sam2EmbedRequest,
    Sam2SegmentRequest,
    SamEmbedRequest,
    SamSegmentRequest,
)
from samdesk.server.responses import (
    EmbedResponse,
    Sam2Prediction,
    Sam2SegmentResponse,
    SamSegmentResponse,
)

router = APIRouter()
_BINARY = "application/octet-stream"


@router.post("/sam/embed_image", response_model=EmbedResponse, tags=["Roboflow SAM"])
def sam_embed(body: SamEmbedRequest, request: Request, response: Response) -> object:
    """Encode an image with SAM and cache it under ``image_id`` (its hash if none)."""
    ctx = Context.of(request, body, response)
    model = served.segmenter(ctx.settings, "sam", body.sam_version_id)
    image_id, embedding = ctx.embedded(model, body.image, body.image_id)
    return _embed_answer(ctx, image_id, embedding.tensors["image_embed"], body.format)


@router.post("/sam2/embed_image", response_model=EmbedResponse, tags=["Roboflow SAM 2"])
def sam2_embed(body: Sam2EmbedRequest, request: Request, response: Response) -> object:
    """Encode an image with SAM 2 and cache it under ``image_id`` (its hash if none)."""
    ctx = Context.of(request, body, response)
    model = served.segmenter(ctx.settings, "sam2", body.sam2_version_id)
    image_id, _ = ctx.embedded(model, body.image, body.image_id)
    return EmbedResponse(image_id=image_id, time=ctx.seconds())


def _embed_answer(ctx: Context, image_id: str, tensor: np.ndarray, fmt: str | None) -> object:
    if fmt == "binary":
        headers = {"X-Image-Id": image_id, **ctx.headers()}
        return Response(formats.npy_bytes(tensor), media_type=_BINARY, headers=headers)
    embeddings = tensor.tolist() if fmt == "json" else None
    return EmbedResponse(image_id=image_id, time=ctx.seconds(), embeddings=embeddings)


@router.post("/sam/segment_image", response_model=SamSegmentResponse, tags=["Roboflow SAM"])
def sam_segment(body: SamSegmentRequest, request: Request, response: Response) -> object:
    """Masks for ``point_coords`` / ``point_labels`` on an embedded (or sent) image."""
    ctx = Context.of(request, body, response)
    model = served.segmenter(ctx.settings, "sam", body.sam_version_id)
    prompts = formats.sam_points(body.point_coords, body.point_labels, ctx.settings)
    mask_input = formats.mask_input_array(body.mask_input)
    if body.has_mask_input is False:
        mask_input = None
    image_id, _ = ctx.embedded(model, body.image, body.image_id)
    proposal = ctx.scheduler.predict(model, image_id, prompts, mask_input,
                                     body.multimask_output, ctx.scope)
    candidates = proposal.scores.shape[1]
    masks = np.stack([proposal.mask(0, c) for c in range(candidates)])
    low_res = np.asarray(proposal.logits[0] if proposal.logits is not None
                         else np.zeros((candidates, 256, 256), np.float32))
    scores = [float(v) for v in proposal.scores[0]]
    if body.format == "binary":
        data = formats.npz_bytes(masks=masks, low_res_masks=low_res,
                                 scores=np.asarray(scores, np.float32))
        return Response(data, media_type=_BINARY, headers=ctx.headers())
    return SamSegmentResponse(
        masks=[(formats.polygons(m) or [[]])[0] for m in masks],
        low_res_masks=[(formats.polygons(m > 0) or [[]])[0] for m in low_res],
        scores=scores, time=ctx.seconds())


@router.post("/sam2/segment_image", response_model=Sam2SegmentResponse,
             tags=["Roboflow SAM 2"])
def sam2_segment(body: Sam2SegmentRequest, request: Request, response: Response) -> object:
    """One mask per prompt (box and/or points), the most confident candidate of each."""
    ctx = Context.of(request, body, response)
    settings = ctx.settings
    model = served.segmenter(settings, "sam2", body.sam2_version_id)
    given = body.prompts.prompts or []
    formats.check_prompts(len(given), settings)
    objects = [formats.sam2_prompts(p, i, settings) for i, p in enumerate(given)]
    if not objects:
        raise_empty()
    mask_input = formats.mask_input_array(body.mask_input)
    image_id, _ = ctx.embedded(model, body.image, body.image_id)
    kept = (ctx.scheduler.logits_for(model, image_id, ctx.scope)
            if body.load_logits_from_cache else [])
    inputs = []
    for obj in objects:
        seed = mask_input
        if seed is None and kept:
            seed = formats.most_similar(formats.prompt_key(obj), kept)
        inputs.append(seed)
    proposals = ctx.scheduler.predict_many(model, image_id, objects, inputs,
                                           body.multimask_output, ctx.scope)
    masks, confidences, logits = [], [], []
    for obj, proposal in zip(objects, proposals, strict=True):
        best = int(proposal.best()[0])
        masks.append(proposal.mask(0, best))
        confidences.append(float(proposal.scores[0, best]))
        if proposal.logits is not None:
            low = np.asarray(proposal.logits[0, best][None], np.float32)
            logits.append(low)
            if body.save_logits_to_cache:
                ctx.scheduler.remember_logits(model, image_id, ctx.scope,
                                              formats.prompt_key(obj), low)
    if body.format == "binary":
        arrays = {"masks": np.stack(masks), "confidence": np.asarray(confidences, np.float32)}
        if logits:
            arrays["low_res_logits"] = np.concatenate(logits)
        headers = {"X-Image-Id": image_id, **ctx.headers()}
        return Response(formats.npz_bytes(**arrays), media_type=_BINARY, headers=headers)
    predictions = [Sam2Prediction(masks=formats.mask_out(m, body.format), confidence=c,
                                  format=body.format)
                   for m, c in zip(masks, confidences, strict=True)]
    return Sam2SegmentResponse(predictions=predictions, time=ctx.seconds())


def raise_empty() -> None:
    from samdesk.server.errors import ApiError

    raise ApiError(422, "prompts: no prompt given (a box and/or points per prompt)")
