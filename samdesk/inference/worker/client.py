"""The GUI-side handle on the inference worker: :class:`InferenceClient`.

It owns the worker's QThread, assigns request ids, puts requests on the shared
:class:`~samdesk.inference.worker.request_queue.RequestQueue`, wakes the worker, and
re-emits only results that are still current (the latest id of their kind, on
the image in focus), as napari's layer slicer and ndv's generation counter do.
A propagation (:meth:`InferenceClient.propagate`) is never stale: each of its
masks, its progress and its end come back until it ends or the client stops.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from samdesk.images import load_rgb
from samdesk.inference.engines.base import Box, Prompts
from samdesk.inference.engines.runtime_choice import load_engine
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.propagate import VideoLoader, load_video
from samdesk.inference.worker.request_queue import RequestQueue
from samdesk.inference.worker.requests import (
    BoxMasks,
    CandidateMasks,
    DetectResult,
    DetectSegment,
    EmbeddingState,
    Failure,
    FocusImage,
    ImageRef,
    ModelLoaded,
    Predict,
    PredictResult,
    Progress,
    Propagate,
    PropagationDone,
    SegmentBoxes,
    SetModel,
    TrackFrame,
    prefetch_list,
)
from samdesk.inference.worker.worker import ImageLoader, InferenceWorker, ModelLoader

if TYPE_CHECKING:
    from samdesk.tracking import TrackPlan


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
    box_masks = Signal(object)  # BoxMasks, for every SegmentBoxes still wanted (any image)
    embedding_state = Signal(object)  # EmbeddingState (the image in focus only)
    progress = Signal(object)  # Progress
    failed = Signal(object)  # Failure
    track_frame = Signal(object)  # TrackFrame of a propagation not ended yet
    propagation_progress = Signal(object)  # Progress of a propagation (frames visited)
    propagation_done = Signal(object)  # PropagationDone (a failure comes as ``failed``)
    idle = Signal()
    _wake = Signal()

    def __init__(
        self,
        cache: EmbeddingCache | None = None,
        loader: ModelLoader = load_engine,
        image_loader: ImageLoader = load_rgb,
        parent: QObject | None = None,
        video_loader: VideoLoader = load_video,
    ) -> None:
        super().__init__(parent)
        self.cache = cache if cache is not None else EmbeddingCache()
        self._loader, self._image_loader = loader, image_loader
        self._video_loader = video_loader
        self._propagations: set[int] = set()  # Propagate requests not ended yet
        self._queue = RequestQueue()
        self._ids = itertools.count(1)
        self._latest: dict[str, int] = {}
        self._box_requests: set[int] = set()  # SegmentBoxes not answered yet (never stale)
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
            self._queue, self.cache, self._loader, self._image_loader, self._video_loader
        )
        thread.setObjectName("samdesk-inference")
        worker.release_when_idle = self._release_when_idle
        worker.moveToThread(thread)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.predicted.connect(self._on_predicted)
        worker.candidates.connect(self._on_candidates)
        worker.detected.connect(self._on_detected)
        worker.box_masks.connect(self._on_box_masks)
        worker.embedding_state.connect(self._on_embedding_state)
        worker.progress.connect(self._on_progress)
        worker.failed.connect(self._on_failed)
        worker.track_frame.connect(self._on_track_frame)
        worker.propagation_done.connect(self._on_propagation_done)
        worker.idle.connect(self.idle)
        self._wake.connect(worker.wake)
        thread.finished.connect(worker.deleteLater)
        self._thread, self._worker = thread, worker
        thread.start()
        self._wake.emit()

    def stop(self) -> None:
        """Drop pending work, let the running job finish, and end the thread."""
        self._queue.close()
        self._box_requests.clear()
        self._propagations.clear()
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        # Only now may the worker's last Python reference go: dropping it deletes the
        # C++ object on this thread, which while its own thread still ran a job or a
        # timer was a use after free (the window's rare segfault on closing).
        del worker

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

    def set_model(self, name: str, checkpoint: Path | None = None, device: str = "cpu",
                  runtime: str | None = None) -> int:
        """Load a segmenter or detector (by registry name), its encoder in ``runtime``
        (None: the default, auto); the old one serves until then, and its clicks are
        answered while the new one's encoder exports (progress as :attr:`progress`)."""
        request = SetModel(next(self._ids), name, checkpoint, device, runtime)
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
        preview: tuple[int, int] | None = None,
    ) -> int:
        """Masks for ``prompts``; supersedes any earlier prediction not yet delivered.

        ``preview``: ``(h, w)`` screen pixels the image is drawn at (see
        :class:`~samdesk.inference.worker.requests.Predict`).
        """
        request = Predict(next(self._ids), image, prompts, mask_input, multimask, preview)
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

    def segment_boxes(self, image: ImageRef, boxes: Iterable[Box]) -> int:
        """A mask for each box (XYXY upright pixels) on ``image``, on one embedding.

        Unlike predictions these are never superseded nor dropped on another
        focus: each is answered by :attr:`box_masks` (or :attr:`failed`).
        """
        request = SegmentBoxes(next(self._ids), image, tuple(
            (float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in boxes))
        self._box_requests.add(request.request_id)
        self._queue.put(request)
        self._wake.emit()
        return request.request_id

    def propagate(self, plan: TrackPlan, model: str | None = None,
                  checkpoint: Path | None = None, device: str | None = None) -> int:
        """Carry ``plan``'s tracks through its frames (SAM 2 / 2.1; None: the loaded one).

        Never superseded: every mask comes back as :attr:`track_frame`, progress
        as :attr:`propagation_progress`, the end as :attr:`propagation_done` (or
        :attr:`failed`). :meth:`cancel` stops it after the frame in progress.
        """
        request = Propagate(next(self._ids), plan, model, checkpoint, device)
        self._propagations.add(request.request_id)
        self._queue.put(request)
        self._wake.emit()
        return request.request_id

    def propagating(self, request_id: int) -> bool:
        """Whether propagation ``request_id`` is queued or running (its end not delivered)."""
        return request_id in self._propagations

    def prefetch(self, images: Iterable[ImageRef]) -> int:
        """Encode ``images`` while idle (replaces the previous list)."""
        return self._submit("prefetch", prefetch_list(images, next(self._ids)))

    def cancel(self, request_id: int) -> bool:
        """Drop a request that has not started; its result, if any, is never delivered.

        A propagation that is running stops after its current frame instead: the
        masks made so far are still delivered, then its :attr:`propagation_done`
        (``cancelled``); one not started yet ends at once, cancelled.
        """
        if request_id in self._propagations:
            found = self._queue.cancel(request_id)
            if found and request_id not in self._queue.pending_ids() and not self._queue.stopping(
                    request_id):
                self._propagations.discard(request_id)  # it had not started: it ends now
                self.propagation_done.emit(PropagationDone(
                    request_id, 0, True, "Propagation cancelled before it started"))
            return found
        for kind, latest in list(self._latest.items()):
            if latest == request_id:
                del self._latest[kind]
        self._box_requests.discard(request_id)
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
    def _on_box_masks(self, result: BoxMasks) -> None:
        if self._thread is not None and result.request_id in self._box_requests:
            self._box_requests.discard(result.request_id)
            self.box_masks.emit(result)

    @Slot(object)
    def _on_embedding_state(self, state: EmbeddingState) -> None:
        if self._thread is not None and self._focused is not None:
            if state.image_key == self._focused.key:
                self.embedding_state.emit(state)

    @Slot(object)
    def _on_progress(self, progress: Progress) -> None:
        if progress.request_id in self._propagations:
            if self._thread is not None:
                self.propagation_progress.emit(progress)
        elif self._current("prefetch", progress.request_id) or any(
                self._current(f"model:{slot}", progress.request_id)
                for slot in ("segmenter", "detector")):  # a model's export and probe
            self.progress.emit(progress)

    @Slot(object)
    def _on_track_frame(self, frame: TrackFrame) -> None:
        if self._thread is not None and frame.request_id in self._propagations:
            self.track_frame.emit(frame)

    @Slot(object)
    def _on_propagation_done(self, done: PropagationDone) -> None:
        if self._thread is not None and done.request_id in self._propagations:
            self._propagations.discard(done.request_id)
            self.propagation_done.emit(done)

    @Slot(object)
    def _on_failed(self, failure: Failure) -> None:
        if self._thread is None:
            return
        if failure.request_id in self._box_requests:
            self._box_requests.discard(failure.request_id)
            self.failed.emit(failure)
        elif failure.request_id in self._propagations:
            self._propagations.discard(failure.request_id)
            self.failed.emit(failure)
        elif failure.request_id in self._latest.values():
            self.failed.emit(failure)
