"""samdesk's own routes, the ones a desktop's remote engine uses (``/samdesk/v1/*``).

- ``GET /samdesk/v1/models``: ``{"models": [{name, family, kind, title, loaded,
  device}]}``.
- ``POST /samdesk/v1/images/{image_id}``: the image file's bytes as the body
  (``application/octet-stream``), ``image_id`` their SHA-256 (422 otherwise).
  Decoded with :func:`samdesk.images.load_rgb`, the desktop's own decoder, so
  the server sees the same upright pixels. ``{image_id, width, height}``.
  ``HEAD`` / ``GET`` answer 200 with the same body when the id is known, 404
  ``{"error": "unknown image_id"}`` when not.
- ``POST /samdesk/v1/embed`` ``{model, image_id, tensors?}``: encode it
  (cached); ``{image_id, model, width, height, time}``, or with ``tensors``
  the embedding's arrays as an ``.npz``.
- ``POST /samdesk/v1/predict`` ``{model, image_id, prompts: {points, boxes},
  mask_input?, multimask, masks: "best"|"all"|"none"|[[object, candidate]…],
  size?: [h, w], logits: "float16"|"float32"|"none"}``: an ``.npz`` answer
  (:mod:`samdesk.inference.engines.remote_wire`): the masks asked for as
  COCO RLE, every score, and the logits the local engine's ``predict``
  returns for refining, in the dtype asked for.
- ``POST /samdesk/v1/detect`` ``{model, image_id, text, box_threshold,
  text_threshold}``: ``{boxes, phrases, scores}``, boxes XYXY pixels.

An image's file bytes are kept (bounded by bytes, per API key) apart from
its embeddings, so an evicted embedding is encoded again from them without
the client noticing. An id the server holds neither way is 404 ``unknown
image_id`` and the client sends the file again.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from samdesk import masks as rle
from samdesk.inference.engines.remote_wire import (
    API,
    NPZ_TYPE,
    npy_from_b64,
    pack_answer,
    prompts_from_json,
)
from samdesk.server import images
from samdesk.server.auth import authorize
from samdesk.server.cache import ByteLRU
from samdesk.server.errors import ApiError
from samdesk.server.scheduler import Scheduler, UnknownImage
from samdesk.server.settings import ServerSettings

router = APIRouter(prefix=API, tags=["samdesk"])

_state_lock = threading.Lock()


class _Images:
    """File bytes and upright sizes by ``(scope, image_id)``, and the last decoded pixels."""

    def __init__(self, settings: ServerSettings) -> None:
        self.files = ByteLRU(max(settings.cache_bytes // 4, 64 << 20))
        self.pixels = ByteLRU(max(settings.cache_bytes // 8, 64 << 20))

    def rgb(self, key: tuple[str, str], settings: ServerSettings) -> np.ndarray:
        found = self.pixels.get(key)
        if found is None:
            held = self.files.get(key)
            if held is None:
                raise UnknownImage(key[1])
            found = images.decode(held[0], settings)
            self.pixels.put(key, found, found.nbytes)
        return found


def _images(request: Request) -> _Images:
    state = request.app.state
    with _state_lock:
        found = getattr(state, "native_images", None)
        if found is None:
            found = _Images(state.settings)
            state.native_images = found
    return found


def _scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="a model the server serves (GET /samdesk/v1/models)")
    image_id: str = Field(min_length=1, max_length=200)
    api_key: str | None = None


class EmbedBody(_Body):
    tensors: bool = Field(False, description="answer the embedding itself as an .npz")


class WirePoint(BaseModel):
    x: float
    y: float
    positive: bool = True


class WirePrompts(BaseModel):
    points: list[WirePoint] = []
    boxes: list[list[float]] = []


class PredictBody(_Body):
    prompts: WirePrompts
    mask_input: str | None = Field(None, description="base64 .npy float (objects, 256, 256)")
    multimask: bool = True
    masks: Literal["best", "all", "none"] | list[tuple[int, int]] = "best"
    size: tuple[int, int] | None = Field(None, description="(h, w) to scale the masks to")
    logits: Literal["float16", "float32", "none"] = "float16"


class DetectBody(_Body):
    text: str = Field(min_length=1)
    box_threshold: float = 0.3
    text_threshold: float = 0.25


@router.get("/models")
def models(request: Request) -> dict[str, Any]:
    """The models this server serves, loaded or not."""
    authorize(request)
    return {"models": _scheduler(request).models()}


@router.api_route("/images/{image_id}", methods=["GET", "HEAD"])
def image_known(image_id: str, request: Request) -> dict[str, Any]:
    """200 with the image's size when the id is held, 404 ``unknown image_id`` when not."""
    scope = authorize(request)
    held = _images(request).files.get((scope, image_id))
    if held is None:
        raise UnknownImage(image_id)
    height, width = held[1]
    return {"image_id": image_id, "width": width, "height": height}


@router.post("/images/{image_id}")
async def upload_image(image_id: str, request: Request) -> dict[str, Any]:
    """Keep an image file's bytes under ``image_id`` (their SHA-256)."""
    scope = authorize(request)
    data = await request.body()
    if not data:
        raise ApiError(422, "body: empty; send the image file's bytes")
    if hashlib.sha256(data).hexdigest() != image_id.lower():
        raise ApiError(422, f"image_id {image_id}: not the SHA-256 of the bytes sent")
    settings = _settings(request)
    rgb = await run_in_threadpool(images.decode, data, settings)
    key = (scope, image_id.lower())
    store = _images(request)
    height, width = rgb.shape[:2]
    store.files.put(key, (data, (height, width)), len(data))
    store.pixels.put(key, rgb, rgb.nbytes)
    return {"image_id": key[1], "width": width, "height": height}


def _embedding(request: Request, body: _Body) -> tuple[Any, float]:
    """The embedding of the body's image: cached, or encoded from the kept file."""
    scope = authorize(request, body.api_key)
    scheduler = _scheduler(request)
    scheduler.check_model(body.model)
    image_id = body.image_id.lower()
    found = scheduler.lookup(body.model, image_id, scope)
    if found is not None:
        return found, 0.0
    rgb = _images(request).rgb((scope, image_id), _settings(request))
    start = time.perf_counter()
    embedding = scheduler.embed(body.model, rgb, image_id, scope)
    return embedding, time.perf_counter() - start


@router.post("/embed", response_model=None)
def embed(body: EmbedBody, request: Request) -> dict[str, Any] | Response:
    """Encode an uploaded image with ``model`` (once; later calls find it cached).

    With ``tensors``: the embedding's arrays as an ``.npz`` (float32).
    """
    embedding, seconds = _embedding(request, body)
    if body.tensors:
        stream = io.BytesIO()
        np.savez(stream, **embedding.tensors)
        return Response(content=stream.getvalue(), media_type=NPZ_TYPE)
    height, width = embedding.image_size
    return {"image_id": body.image_id.lower(), "model": body.model, "width": width,
            "height": height, "time": seconds}


def _check_limits(body: PredictBody, settings: ServerSettings) -> None:
    objects = max(1, len(body.prompts.boxes))
    if objects > settings.max_prompts:
        raise ApiError(413, f"prompts.boxes: {objects} objects, more than the server's "
                            f"limit of {settings.max_prompts}")
    if len(body.prompts.points) > settings.max_points:
        raise ApiError(413, f"prompts.points: {len(body.prompts.points)} points, more than "
                            f"the server's limit of {settings.max_points}")


def _wanted(masks: Any, scores: np.ndarray, best: np.ndarray) -> list[tuple[int, int]]:
    objects, candidates = scores.shape
    if masks == "none":
        return []
    if masks == "best":
        return [(i, int(c)) for i, c in enumerate(best)]
    if masks == "all":
        return [(i, c) for i in range(objects) for c in range(candidates)]
    for obj, cand in masks:
        if not (0 <= obj < objects and 0 <= cand < candidates):
            raise ApiError(422, f"masks: ({obj}, {cand}) is not one of the {objects} x "
                                f"{candidates} candidates")
    return [(int(o), int(c)) for o, c in masks]


def _rle(mask: np.ndarray, size: tuple[int, int] | None) -> dict[str, Any]:
    if size is not None and tuple(mask.shape) != tuple(size):
        import cv2

        mask = cv2.resize(mask.view(np.uint8), (int(size[1]), int(size[0])),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
    return rle.encode(mask)


@router.post("/predict")
def predict(body: PredictBody, request: Request) -> Response:
    """Masks, scores and logits for several objects' prompts on an uploaded image."""
    _check_limits(body, _settings(request))
    prompts = prompts_from_json([p.model_dump() for p in body.prompts.points],
                                body.prompts.boxes)
    if prompts.is_empty:
        raise ApiError(422, "prompts: no point and no box")
    mask_input = None
    if body.mask_input is not None:
        mask_input = npy_from_b64(body.mask_input, "mask_input").astype(np.float32)
    embedding, _ = _embedding(request, body)
    scope = authorize(request, body.api_key)
    proposal = _scheduler(request).predict(body.model, body.image_id.lower(), prompts,
                                           mask_input, body.multimask, scope)
    scores = np.asarray(proposal.scores, dtype=np.float32)
    masks = []
    for obj, cand in _wanted(body.masks, scores, proposal.best()):
        encoded = _rle(proposal.mask(obj, cand), body.size)
        masks.append({"object": obj, "candidate": cand, **encoded})
    logits = None
    if body.logits != "none" and proposal.logits is not None:
        logits = np.asarray(proposal.logits).astype(body.logits)
    content = pack_answer(embedding.image_size, masks, scores, logits)
    return Response(content=content, media_type=NPZ_TYPE)


@router.post("/detect")
def detect(body: DetectBody, request: Request) -> dict[str, Any]:
    """A text detector's boxes for ``text`` on an uploaded image."""
    scope = authorize(request, body.api_key)
    scheduler = _scheduler(request)
    scheduler.check_model(body.model)
    rgb = _images(request).rgb((scope, body.image_id.lower()), _settings(request))
    found = scheduler.detect(body.model, rgb, body.text, body.box_threshold,
                             body.text_threshold)
    return {"boxes": np.asarray(found.boxes, dtype=np.float32).reshape(-1, 4).tolist(),
            "phrases": list(found.phrases),
            "scores": np.asarray(found.scores, dtype=np.float32).tolist()}
