"""The remote engine family: a model that runs in a ``samdesk serve`` process.

A remote model is named ``server:URL#MODEL``, e.g.
``server:http://gpu-box:9001#sam2.1_hiera_large`` (the registry's
:func:`~samdesk.inference.models.registry.remote_name`); the API key, if the
server needs one, is kept per URL by :func:`set_api_key` (never in the
name, which is stored in caches and in the prompts of saved masks).

The engine sends each image once: its file's bytes (so the server decodes
the same upright pixels with :func:`samdesk.images.load_rgb`), under their
SHA-256, the content hash the project already keys images by. After that
only prompts, masks and logits cross the wire (see
:mod:`~samdesk.inference.engines.remote_wire`). When the server answers 404
for an ``image_id`` (it restarted or evicted the image), the engine sends
the file again and repeats the request, once, without telling anybody. A
server that cannot be reached is one :class:`ServerUnreachable` line.

``propose`` answers with every score and logit and each object's best
candidate at full resolution in one request; the other candidates (Tab) come
in one more request the first time one is asked for. The preview of a
zoomed-out image is the full-resolution mask scaled to the screen (the
full-resolution one is already there). Masks are the server's engine's, so
they equal a local engine's pixel for pixel on the same weights; logits come
as float32, so a refining click's ``mask_input`` is exactly the server's and
its mask equals a local one too.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from samdesk import masks as rle
from samdesk.inference.engines.base import (
    Detections,
    Embedding,
    EngineError,
    Prediction,
    Prompts,
)
from samdesk.inference.engines.remote_wire import (
    API,
    b64_npy,
    prompts_to_json,
    unpack_answer,
)
from samdesk.inference.models.registry import DETECTOR, ModelSpec, parse_remote_name

LOGITS_DTYPE = "float32"
"""How the engine asks for logits: float32 (262,144 bytes per candidate), so that a
refining click's ``mask_input`` is the server's own logits and its mask equals a
local engine's pixel for pixel (float16 would halve the bytes and round them)."""

TIMEOUT = httpx.Timeout(600.0, connect=5.0)
"""Seconds: connecting gives up fast (a dead server is one line at once); an
encode of a large image on a CPU server may take minutes."""

POLL_S = 0.02
"""Seconds between looks at a server encode in flight (the worker answers clicks between)."""

_background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="samdesk-remote-embed")
_keys: dict[str, str] = {}
_clients: dict[str, httpx.Client] = {}
_lock = threading.Lock()


class ServerUnreachable(EngineError):
    """The server could not be reached or dropped the connection."""


class ServerRefused(EngineError):
    """The server answered with an error (401, 413, 422, 503...)."""


def set_api_key(url: str, key: str | None) -> None:
    """Use ``key`` for every request to the server at ``url`` (``None``/empty: none)."""
    url = url.rstrip("/")
    with _lock:
        if key:
            _keys[url] = key
        else:
            _keys.pop(url, None)
        old = _clients.get(url)
        if isinstance(old, _Injected):  # a test's client keeps its own headers
            return
        _clients.pop(url, None)
    if old is not None:
        old.close()


def use_client(url: str, client: httpx.Client | None) -> None:
    """Talk to ``url`` through ``client`` (tests: FastAPI's ``TestClient``); ``None``
    goes back to a client of our own."""
    with _lock:
        if client is None:
            _clients.pop(url.rstrip("/"), None)
        else:
            _clients[url.rstrip("/")] = _Injected(client)


class _Injected:
    """A client given by :func:`use_client`: used, never closed here."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client


def _client(url: str) -> httpx.Client:
    with _lock:
        found = _clients.get(url)
        if isinstance(found, _Injected):
            return found.client
        if found is None:
            headers = {"x-api-key": _keys[url]} if url in _keys else {}
            found = httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)
            _clients[url] = found
        return found


@dataclass
class ImageSource:
    """Where an image's bytes come from when the server needs them (again)."""

    image_id: str
    read: Callable[[], bytes]


def file_source(path: Path, image_key: str | None = None) -> ImageSource:
    """An image file, under ``image_key`` (its SHA-256) or its hash computed now."""

    def read() -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise EngineError(f"{path}: cannot read the image to send it to the server "
                              f"({exc.strerror or exc})") from None

    if image_key is None:
        image_key = hashlib.sha256(read()).hexdigest()
    return ImageSource(image_key, read)


def rgb_source(rgb: np.ndarray) -> ImageSource:
    """A decoded ``(H, W, 3)`` uint8 image, sent as a PNG (lossless: the same pixels)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise EngineError(f"image must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise EngineError("cannot encode the image as PNG to send it to the server")
    data = png.tobytes()
    return ImageSource(hashlib.sha256(data).hexdigest(), lambda: data)


class Connection:
    """Requests to one server, errors turned into one line each."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's answer (2xx or 404); any other answer or failure raises one line."""
        try:
            response = _client(self.url).request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"server {self.url}: {_transport_reason(exc)}; "
                                    "nothing was lost, try again when it is back") from None
        if response.status_code < 400 or response.status_code == 404:
            return response
        detail = _error_text(response)
        if response.status_code == 401:
            raise ServerRefused(f"server {self.url}: the API key was refused ({detail}); "
                                "set it in File > Models > Server or with --api-key")
        raise ServerRefused(f"server {self.url}: {response.status_code} {detail}")

    def upload(self, source: ImageSource) -> dict[str, Any]:
        """Send the image's bytes under its id; the server's ``{image_id, width, height}``."""
        response = self.request("POST", f"{API}/images/{source.image_id}", content=source.read(),
                                headers={"content-type": "application/octet-stream"})
        if response.status_code == 404:
            raise ServerRefused(f"server {self.url}: it has no samdesk image routes "
                                f"({_error_text(response)})")
        return response.json()

    def with_image(self, source: ImageSource, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST ``body`` (which names ``source.image_id``); on 404 send the image, repeat once."""
        response = self.request("POST", path, json=body)
        if response.status_code == 404 and _unknown_image(response):
            self.upload(source)
            response = self.request("POST", path, json=body)
        if response.status_code == 404:
            raise ServerRefused(f"server {self.url}: 404 {_error_text(response)}")
        return response

    def models(self) -> list[dict[str, Any]]:
        """The server's ``GET /samdesk/v1/models`` list."""
        response = self.request("GET", f"{API}/models")
        if response.status_code == 404:
            raise ServerRefused(f"server {self.url}: not a samdesk server (no {API}/models)")
        return list(response.json().get("models", []))


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect (is `samdesk serve` running there?)"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return "the connection was lost"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(body, dict):
        for field in ("error", "detail", "message"):
            if field in body:
                value = body[field]
                return value if isinstance(value, str) else str(value)[:200]
    return str(body)[:200]


def _unknown_image(response: httpx.Response) -> bool:
    return "unknown image_id" in _error_text(response)


def _source_of(embedding: Embedding) -> ImageSource:
    """The image behind a remote ``embedding`` (see :meth:`RemoteEngine.embed_file`)."""
    tensors = embedding.tensors
    if "remote_image_id" not in tensors:
        raise EngineError(f"embedding was made by {embedding.model_id}, not by a server; "
                          "re-encode")
    image_id = bytes(tensors["remote_image_id"]).decode("ascii")
    if "remote_png" in tensors:
        data = bytes(tensors["remote_png"])
        return ImageSource(image_id, lambda: data)
    path = Path(os.fsdecode(bytes(tensors["remote_path"])))
    return file_source(path, image_id)


def _as_bytes(text: str | bytes) -> np.ndarray:
    data = text if isinstance(text, bytes) else text.encode("ascii")
    return np.frombuffer(data, dtype=np.uint8).copy()


class RemoteProposal:
    """A server's candidates for one request, in the shape of
    :class:`~samdesk.inference.engines.upsample.Proposal`.

    ``scores`` float32 ``(objects, candidates)``; ``logits`` float32
    ``(objects, candidates, 256, 256)`` or None.
    """

    def __init__(self, engine: RemoteEngine, source: ImageSource, body: dict[str, Any],
                 answer: Any) -> None:
        self._engine, self._source, self._body = engine, source, body
        self.scores: np.ndarray = answer.scores
        self.logits: np.ndarray | None = answer.logits
        self.image_size: tuple[int, int] = answer.image_size
        self._masks: dict[tuple[int, int], np.ndarray] = {
            key: rle.decode(value) for key, value in answer.masks.items()}

    def best(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1)

    def mask(self, obj: int, candidate: int) -> np.ndarray:
        """``bool (H, W)``; the first candidate not yet here brings every missing one."""
        key = (obj, candidate)
        if key not in self._masks:
            missing = [[i, c] for i in range(self.scores.shape[0])
                       for c in range(self.scores.shape[1]) if (i, c) not in self._masks]
            answer = self._engine._ask(self._source, {**self._body, "masks": missing,
                                                      "logits": "none"})
            for found, value in answer.masks.items():
                self._masks[found] = rle.decode(value)
        return self._masks[key]

    def preview(self, obj: int, candidate: int, size: tuple[int, int]) -> np.ndarray:
        """``bool`` ``size`` ``(h, w)``: the full-resolution mask scaled to the screen."""
        full = self.mask(obj, candidate).view(np.uint8)
        small = cv2.resize(full, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
        return small.astype(bool)

    def shown(self) -> np.ndarray:
        return np.stack([self.mask(i, int(c)) for i, c in enumerate(self.best())])

    def prediction(self) -> Prediction:
        objects, candidates = self.scores.shape
        masks = np.empty((objects, candidates, *self.image_size), dtype=np.bool_)
        for i in range(objects):
            for c in range(candidates):
                masks[i, c] = self.mask(i, c)
        return Prediction(masks=masks, scores=self.scores, logits=self.logits)


class RemoteEngine:
    """A server's segmenter as an :class:`~samdesk.inference.engines.base.Engine`.

    ``model_id`` is the remote name ``server:URL#MODEL``; ``model`` the
    server's name for it. Embeddings hold no tensors of the model, only the
    image's id and where its bytes are (a few hundred bytes in any cache).
    """

    def __init__(self, model_id: str, url: str, model: str) -> None:
        self.model_id = model_id
        self.model = model
        self.device = url
        self.connection = Connection(url)

    def embed_file(self, path: str | os.PathLike[str], image_key: str | None = None) -> Embedding:
        """Have the server encode the image file ``path`` (sent only if it lacks it).

        ``image_key``: the file's SHA-256 if the caller knows it.
        """
        source = file_source(Path(path), image_key)
        tensors = {"remote_image_id": _as_bytes(source.image_id),
                   "remote_path": _as_bytes(os.fsencode(os.fspath(path)))}
        return self._embed(source, tensors)

    def embed_file_steps(self, path: str | os.PathLike[str], image_key: str | None = None
                         ) -> Generator[None, None, Embedding]:
        """:meth:`embed_file` on a thread of its own, yielding every :data:`POLL_S` seconds
        until it is done, so the worker answers clicks while the server encodes (as it
        does between a local encoder's blocks). Returns the :class:`Embedding`."""
        future = _background.submit(self.embed_file, path, image_key)
        while True:
            try:
                return future.result(timeout=POLL_S)
            except FutureTimeout:
                yield

    def embed(self, rgb: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 image with no file behind it (sent as PNG)."""
        source = rgb_source(rgb)
        tensors = {"remote_image_id": _as_bytes(source.image_id),
                   "remote_png": np.frombuffer(source.read(), np.uint8).copy()}
        return self._embed(source, tensors)

    def embedding_tensors(self, embedding: Embedding) -> dict[str, np.ndarray]:
        """The server's tensors of ``embedding`` (what a local engine's embedding holds)."""
        source = _source_of(embedding)
        body = {"model": self.model, "image_id": source.image_id, "tensors": True}
        response = self.connection.with_image(source, f"{API}/embed", body)
        try:
            with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (ValueError, OSError, EOFError) as exc:
            raise EngineError(f"server {self.connection.url}: its embedding is not an .npz "
                              f"({exc})") from None

    def _embed(self, source: ImageSource, tensors: dict[str, np.ndarray]) -> Embedding:
        body = {"model": self.model, "image_id": source.image_id}
        done = self.connection.with_image(source, f"{API}/embed", body).json()
        return Embedding(self.model_id, (int(done["height"]), int(done["width"])), tensors)

    def _ask(self, source: ImageSource, body: dict[str, Any]) -> Any:
        response = self.connection.with_image(source, f"{API}/predict", body)
        return unpack_answer(response.content)

    def _body(self, embedding: Embedding, prompts: Prompts, mask_input: np.ndarray | None,
              multimask: bool, source: ImageSource) -> dict[str, Any]:
        if embedding.model_id != self.model_id:
            raise EngineError(f"embedding was made by {embedding.model_id}, not "
                              f"{self.model_id}; re-encode")
        if prompts.is_empty:
            raise EngineError("no prompt: add a point or a box")
        body: dict[str, Any] = {"model": self.model, "image_id": source.image_id,
                                "prompts": prompts_to_json(prompts), "multimask": multimask,
                                "logits": LOGITS_DTYPE, "masks": "best"}
        if mask_input is not None:
            body["mask_input"] = b64_npy(np.asarray(mask_input, dtype=np.float32))
        return body

    def propose(self, embedding: Embedding, prompts: Prompts,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> RemoteProposal:
        """One request: every score and logit, each object's best mask at full resolution."""
        source = _source_of(embedding)
        body = self._body(embedding, prompts, mask_input, multimask, source)
        return RemoteProposal(self, source, body, self._ask(source, body))

    def predict(self, embedding: Embedding, prompts: Prompts,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> Prediction:
        """Every candidate's mask in one request; see :class:`Prediction`."""
        source = _source_of(embedding)
        body = {**self._body(embedding, prompts, mask_input, multimask, source), "masks": "all"}
        return RemoteProposal(self, source, body, self._ask(source, body)).prediction()


class RemoteDetector:
    """A server's text detector (GroundingDINO) as a
    :class:`~samdesk.inference.engines.base.Detector`; images sent as the engine does."""

    def __init__(self, model_id: str, url: str, model: str) -> None:
        self.model_id = model_id
        self.model = model
        self.device = url
        self.connection = Connection(url)

    def detect_file(self, path: str | os.PathLike[str], image_key: str | None, text: str,
                    box_threshold: float = 0.3, text_threshold: float = 0.25) -> Detections:
        """Detect on the image file ``path`` (sent only if the server lacks it)."""
        return self._detect(file_source(Path(path), image_key), text, box_threshold,
                            text_threshold)

    def detect(self, rgb: np.ndarray, text: str, box_threshold: float = 0.3,
               text_threshold: float = 0.25) -> Detections:
        return self._detect(rgb_source(rgb), text, box_threshold, text_threshold)

    def _detect(self, source: ImageSource, text: str, box_threshold: float,
                text_threshold: float) -> Detections:
        body = {"model": self.model, "image_id": source.image_id, "text": text,
                "box_threshold": box_threshold, "text_threshold": text_threshold}
        found = self.connection.with_image(source, f"{API}/detect", body).json()
        boxes = np.asarray(found["boxes"], dtype=np.float32).reshape(-1, 4)
        return Detections(boxes, [str(p) for p in found["phrases"]],
                          np.asarray(found["scores"], dtype=np.float32))


def load(spec: ModelSpec, checkpoint: Path | None, device: str) -> RemoteEngine | RemoteDetector:
    """Connect to the server of ``spec.name`` and check that it serves the model.

    ``checkpoint`` and ``device`` are the server's business and must be
    ``None`` / anything.
    """
    if checkpoint is not None:
        raise EngineError(f"{spec.name}: a server model takes no --checkpoint "
                          "(the server's own is used)")
    url, model = parse_remote_name(spec.name)
    served = {m.get("name"): m for m in Connection(url).models()}
    if model not in served:
        names = ", ".join(sorted(str(n) for n in served)) or "none"
        raise EngineError(f"server {url} does not serve {model!r}; it serves: {names}")
    kind = served[model].get("kind", spec.kind)
    if kind == DETECTOR:
        return RemoteDetector(spec.name, url, model)
    return RemoteEngine(spec.name, url, model)


__all__ = ["RemoteDetector", "RemoteEngine", "ServerRefused", "ServerUnreachable", "load",
           "set_api_key", "use_client"]
