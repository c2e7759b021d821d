"""The inference worker, one QObject on its own QThread.

:class:`InferenceWorker` owns every engine (a segmenter and an optional text
detector), decodes images, runs the encoders through the
:class:`~samdesk.inference.worker.cache.EmbeddingCache` and answers requests one job
at a time, returning to its event loop between jobs. The window talks only to
:class:`~samdesk.inference.worker.client.InferenceClient`, which owns this worker's
thread. Every signal carries one dataclass from
:mod:`samdesk.inference.worker.requests`. With the client, the only inference module
that imports Qt.

A prediction from an engine with ``propose`` (SAM, SAM 2) is answered in two
steps: at once with every score and logit and each object's best candidate
upsampled (the mask the window draws), then, one candidate per job while no
newer request waits, with the other candidates' masks (for Tab). A newer
prediction or focus drops the candidates not yet upsampled.

An encode job runs an engine's ``embed_steps`` (SAM, SAM 2) chunk by chunk;
between chunks the worker runs the predictions and text detections whose
embedding is at hand (:meth:`RequestQueue.take_ready`), so a click on an
encoded image waits for one encoder chunk (half a block), not a whole background encode.
Model changes, other encodes and candidate upsampling wait for the encode to
end. Prefetch encodes start only once the person has not clicked or changed
image for :data:`PREFETCH_SETTLE_S`.

A :class:`Propagate` job runs SAM 2's video engine frame by frame
(:mod:`samdesk.inference.worker.propagate`), sending each mask back as it
comes; between frames the worker answers clicks and encodes the image in
focus, so the person can keep working on another frame meanwhile.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from samdesk import masks
from samdesk.errors import SamdeskError
from samdesk.images import load_rgb
from samdesk.inference.engines import packages
from samdesk.inference.engines.base import Detections, Embedding, EngineError, Prompts
from samdesk.inference.engines.boxes import segment_boxes
from samdesk.inference.engines.runtime_choice import load_engine
from samdesk.inference.models.registry import DETECTOR, get_spec
from samdesk.inference.worker import propagate
from samdesk.inference.worker.answers import answer
from samdesk.inference.worker.cache import EmbeddingCache, model_key
from samdesk.inference.worker.request_queue import RequestQueue
from samdesk.inference.worker.requests import (
    BoxMasks,
    CandidateMasks,
    DetectResult,
    DetectSegment,
    EmbeddingState,
    Encode,
    Failure,
    ImageRef,
    Job,
    ModelLoaded,
    Predict,
    Progress,
    Propagate,
    SegmentBoxes,
    SetModel,
    TrackFrame,
    UpsampleCandidate,
    describe,
    one_line,
)
from samdesk.project_boxes import mask_in_box

log = logging.getLogger(__name__)

ModelLoader = Callable[[str, Path | None, str], Any]
ImageLoader = Callable[[Path], np.ndarray]

PREFETCH_SETTLE_S = 0.08
"""Seconds without a prediction, detection or focus before a prefetch encode starts."""


class _LoadSuperseded(BaseException):  # noqa: N818
    """A model load stopped for a newer model change (a BaseException: the runtime's
    fallback to torch catches every Exception, and must not catch this)."""


def _takes_runtime(loader: Any) -> bool:
    """Whether ``loader`` takes ``runtime=`` and ``progress=`` (the default loader does)."""
    try:
        parameters = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return False
    return "runtime" in parameters and "progress" in parameters


class _Stopped(Exception):
    """The queue closed during an encode (the client is stopping): nothing is cached."""


class InferenceWorker(QObject):
    """Runs jobs from a :class:`RequestQueue` on the thread it was moved to.

    ``loader(name, checkpoint, device)`` builds engines (the registry's
    ``load_model``); ``image_loader(path)`` decodes an ``(H, W, 3)`` uint8 RGB
    image (``samdesk.images.load_rgb``).
    """

    model_loaded = Signal(object)  # ModelLoaded
    predicted = Signal(object)  # PredictResult
    candidates = Signal(object)  # CandidateMasks
    detected = Signal(object)  # DetectResult
    box_masks = Signal(object)  # BoxMasks
    embedding_state = Signal(object)  # EmbeddingState
    progress = Signal(object)  # Progress
    failed = Signal(object)  # Failure
    track_frame = Signal(object)  # TrackFrame
    propagation_done = Signal(object)  # PropagationDone
    idle = Signal()  # the queue ran dry

    def __init__(
        self,
        queue: RequestQueue,
        cache: EmbeddingCache,
        loader: ModelLoader = load_engine,
        image_loader: ImageLoader = load_rgb,
        video_loader: propagate.VideoLoader = propagate.load_video,
    ) -> None:
        super().__init__()
        self._queue, self._cache = queue, cache
        self._loader, self._image_loader = loader, image_loader
        queue.prefetch_settle_s = PREFETCH_SETTLE_S
        self._segmenter: Any = None
        self._segmenter_key = ""
        self._segmenter_source: propagate.ModelSource | None = None  # name, checkpoint, device
        self._videos = propagate.VideoEngines(video_loader)
        self._detector: Any = None
        self._last: tuple[str, str, Embedding] | None = None  # (model key, image key, ...)
        self._rgb: tuple[str, np.ndarray] | None = None  # last decoded image
        # Set from the GUI thread (a plain bool assignment): give cached GPU memory back to
        # the system each time the queue runs dry, for people who share the GPU.
        self.release_when_idle = False
        self.active = False  # a job is taken and running (read from other threads: a snapshot)
        self._worked = False  # a job ran since the last idle signal
        self._wake_pending = False
        self._nested = False  # running ready work between the chunks of an encode

    @Slot()
    def wake(self) -> None:
        """Run the next job, then come back through the event loop for the one after."""
        self._wake_pending = False
        self.active = True
        job = self._queue.take(self._ready)
        if job is None:
            self.active = False
            held = self._queue.prefetch_wait()
            if held is not None:  # a prefetch waits for the person to settle: come back
                if not self._wake_pending:
                    self._wake_pending = True
                    QTimer.singleShot(max(1, math.ceil(held * 1000)), self.wake)
                return
            if self._worked:
                self._worked = False
                if self.release_when_idle:
                    from samdesk.inference.engines.device import release_memory

                    release_memory()
                self.idle.emit()
            return
        self._worked = True
        self._run(job)
        if not self._wake_pending:
            self._wake_pending = True
            QTimer.singleShot(0, self.wake)

    def _ready(self, image_key: str) -> bool:
        if self._segmenter is None:
            return False
        last = self._last
        if last is not None and last[:2] == (self._segmenter_key, image_key):
            return True
        return self._cache.contains(self._segmenter_key, image_key)

    def _run(self, job: Job) -> None:
        doing = describe(job)
        try:
            if isinstance(job, SetModel):
                self._set_model(job)
            elif isinstance(job, Encode):
                self._encode(job)
            elif isinstance(job, Predict):
                self._predict(job)
            elif isinstance(job, UpsampleCandidate):
                self._upsample(job)
            elif isinstance(job, SegmentBoxes):
                self._segment_boxes(job)
            elif isinstance(job, Propagate):
                self._propagate(job)
            else:
                self._detect(job)
        except (_Stopped, _LoadSuperseded):
            return
        except Exception as exc:  # noqa: BLE001 - every failure goes back as a message
            if not isinstance(exc, SamdeskError):
                log.exception("%s failed", doing)
            message = one_line(exc, doing)
            self.failed.emit(Failure(job.request_id, message))
            if isinstance(job, Encode):
                self.embedding_state.emit(EmbeddingState(job.image.key, "failed", job.request_id))
                for dropped in self._queue.drop_image(job.image.key):
                    self.failed.emit(Failure(dropped, message))

    def _set_model(self, job: SetModel) -> None:
        spec = get_spec(job.name)
        if _takes_runtime(self._loader):  # runtime None: the loader's default
            extra = {} if job.runtime is None else {"runtime": job.runtime}
            engine = self._loader(job.name, job.checkpoint, job.device,
                                  progress=self._loading_progress(job), **extra)
        else:  # a loader of (name, checkpoint, device) only
            engine = self._loader(job.name, job.checkpoint, job.device)
        if spec.kind == DETECTOR:
            previous, self._detector = self._detector, engine
        else:
            previous = self._segmenter
            self._segmenter, self._segmenter_key = engine, model_key(job.name, job.checkpoint)
            self._segmenter_source = (job.name, job.checkpoint, job.device)
            self._videos.keep_only(job.name)  # another model's video engine is not kept
            self._last = None
            self._queue.refocus()  # the image in focus needs the new model's embedding
        close = getattr(previous, "close", None) if previous is not engine else None
        if close is not None:  # a runtime's sessions give their memory back now
            close()
        # report where it really runs ("auto" resolved; GrabCut is OpenCV on the CPU)
        where = str(getattr(engine, "device", "cpu"))
        note = getattr(engine, "runtime_note", "") or getattr(engine, "runtime_reason", "")
        self.model_loaded.emit(ModelLoaded(job.request_id, job.name, spec.kind, where,
                                           getattr(engine, "runtime", "torch"), note))

    def _loading_progress(self, job: SetModel) -> Callable[..., None]:
        """``progress(done, total, what="")`` while ``job``'s model loads (an ONNX export
        runs for minutes on a first use): said as :class:`Progress`; clicks on the model
        still serving are answered meanwhile; a newer model change for the slot stops it."""
        def progress(done: int, total: int, what: str = "") -> None:
            if self._queue.closed or self._queue.model_waiting(job.slot):
                raise _LoadSuperseded
            self.progress.emit(Progress(job.request_id, done, total, what))
            if not self._nested:
                self._run_ready()
        return progress

    def _embedding(
        self, image: ImageRef, request_id: int, preempt: bool = False
    ) -> tuple[Embedding, str, float]:
        """The segmenter's embedding of ``image``, its source and the encode seconds.

        ``preempt``: run ready work between the encoder's chunks (see
        :meth:`_compute`); the seconds count the encoder only.
        """
        if self._segmenter is None:
            raise EngineError("model: no segmentation model is loaded; choose one first")
        last = self._last
        if last is not None and last[:2] == (self._segmenter_key, image.key):
            return last[2], "memory", 0.0
        found = self._cache.lookup(self._segmenter_key, image.key)
        seconds = 0.0
        if found is None:
            self.embedding_state.emit(EmbeddingState(image.key, "computing", request_id))
            start = time.perf_counter()
            embedding, paused = self._compute(image, preempt)
            seconds = time.perf_counter() - start - paused
            self._cache.put(self._segmenter_key, image.key, embedding)
            found = (embedding, "computed")
        self._last = (self._segmenter_key, image.key, found[0])
        return found[0], found[1], seconds

    def _compute(self, image: ImageRef, preempt: bool) -> tuple[Embedding, float]:
        """Encode ``image``; the embedding and the seconds spent on other work meanwhile.

        With ``preempt`` and an engine that has ``embed_steps``, ready
        predictions and detections run between its chunks; a closed queue
        stops the encode (:class:`_Stopped`). Other engines (GrabCut) encode
        in one piece. An engine with ``embed_file_steps`` (a server's) gets
        the file and its content hash instead of decoded pixels, and yields
        while the server encodes, so clicks are answered meanwhile too.
        """
        file_steps = getattr(self._segmenter, "embed_file_steps", None)
        if file_steps is not None:
            chunks = file_steps(image.path, image.key)
            if not preempt:
                return _to_end(chunks), 0.0
        else:
            rgb = self._decode(image)
            steps = getattr(self._segmenter, "embed_steps", None)
            if not preempt or steps is None:
                return self._segmenter.embed(rgb), 0.0
            chunks = steps(rgb)
        paused = 0.0
        try:
            while True:
                if self._queue.closed:
                    raise _Stopped
                paused += self._run_ready()  # clicks made meanwhile (first: while decoding)
                try:
                    next(chunks)
                except StopIteration as done:
                    return done.value, paused
        finally:
            chunks.close()

    def _propagate(self, job: Propagate) -> None:
        """Run a propagation to its end (or its cancel); masks go out as they come."""
        def frame(result: Any, done: int, total: int) -> None:
            self.track_frame.emit(TrackFrame(job.request_id, result, done, total))

        def between(done: int, total: int) -> None:
            self.progress.emit(Progress(job.request_id, done, total, "propagating"))
            if not self._nested:
                self._run_ready(encode_focus=True)  # clicks made meanwhile, the image shown

        try:
            done = propagate.run_propagation(
                job, self._videos, self._segmenter_source, self._image_loader, frame, between,
                lambda: self._queue.stopping(job.request_id))
        finally:
            self._queue.propagation_ended(job.request_id)
        self.propagation_done.emit(done)

    def _run_ready(self, encode_focus: bool = False) -> float:
        """Run the work :meth:`RequestQueue.take_ready` hands out; the seconds it took.

        Each job's failure goes back as its own :class:`Failure` (``_run``);
        ``_last`` and ``_rgb`` stay keyed by their image, so the encode that
        resumes afterwards is unaffected.
        """
        job = self._queue.take_ready(self._ready, encode_focus)
        if job is None:
            return 0.0
        start = time.perf_counter()
        self._nested = True
        try:
            while job is not None:
                self._run(job)
                job = self._queue.take_ready(self._ready, encode_focus)
        finally:
            self._nested = False
        return time.perf_counter() - start

    def _decode(self, image: ImageRef) -> np.ndarray:
        if self._rgb is None or self._rgb[0] != image.key:
            self._rgb = None  # free the old image before decoding the next
            self._rgb = (image.key, self._image_loader(image.path))
        return self._rgb[1]

    def _encode(self, job: Encode) -> None:
        _, source, seconds = self._embedding(job.image, job.request_id, not self._nested)
        state = EmbeddingState(job.image.key, "ready", job.request_id, source, seconds)
        self.embedding_state.emit(state)
        if job.reason == "prefetch":
            message = f"encoded {job.image.path.name}"
            self.progress.emit(Progress(job.request_id, job.position, job.total, message))

    def _predict(self, job: Predict) -> None:
        embedding, _, _ = self._embedding(job.image, job.request_id)
        result, rest = answer(self._segmenter, embedding, job)
        self.predicted.emit(result)
        if rest:
            self._queue.put_candidates(rest)

    def _upsample(self, job: UpsampleCandidate) -> None:
        mask = job.proposal.mask(job.obj, job.candidate)
        key = (job.obj, job.candidate)
        self.candidates.emit(CandidateMasks(job.request_id, job.image.key, {key: mask}))

    def _segment_boxes(self, job: SegmentBoxes) -> None:
        """One mask per box on one embedding, as RLE clipped to its box (None: empty).

        The image is encoded here when it is not yet (ready clicks are
        answered between the encoder's chunks, as for any encode)."""
        embedding, _, _ = self._embedding(job.image, job.request_id, not self._nested)
        found = segment_boxes(self._segmenter, embedding, job.boxes)
        rles = []
        for box, got in zip(job.boxes, found, strict=True):
            rle = mask_in_box(masks.encode(got.mask), box)
            rles.append(None if masks.is_empty(rle) else rle)
        self.box_masks.emit(BoxMasks(job.request_id, job.image.key, tuple(rles),
                                     tuple(got.score for got in found)))

    def _detect(self, job: DetectSegment) -> None:
        if self._detector is None:
            raise EngineError(packages.missing("groundingdino") or
                              "model: no text detector is loaded; choose GroundingDINO first")
        embedding, _, _ = self._embedding(job.image, job.request_id)
        detect_file = getattr(self._detector, "detect_file", None)
        if detect_file is not None:  # a server's detector: the file, sent once
            found = detect_file(job.image.path, job.image.key, job.text, job.box_threshold,
                                job.text_threshold)
        else:
            found = self._detector.detect(
                self._decode(job.image), job.text, job.box_threshold, job.text_threshold
            )
        found = _on_image(found, embedding.image_size)
        prediction = None
        if len(found):
            boxes = tuple(tuple(float(v) for v in box) for box in found.boxes)
            prediction = self._segmenter.predict(
                embedding, Prompts(boxes=boxes), None, job.multimask  # type: ignore[arg-type]
            )
        result = DetectResult(job.request_id, job.image.key, job.text, found, prediction)
        self.detected.emit(result)


def _to_end(chunks: Any) -> Embedding:
    """The value a chunked encode returns, run without pausing (no torch imported here)."""
    while True:
        try:
            next(chunks)
        except StopIteration as done:
            return done.value


def _on_image(found: Detections, size: tuple[int, int]) -> Detections:
    """``found`` with boxes clipped to the ``(H, W)`` image; boxes under a pixel dropped."""
    height, width = size
    boxes = np.asarray(found.boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1))
    scores = np.asarray(found.scores, dtype=np.float32)[keep]
    return Detections(boxes[keep], [found.phrases[i] for i in keep], scores)
