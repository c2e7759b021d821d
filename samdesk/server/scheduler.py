"""The one thread that owns the server's models, with no HTTP in it.

Every route (Roboflow, Segmind, text, and the samdesk-native routes of
``routes_native``) calls a :class:`Scheduler`; nothing else touches an engine.

API (blocking calls, made from any thread, e.g. FastAPI's worker threads):

- ``embed(model_name, rgb, image_id, scope="") -> Embedding``: the cached
  embedding of ``image_id`` or, if absent, ``rgb`` (``(H, W, 3)`` uint8)
  encoded and cached. Two requests for the same uncached id share one encode.
- ``lookup(model_name, image_id, scope="") -> Embedding | None``: cache only.
- ``predict(model_name, image_id, prompts, mask_input=None, multimask=True,
  scope="") -> Proposal``: decode ``prompts`` (engine ``Prompts``) on a cached
  embedding; raises :class:`UnknownImage` when ``image_id`` is not cached.
  ``proposal.scores`` / ``.logits`` are ``(objects, candidates[, 256, 256])``;
  ``proposal.mask(obj, cand)`` upsamples one candidate (on the caller's
  thread); ``proposal.prediction()`` all of them. GrabCut's ``predict`` is
  wrapped to the same shape (:class:`Decoded`). ``predict_many(model_name,
  image_id, [prompts...], [mask_input...], multimask, scope) -> [Proposal...]``
  decodes several objects in one job.
- ``detect(model_name, rgb, text, box_threshold, text_threshold) -> Detections``.
- ``submit(model_name, fn, kind="decode"|"encode") -> Future``: run
  ``fn(engine)`` on the scheduler thread; a generator returned by an encode's
  ``fn`` is run chunk by chunk, with waiting decodes between chunks.
- ``remember_logits`` / ``logits_for``: low-res logits kept per image.
- ``models() -> list[dict]``: what is served, loaded or not. ``close()``.

``scope`` keeps the ids of different API keys apart (:func:`scope_of`).
Errors: :class:`QueueFull` (503 with ``retry_after``), :class:`UnknownImage`
(404), :class:`ModelUnavailable` (404), and the engines' ``EngineError``.

Scheduling: decodes first, then encodes in order. An encode with
``embed_steps`` (SAM, SAM 2) runs one encoder chunk at a time (half a block:
its attention, then its MLP) and every decode waiting is answered between
chunks, so a click on an embedded image waits for one chunk of another
client's encode, never the whole encode. At
most ``settings.max_queue`` jobs wait; one more raises :class:`QueueFull`.
Models load on first use (on this thread) and are unloaded after
``settings.idle_unload_s`` without use.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from samdesk.errors import EngineError, SamdeskError
from samdesk.inference.engines.base import Detections, Embedding, Prediction, Prompts
from samdesk.inference.models.registry import get_spec
from samdesk.server.cache import ByteLRU
from samdesk.server.settings import ServerSettings

log = logging.getLogger(__name__)

Kind = Literal["decode", "encode"]
Loader = Callable[[str, Path | None, str], Any]


class QueueFull(SamdeskError):
    """Too many jobs wait; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownImage(SamdeskError):
    """No embedding is cached under this ``image_id`` (never sent, evicted, or restarted)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"unknown image_id {image_id!r}: send the image again")
        self.image_id = image_id


class ModelUnavailable(SamdeskError):
    """The model is not served here."""


def scope_of(api_key: str | None) -> str:
    """A short digest of ``api_key`` that keeps its image ids apart ("" without a key)."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class Decoded:
    """:class:`Proposal`'s interface over a whole :class:`Prediction` (GrabCut)."""

    def __init__(self, whole: Prediction) -> None:
        self.whole = whole
        self.scores = whole.scores
        self.logits = whole.logits
        self.image_size = tuple(whole.masks.shape[-2:])

    def best(self) -> np.ndarray:
        return self.whole.best()

    def mask(self, obj: int, candidate: int) -> np.ndarray:
        return self.whole.masks[obj, candidate]

    def prediction(self) -> Prediction:
        return self.whole


@dataclass
class _Job:
    model: str
    fn: Callable[[Any], Any]
    kind: Kind
    future: Future


@dataclass
class _Loaded:
    engine: Any
    last_used: float


class Scheduler:
    """Owns the engines of one server and runs every model call on its one thread."""

    def __init__(self, settings: ServerSettings, loader: Loader | None = None) -> None:
        self.settings = settings
        self._loader = loader or self._load_with_runtime
        self._decodes: deque[_Job] = deque()
        self._encodes: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._engines: dict[str, _Loaded] = {}
        self._embeddings = ByteLRU(settings.cache_bytes)
        self._logits = ByteLRU(max(settings.cache_bytes // 16, 1 << 20))
        self._pending: dict[tuple[str, str, str], Future] = {}
        self._thread = threading.Thread(target=self._loop, name="samdesk-scheduler", daemon=True)
        self._thread.start()

    # -- the calls routes make ---------------------------------------------

    def check_model(self, name: str) -> None:
        """Raise :class:`ModelUnavailable` unless ``name`` is served here."""
        served = self.settings.models
        if served and name not in served:
            raise ModelUnavailable(f"model {name!r} is not served here; served: "
                                   + ", ".join(served))
        try:
            get_spec(name)
        except EngineError as exc:
            raise ModelUnavailable(str(exc)) from None

    def submit(self, model_name: str, fn: Callable[[Any], Any], kind: Kind = "decode") -> Future:
        """Queue ``fn(engine)`` for the scheduler thread; its future."""
        self.check_model(model_name)
        job = _Job(model_name, fn, kind, Future())
        with self._cond:
            if self._closed:
                raise SamdeskError("the server is shutting down")
            waiting = len(self._decodes) + len(self._encodes)
            if waiting >= self.settings.max_queue:
                raise QueueFull(f"server busy: {waiting} requests wait; retry shortly",
                                self.settings.retry_after_s)
            (self._decodes if kind == "decode" else self._encodes).append(job)
            self._cond.notify()
        return job.future

    def wait(self, future: Future) -> Any:
        """``future``'s result, within the request timeout (else one clear error)."""
        try:
            return future.result(timeout=self.settings.request_timeout_s)
        except FutureTimeout:
            raise QueueFull(f"no answer within {self.settings.request_timeout_s:g} s; "
                            "retry later", self.settings.retry_after_s) from None

    def lookup(self, model_name: str, image_id: str, scope: str = "") -> Embedding | None:
        return self._embeddings.get((scope, model_name, image_id))

    def embed(self, model_name: str, rgb: np.ndarray, image_id: str, scope: str = ""
              ) -> Embedding:
        """The embedding of ``image_id``, from the cache or by encoding ``rgb``."""
        key = (scope, model_name, image_id)
        found = self._embeddings.get(key)
        if found is not None:
            return found
        with self._cond:
            future = self._pending.get(key)
            owner = future is None
            if owner:
                future = self.submit(model_name, lambda engine: _embed_steps(engine, rgb),
                                     "encode")
                self._pending[key] = future
        try:
            embedding = self.wait(future)
        finally:
            if owner:
                with self._cond:
                    self._pending.pop(key, None)
        if owner:
            self._embeddings.put(key, embedding, embedding.nbytes)
        return embedding

    def predict(self, model_name: str, image_id: str, prompts: Prompts,
                mask_input: np.ndarray | None = None, multimask: bool = True,
                scope: str = "") -> Any:
        """Decode ``prompts`` on the cached embedding of ``image_id`` (see the module doc)."""
        return self.predict_many(model_name, image_id, [prompts], [mask_input], multimask,
                                 scope)[0]

    def predict_many(self, model_name: str, image_id: str, objects: list[Prompts],
                     mask_inputs: list[np.ndarray | None] | None = None,
                     multimask: bool = True, scope: str = "") -> list[Any]:
        """:meth:`predict` for several prompts on one image, in one decode job."""
        embedding = self.lookup(model_name, image_id, scope)
        if embedding is None:
            raise UnknownImage(image_id)
        inputs = mask_inputs or [None] * len(objects)

        def decode(engine: Any) -> list[Any]:
            out = []
            for prompts, mask_input in zip(objects, inputs, strict=True):
                if hasattr(engine, "propose"):
                    out.append(engine.propose(embedding, prompts, mask_input, multimask))
                else:
                    out.append(Decoded(engine.predict(embedding, prompts, mask_input,
                                                      multimask)))
            return out

        return self.wait(self.submit(model_name, decode, "decode"))

    def detect(self, model_name: str, rgb: np.ndarray, text: str,
               box_threshold: float = 0.3, text_threshold: float = 0.25) -> Detections:
        """Boxes for the phrases of ``text`` (a detector model), run as an encode."""
        def run(detector: Any) -> Detections:
            return detector.detect(rgb, text, box_threshold, text_threshold)

        return self.wait(self.submit(model_name, run, "encode"))

    def remember_logits(self, model_name: str, image_id: str, scope: str,
                        prompt_key: Any, logits: np.ndarray) -> None:
        """Keep ``(1, 256, 256)`` low-res ``logits`` of one prompt on one image."""
        key = (scope, model_name, image_id)
        entries = [(k, v) for k, v in (self._logits.get(key) or []) if k != prompt_key]
        entries.append((prompt_key, np.asarray(logits, np.float32)))
        self._logits.put(key, entries, sum(v.nbytes for _, v in entries))

    def logits_for(self, model_name: str, image_id: str, scope: str
                   ) -> list[tuple[Any, np.ndarray]]:
        """Every ``(prompt_key, logits)`` kept for one image, oldest first."""
        return list(self._logits.get((scope, model_name, image_id)) or [])

    def models(self) -> list[dict[str, Any]]:
        """The served models: name, family, kind, whether loaded and where."""
        from samdesk.inference.models.registry import MODELS

        names = list(self.settings.models) or list(MODELS)
        loaded = dict(self._engines)
        out = []
        for name in names:
            spec = MODELS.get(name)
            if spec is None:
                continue
            engine = loaded.get(name)
            out.append({"name": name, "family": spec.family, "kind": spec.kind,
                        "title": spec.title, "loaded": engine is not None,
                        "device": str(getattr(engine.engine, "device", "cpu"))
                        if engine is not None else None,
                        "runtime": getattr(engine.engine, "runtime", None)
                        if engine is not None else None})
        return out

    @property
    def cache_nbytes(self) -> int:
        return self._embeddings.nbytes

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread; jobs still waiting fail with one line."""
        with self._cond:
            self._closed = True
            jobs = list(self._decodes) + list(self._encodes)
            self._decodes.clear()
            self._encodes.clear()
            self._cond.notify_all()
        for job in jobs:
            job.future.set_exception(SamdeskError("the server is shutting down"))
        self._thread.join(timeout)
        for loaded in self._engines.values():
            close = getattr(loaded.engine, "close", None)
            if close is not None:  # a runtime's sessions give their memory back now
                close()
        self._engines.clear()

    # -- the scheduler thread ----------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._decodes or self._encodes or self._closed):
                    if not self._cond.wait(self._tick()):
                        break
                if self._closed:
                    return
                job = self._take()
            if job is None:
                self._unload_idle()
                continue
            self._run(job, nested=False)

    def _tick(self) -> float | None:
        idle = self.settings.idle_unload_s
        if idle is None or not self._engines:
            return None
        return max(0.05, min(1.0, idle / 4))

    def _take(self) -> _Job | None:
        if self._decodes:
            return self._decodes.popleft()
        if self._encodes:
            return self._encodes.popleft()
        return None

    def _run(self, job: _Job, nested: bool) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.fn(self._engine(job.model))
            if inspect.isgenerator(result):
                result = self._steps(result, nested)
            job.future.set_result(result)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller
            job.future.set_exception(exc)
        finally:
            loaded = self._engines.get(job.model)
            if loaded is not None:
                loaded.last_used = time.monotonic()

    def _steps(self, steps: Any, nested: bool) -> Any:
        """Run an encode's chunks; between them, every decode that waits (not when nested)."""
        try:
            while True:
                if not nested:
                    self._run_decodes()
                try:
                    next(steps)
                except StopIteration as done:
                    return done.value
        finally:
            steps.close()

    def _run_decodes(self) -> None:
        while True:
            with self._cond:
                if not self._decodes or self._closed:
                    return
                job = self._decodes.popleft()
            self._run(job, nested=True)

    def _load_with_runtime(self, name: str, checkpoint: Path | None, device: str) -> Any:
        """The default loader: ``name`` with the settings' runtime, which it says once."""
        from samdesk.inference.engines import runtime_choice

        engine = runtime_choice.load_engine(name, checkpoint, device, self.settings.runtime)
        line = runtime_choice.runtime_line(name, engine)
        if line:
            log.info("%s", line)
            print(line, file=sys.stderr, flush=True)
        return engine

    def _engine(self, name: str) -> Any:
        loaded = self._engines.get(name)
        if loaded is None:
            checkpoint = self.settings.models.get(name)
            log.info("loading %s on %s", name, self.settings.device)
            loaded = _Loaded(self._loader(name, checkpoint, self.settings.device),
                             time.monotonic())
            self._engines[name] = loaded
        return loaded.engine

    def _unload_idle(self) -> None:
        idle = self.settings.idle_unload_s
        if idle is None:
            return
        now = time.monotonic()
        for name, loaded in list(self._engines.items()):
            if now - loaded.last_used >= idle:
                log.info("unloading %s (unused for %.0f s)", name, now - loaded.last_used)
                device = getattr(loaded.engine, "device", None)
                close = getattr(loaded.engine, "close", None)
                if close is not None:  # an ONNX encoder's sessions go now, not at collection
                    close()
                del self._engines[name]
                del loaded
                _release(device)

    def loaded(self) -> list[str]:
        """Names of the models loaded now."""
        return list(self._engines)


def _embed_steps(engine: Any, rgb: np.ndarray) -> Any:
    """The engine's chunked encode (a generator) where it has one, else its embedding."""
    steps = getattr(engine, "embed_steps", None)
    return steps(rgb) if steps is not None else engine.embed(rgb)


def _release(device: Any) -> None:
    """Give an unloaded model's memory back (torch imported only if an engine ran)."""
    import sys

    if "torch" not in sys.modules:
        return
    from samdesk.inference.engines.device import release_memory

    release_memory(device if device is not None and hasattr(device, "type") else None)
