"""The inference worker on its own QThread, and the GUI-side client that owns it.

:class:`InferenceWorker` is one QObject moved to one QThread; it owns every
engine (a segmenter and an optional text detector), decodes images, runs the
encoders through the :class:`~samdesk.inference.cache.EmbeddingCache` and
answers requests one job at a time, returning to its event loop between jobs.
The window talks only to :class:`InferenceClient`: it assigns request ids,
puts requests on the shared :class:`~samdesk.inference.requests.RequestQueue`,
wakes the worker, and re-emits only results that are still current (the
latest id of their kind, on the image in focus), as napari's layer slicer and
ndv's generation counter do. Every signal carries one dataclass from
:mod:`samdesk.inference.requests`. The only inference module that imports Qt.

A prediction from an engine with ``propose`` (SAM, SAM 2) is answered in two
steps: at once with every score and logit and each object's best candidate
upsampled (the mask the window draws), then, one candidate per job while no
newer request waits, with the other candidates' masks (for Tab). A newer
prediction or focus drops the candidates not yet upsampled.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from samdesk.errors import SamdeskError
from samdesk.images import load_rgb
from samdesk.inference.base import Detections, Embedding, EngineError, Prompts
from samdesk.inference.cache import EmbeddingCache, model_key
from samdesk.inference.registry import DETECTOR, get_spec, load_model
from samdesk.inference.requests import (
    CandidateMasks,
    DetectResult,
    DetectSegment,
    EmbeddingState,
    Encode,
    Failure,
    FocusImage,
    ImageRef,
    Job,
    ModelLoaded,
    Predict,
    PredictResult,
    Progress,
    RequestQueue,
    SetModel,
    UpsampleCandidate,
    describe,
    one_line,
    prefetch_list,
)

log = logging.getLogger(__name__)

ModelLoader = Callable[[str, Path | None, str], Any]
ImageLoader = Callable[[Path], np.ndarray]


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
    embedding_state = Signal(object)  # EmbeddingState
    progress = Signal(object)  # Progress
    failed = Signal(object)  # Failure
    idle = Signal()  # the queue ran dry

    def __init__(
        self,
        queue: RequestQueue,
        cache: EmbeddingCache,
        loader: ModelLoader = load_model,
        image_loader: ImageLoader = load_rgb,
    ) -> None:
        super().__init__()
        self._queue, self._cache = queue, cache
        self._loader, self._image_loader = loader, image_loader
        self._segmenter: Any = None
        self._segmenter_key = ""
        self._detector: Any = None
        self._last: tuple[str, str, Embedding] | None = None  # (model key, image key, ...)
        self._rgb: tuple[str, np.ndarray] | None = None  # last decoded image
        # Set from the GUI thread (a plain bool assignment): give cached GPU memory back to
        # the system each time the queue runs dry, for people who share the GPU.
        self.release_when_idle = False
        self.active = False  # a job is taken and running (read from other threads: a snapshot)
        self._worked = False  # a job ran since the last idle signal
        self._wake_pending = False

    @Slot()
    def wake(self) -> None:
        """Run the next job, then come back through the event loop for the one after."""
        self._wake_pending = False
        self.active = True
        job = self._queue.take(self._ready)
        if job is None:
            self.active = False
            if self._worked:
                self._worked = False
                if self.release_when_idle:
                    from samdesk.inference.device import release_memory

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
            else:
                self._detect(job)
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
        engine = self._loader(job.name, job.checkpoint, job.device)
        if spec.kind == DETECTOR:
            self._detector = engine
        else:
            self._segmenter, self._segmenter_key = engine, model_key(job.name, job.checkpoint)
            self._last = None
            self._queue.refocus()  # the image in focus needs the new model's embedding
        # report where it really runs ("auto" resolved; GrabCut is OpenCV on the CPU)
        where = str(getattr(engine, "device", "cpu"))
        self.model_loaded.emit(ModelLoaded(job.request_id, job.name, spec.kind, where))

    def _embedding(self, image: ImageRef, request_id: int) -> tuple[Embedding, str, float]:
        """The segmenter's embedding of ``image``, its source and the encode seconds."""
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
            embedding = self._segmenter.embed(self._decode(image))
            seconds = time.perf_counter() - start
            self._cache.put(self._segmenter_key, image.key, embedding)
            found = (embedding, "computed")
        self._last = (self._segmenter_key, image.key, found[0])
        return found[0], found[1], seconds

    def _decode(self, image: ImageRef) -> np.ndarray:
        if self._rgb is None or self._rgb[0] != image.key:
            self._rgb = None  # free the old image before decoding the next
            self._rgb = (image.key, self._image_loader(image.path))
        return self._rgb[1]

    def _encode(self, job: Encode) -> None:
        _, source, seconds = self._embedding(job.image, job.request_id)
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

    def _detect(self, job: DetectSegment) -> None:
        if self._detector is None:
            raise EngineError("model: no text detector is loaded; choose GroundingDINO first")
        embedding, _, _ = self._embedding(job.image, job.request_id)
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


def answer(engine: Any, embedding: Embedding,
           job: Predict) -> tuple[PredictResult, list[UpsampleCandidate]]:
    """The first answer to ``job`` and the upsampling jobs for the candidates it lacks.

    With ``engine.propose``: every score and logit, each object's best
    candidate upsampled (pixel for pixel ``engine.predict``'s), and one job per
    other candidate, best scores first (the order Tab shows them). Without it
    (GrabCut): ``engine.predict``'s whole answer and no jobs.
    """
    if not hasattr(engine, "propose"):
        prediction = engine.predict(embedding, job.prompts, job.mask_input, job.multimask)
        return PredictResult.of(job.request_id, job.image.key, job.prompts, prediction), []
    proposal = engine.propose(embedding, job.prompts, job.mask_input, job.multimask)
    best = proposal.best()
    shown = {(i, int(c)): proposal.mask(i, int(c)) for i, c in enumerate(best)}
    result = PredictResult(job.request_id, job.image.key, job.prompts, proposal.scores,
                           proposal.logits, shown)
    rest = [UpsampleCandidate(job.request_id, job.image, proposal, i, int(c))
            for i in range(proposal.scores.shape[0])
            for c in np.argsort(-proposal.scores[i], kind="stable") if (i, int(c)) not in shown]
    return result, rest


def _on_image(found: Detections, size: tuple[int, int]) -> Detections:
    """``found`` with boxes clipped to the ``(H, W)`` image; boxes under a pixel dropped."""
    height, width = size
    boxes = np.asarray(found.boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1))
    scores = np.asarray(found.scores, dtype=np.float32)[keep]
    return Detections(boxes[keep], [found.phrases[i] for i in keep], scores)


class InferenceClient(QObject):
    """The window's handle on inference: submit requests, receive current results.

    Each submit method returns the new request's id. Results come back as
    signals on the GUI thread and only while current: the latest request of
    their kind and, for masks and embedding states, on the image in focus.
    Call :meth:`start` once and :meth:`stop` before the application quits.
    """

    model_loaded = Signal(object)  # ModelLoaded
    predicted = Signal(object)  # PredictResult
    candidates = Signal(object)  # CandidateMasks of the latest PredictResult
    detected = Signal(object)  # DetectResult
    embedding_state = Signal(object)  # EmbeddingState (the image in focus only)
    progress = Signal(object)  # Progress
    failed = Signal(object)  # Failure
    idle = Signal()
    _wake = Signal()

    def __init__(
        self,
        cache: EmbeddingCache | None = None,
        loader: ModelLoader = load_model,
        image_loader: ImageLoader = load_rgb,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.cache = cache if cache is not None else EmbeddingCache()
        self._loader, self._image_loader = loader, image_loader
        self._queue = RequestQueue()
        self._ids = itertools.count(1)
        self._latest: dict[str, int] = {}
        self._focused: ImageRef | None = None
        self._thread: QThread | None = None
        self._worker: InferenceWorker | None = None
        self._release_when_idle = False

    # -- life cycle --------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (requests made before are kept and run)."""
        if self._thread is not None:
            return
        if self._queue.closed:
            self._queue = RequestQueue()
        thread, worker = QThread(), InferenceWorker(
            self._queue, self.cache, self._loader, self._image_loader
        )
        thread.setObjectName("samdesk-inference")
        worker.release_when_idle = self._release_when_idle
        worker.moveToThread(thread)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.predicted.connect(self._on_predicted)
        worker.candidates.connect(self._on_candidates)
        worker.detected.connect(self._on_detected)
        worker.embedding_state.connect(self._on_embedding_state)
        worker.progress.connect(self._on_progress)
        worker.failed.connect(self._on_failed)
        worker.idle.connect(self.idle)
        self._wake.connect(worker.wake)
        thread.finished.connect(worker.deleteLater)
        self._thread, self._worker = thread, worker
        thread.start()
        self._wake.emit()

    def stop(self) -> None:
        """Drop pending work, let the running job finish, and end the thread."""
        self._queue.close()
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def is_idle(self) -> bool:
        """Nothing pending and no job running (a snapshot; the worker may wake any moment)."""
        worker = self._worker
        return not self._queue.pending_ids() and (worker is None or not worker.active)

    @property
    def worker(self) -> InferenceWorker | None:
        """The worker (lives on the worker thread: connect to it, never call it)."""
        return self._worker

    @property
    def focused(self) -> ImageRef | None:
        return self._focused

    # -- requests ----------------------------------------------------------

    def set_release_when_idle(self, on: bool) -> None:
        """Free the GPU's cached memory whenever the worker has nothing left to do."""
        self._release_when_idle = bool(on)
        if self._worker is not None:
            self._worker.release_when_idle = self._release_when_idle

    def set_model(self, name: str, checkpoint: Path | None = None, device: str = "cpu") -> int:
        """Load a segmenter or detector (by registry name); old one serves until then."""
        request = SetModel(next(self._ids), name, checkpoint, device)
        return self._submit(f"model:{request.slot}", request)

    def focus(self, image: ImageRef) -> int:
        """Make ``image`` current: it is encoded next, work on other images is dropped."""
        self._focused = image
        request_id = self._submit("focus", FocusImage(next(self._ids), image))
        self.embedding_state.emit(EmbeddingState(image.key, "queued", request_id))
        return request_id

    def predict(
        self,
        image: ImageRef,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> int:
        """Masks for ``prompts``; supersedes any earlier prediction not yet delivered."""
        request = Predict(next(self._ids), image, prompts, mask_input, multimask)
        return self._submit("predict", request)

    def detect(
        self,
        image: ImageRef,
        text: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        multimask: bool = False,
    ) -> int:
        """Boxes for ``text`` and a mask per box (needs a detector model)."""
        request = DetectSegment(
            next(self._ids), image, text, box_threshold, text_threshold, multimask
        )
        return self._submit("detect", request)

    def prefetch(self, images: Iterable[ImageRef]) -> int:
        """Encode ``images`` while idle (replaces the previous list)."""
        return self._submit("prefetch", prefetch_list(images, next(self._ids)))

    def cancel(self, request_id: int) -> bool:
        """Drop a request that has not started; its result, if any, is never delivered."""
        for kind, latest in list(self._latest.items()):
            if latest == request_id:
                del self._latest[kind]
        return self._queue.cancel(request_id)

    def _submit(self, kind: str, request: Any) -> int:
        self._latest[kind] = request.request_id
        self._queue.put(request)
        self._wake.emit()
        return request.request_id

    # -- results -----------------------------------------------------------

    def _current(self, kind: str, request_id: int, image_key: str | None = None) -> bool:
        if self._thread is None or self._latest.get(kind) != request_id:
            return False
        return image_key is None or self._focused is None or self._focused.key == image_key

    @Slot(object)
    def _on_model_loaded(self, result: ModelLoaded) -> None:
        if self._current(f"model:{result.slot}", result.request_id):
            self.model_loaded.emit(result)

    @Slot(object)
    def _on_predicted(self, result: PredictResult) -> None:
        if self._current("predict", result.request_id, result.image_key):
            self.predicted.emit(result)

    @Slot(object)
    def _on_candidates(self, update: CandidateMasks) -> None:
        if self._current("predict", update.request_id, update.image_key):
            self.candidates.emit(update)

    @Slot(object)
    def _on_detected(self, result: DetectResult) -> None:
        if self._current("detect", result.request_id, result.image_key):
            self.detected.emit(result)

    @Slot(object)
    def _on_embedding_state(self, state: EmbeddingState) -> None:
        if self._thread is not None and self._focused is not None:
            if state.image_key == self._focused.key:
                self.embedding_state.emit(state)

    @Slot(object)
    def _on_progress(self, progress: Progress) -> None:
        if self._current("prefetch", progress.request_id):
            self.progress.emit(progress)

    @Slot(object)
    def _on_failed(self, failure: Failure) -> None:
        if self._thread is not None and failure.request_id in self._latest.values():
            self.failed.emit(failure)
