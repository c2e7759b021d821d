"""Segmind's SAM v2 image route, ``POST /v1/sam-v2-image``.

``coordinates`` (``"[x,y]"`` or ``"[[x,y],…]"``) are positive points of one
object, ``remove_coordinates`` negative ones; with ``prompt`` the points are
ignored and the phrase goes through the text detector (every object found).
The answer is a JPEG: the image with the masks drawn on it, or, with
``overlay_mask: false``, the mask (white on black); with ``base64: true`` it
is ``{"image": "<base64 JPEG>"}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from samdesk.inference.engines.base import Point, Prompts
from samdesk.overlay import draw_overlay
from samdesk.server import formats, images, served
from samdesk.server.common import Context
from samdesk.server.errors import ApiError
from samdesk.server.requests import SegmindRequest
from samdesk.server.routes_text import find_objects

router = APIRouter()


def parse_points(value: str | list[Any] | None, field: str) -> list[tuple[float, float]]:
    """``"[x,y]"``, ``"[[x,y],…]"`` or the same as JSON lists, to ``(x, y)`` pairs."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(422, f"{field}: expected \"[x,y]\" or \"[[x,y],...]\"") from None
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int | float) for v in value):
        value = [value]
    try:
        pairs = [(float(x), float(y)) for x, y in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ApiError(422, f"{field}: expected \"[x,y]\" or \"[[x,y],...]\"") from None
    return pairs


@router.post("/v1/sam-v2-image", tags=["Segmind"],
             responses={200: {"content": {"image/jpeg": {}}}})
def sam_v2_image(body: SegmindRequest, request: Request) -> Response:
    """Mask an image from points (or a phrase); a JPEG overlay or mask."""
    ctx = Context.of(request, body)
    data, rgb = ctx.image(body.image)
    model = served.any_segmenter(ctx.settings, None)
    if body.prompt:
        masks = [obj["mask"] for obj in find_objects(ctx, rgb, data, body.prompt, model)]
    else:
        positive = parse_points(body.coordinates, "coordinates")
        negative = parse_points(body.remove_coordinates, "remove_coordinates")
        if not positive:
            raise ApiError(422, "coordinates: give at least one point [x,y] (or a prompt)")
        formats.check_points(len(positive) + len(negative), ctx.settings, "coordinates")
        points = tuple([Point(x, y, True) for x, y in positive]
                       + [Point(x, y, False) for x, y in negative])
        image_id = images.image_id_of(data)
        ctx.scheduler.embed(model, rgb, image_id, ctx.scope)
        proposal = ctx.scheduler.predict(model, image_id, Prompts(points=points),
                                         None, True, ctx.scope)
        masks = [proposal.mask(0, int(proposal.best()[0]))]
    if body.overlay_mask:
        picture = draw_overlay(rgb, masks)
    else:
        union = np.zeros(rgb.shape[:2], bool)
        for mask in masks:
            union |= mask
        picture = union.astype(np.uint8) * 255
    jpeg = images.encode_jpeg(picture)
    if body.base64:
        payload = json.dumps({"image": base64.b64encode(jpeg).decode("ascii")})
        return Response(payload, media_type="application/json", headers=ctx.headers())
    return Response(jpeg, media_type="image/jpeg", headers=ctx.headers())
