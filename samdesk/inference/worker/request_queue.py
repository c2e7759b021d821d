"""The queue between the window and the inference worker: what runs next, what is superseded.

The :class:`RequestQueue` is the only state the GUI thread and the worker
thread share (the requests and jobs it holds are in
:mod:`samdesk.inference.worker.requests`); it decides what the worker runs next:

1. model changes, oldest first;
2. predictions and text detections whose image embedding is ready, oldest first;
3. encoding the image in focus;
4. encoding an image a pending prediction is waiting for;
5. upsampling the candidates of the latest prediction that the window does
   not show yet (:class:`UpsampleCandidate`, one candidate a job), so Tab
   finds them ready;
6. making masks from pending boxes (:class:`SegmentBoxes`), oldest first:
   never superseded, and kept when the person moves to another image;
7. propagating tracks through frames (:class:`Propagate`), oldest first,
   never superseded; :meth:`RequestQueue.cancel` of the one running asks it
   to stop after its current frame (:meth:`RequestQueue.stopping`);
8. when nothing else is left and no prediction, detection or focus came for
   :attr:`RequestQueue.prefetch_settle_s`, encoding the next prefetch image
   (a cache hit when it is encoded already).

While an encode runs, :meth:`RequestQueue.take_ready` hands the worker, between
encoder chunks, the work of step 2, the full-resolution mask of a candidate
the window shows as a preview, and a focus whose image is ready: a click on
an encoded image never waits for a whole encode of another one.

A newer prediction (or detection) for an image supersedes a pending one for the
same image; focusing another image drops the pending work on every other image
and the focus encode nobody waits for any more. Any prediction, detection or
focus drops the pending candidate upsampling. Prefetch images only ever run
when the queue is otherwise empty. Qt-free.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from samdesk.inference.worker.requests import (
    DetectSegment,
    Encode,
    FocusImage,
    ImageRef,
    Job,
    Predict,
    Prefetch,
    Propagate,
    Request,
    SegmentBoxes,
    SetModel,
    UpsampleCandidate,
)

__all__ = ["RequestQueue"]


@dataclass
class _Prefetching:
    request: Prefetch
    left: deque[ImageRef] = field(default_factory=deque)
    done: int = 0


class RequestQueue:
    """Pending requests shared by the client (puts) and the worker (takes); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: list[SetModel] = []
        self._focus: FocusImage | None = None
        self._focus_taken = True
        self._decodes: dict[tuple[type, str], Predict | DetectSegment] = {}
        self._prefetch: _Prefetching | None = None
        self._candidates: deque[UpsampleCandidate] = deque()
        self._boxes: deque[SegmentBoxes] = deque()
        self._propagations: deque[Propagate] = deque()
        self._propagating: int | None = None  # the id of the propagation running
        self._stopping: set[int] = set()  # running propagations asked to stop
        self._newest = 0  # id of the latest prediction, detection or focus
        self._closed = False
        self._interactive_at = float("-inf")  # time.monotonic() of the latest such put
        self.prefetch_settle_s = 0.0
        """Prefetch encodes wait until no prediction, detection or focus came for this long."""

    def put(self, request: Request) -> list[int]:
        """Queue ``request``; return the ids of pending requests it superseded."""
        with self._lock:
            if self._closed:
                return [request.request_id]
            if isinstance(request, SetModel):
                gone = [m for m in self._models if m.slot == request.slot]
                self._models = [m for m in self._models if m.slot != request.slot] + [request]
                return [m.request_id for m in gone]
            if isinstance(request, FocusImage):
                self._interactive_at = time.monotonic()
                return self._refocus(request)
            if isinstance(request, SegmentBoxes):
                self._boxes.append(request)
                return []
            if isinstance(request, Propagate):
                self._propagations.append(request)
                return []
            if isinstance(request, Prefetch):
                old = self._prefetch
                self._prefetch = _Prefetching(request, deque(request.images))
                return [old.request.request_id] if old and old.left else []
            self._newest = max(self._newest, request.request_id)
            self._interactive_at = time.monotonic()
            self._candidates.clear()
            old_decode = self._decodes.pop((type(request), request.image.key), None)
            self._decodes[(type(request), request.image.key)] = request
            return [old_decode.request_id] if old_decode else []

    def _refocus(self, request: FocusImage) -> list[int]:
        self._newest = max(self._newest, request.request_id)
        self._candidates.clear()
        gone = []
        if self._focus is not None and not self._focus_taken:
            gone.append(self._focus.request_id)
        for key, pending in list(self._decodes.items()):
            if pending.image.key != request.image.key:
                gone.append(self._decodes.pop(key).request_id)
        self._focus, self._focus_taken = request, False
        return gone

    def take(self, ready: Callable[[str], bool]) -> Job | None:
        """The next job, or None; ``ready(image_key)`` says whether an embedding is at hand."""
        with self._lock:
            if self._closed:
                return None
            if self._models:
                return self._models.pop(0)
            waiting = sorted(self._decodes.values(), key=lambda r: r.request_id)
            for request in waiting:
                if ready(request.image.key):
                    del self._decodes[(type(request), request.image.key)]
                    return request
            if self._focus is not None and not self._focus_taken:
                self._focus_taken = True
                return Encode(self._focus.image, self._focus.request_id, "focus")
            if waiting:
                return Encode(waiting[0].image, waiting[0].request_id, "predict")
            if self._candidates:
                return self._candidates.popleft()
            if self._boxes:
                return self._boxes.popleft()
            if self._propagations:
                job = self._propagations.popleft()
                self._propagating = job.request_id
                return job
            return self._next_prefetch()

    def take_ready(self, ready: Callable[[str], bool], encode_focus: bool = False) -> Job | None:
        """Work that needs no encoder, for the worker to run between chunks of an encode.

        The oldest prediction or text detection whose image is ``ready``
        (``ready(image_key)``, as for :meth:`take`), else the full-resolution
        mask of a previewed candidate (:attr:`UpsampleCandidate.shown`), else
        the focus encode when the focused image is ready (a cache hit), or,
        with ``encode_focus`` (between the frames of a propagation), when it
        is not. None when there is none, when the queue is closed, or while a
        model change waits (it runs first, after the running job, as
        :meth:`take` would order it).
        """
        with self._lock:
            if self._closed or self._models:
                return None
            for request in sorted(self._decodes.values(), key=lambda r: r.request_id):
                if ready(request.image.key):
                    del self._decodes[(type(request), request.image.key)]
                    return request
            if self._candidates and self._candidates[0].shown:
                return self._candidates.popleft()
            focus = self._focus
            if focus is not None and not self._focus_taken and (
                    encode_focus or ready(focus.image.key)):
                self._focus_taken = True
                return Encode(focus.image, focus.request_id, "focus")
            return None

    def prefetch_wait(self) -> float | None:
        """Seconds until a held prefetch encode may run (0 when it may now); None if none left.

        See :attr:`prefetch_settle_s`.
        """
        with self._lock:
            if self._closed or self._prefetch is None or not self._prefetch.left:
                return None
            return max(0.0, self._settle_left())

    def _settle_left(self) -> float:
        return self._interactive_at + self.prefetch_settle_s - time.monotonic()

    def put_candidates(self, jobs: Iterable[UpsampleCandidate]) -> bool:
        """Queue the upsampling of the candidates of one prediction, in this order.

        Refused (False) when a newer prediction, detection or focus was put
        meanwhile: nobody will look at these candidates.
        """
        jobs = list(jobs)
        with self._lock:
            if self._closed or not jobs or jobs[0].request_id < self._newest:
                return False
            self._candidates = deque(jobs)
            return True

    def _next_prefetch(self) -> Encode | None:
        fetching = self._prefetch
        if fetching is None or not fetching.left or self._settle_left() > 0:
            return None
        fetching.done += 1  # cached ones too: a cheap hit, and progress reaches the total
        total = len(fetching.request.images)
        return Encode(fetching.left.popleft(), fetching.request.request_id, "prefetch",
                      fetching.done, total)

    def model_waiting(self, slot: str) -> bool:
        """Whether a model change for ``slot`` (segmenter, detector) waits to run."""
        with self._lock:
            return any(m.slot == slot for m in self._models)

    def refocus(self) -> None:
        """Encode the image in focus again (the segmenter changed)."""
        with self._lock:
            if self._focus is not None:
                self._focus_taken = False

    def drop_image(self, image_key: str) -> list[int]:
        """Forget pending work on an image that cannot be encoded; return the dropped ids."""
        with self._lock:
            gone = [r.request_id for r in self._decodes.values() if r.image.key == image_key]
            self._decodes = {k: r for k, r in self._decodes.items() if r.image.key != image_key}
            if self._prefetch is not None:
                self._prefetch.left = deque(i for i in self._prefetch.left if i.key != image_key)
            self._candidates = deque(j for j in self._candidates if j.image.key != image_key)
            gone += [j.request_id for j in self._boxes if j.image.key == image_key]
            self._boxes = deque(j for j in self._boxes if j.image.key != image_key)
            return gone

    def stopping(self, request_id: int) -> bool:
        """Whether the running propagation ``request_id`` should stop (cancelled, or closing)."""
        with self._lock:
            return self._closed or request_id in self._stopping

    def propagation_ended(self, request_id: int) -> None:
        """The worker finished (or gave up) propagation ``request_id``."""
        with self._lock:
            self._stopping.discard(request_id)
            if self._propagating == request_id:
                self._propagating = None

    def cancel(self, request_id: int) -> bool:
        """Drop the pending request ``request_id``, or ask the running propagation of
        that id to stop after its current frame; False if it is neither."""
        with self._lock:
            if self._propagating == request_id:
                self._stopping.add(request_id)
                return True
            if any(job.request_id == request_id for job in self._propagations):
                self._propagations = deque(j for j in self._propagations
                                           if j.request_id != request_id)
                return True
            for key, pending in list(self._decodes.items()):
                if pending.request_id == request_id:
                    del self._decodes[key]
                    return True
            if self._focus is not None and self._focus.request_id == request_id:
                was_pending, self._focus_taken = not self._focus_taken, True
                return was_pending
            if any(job.request_id == request_id for job in self._candidates):
                self._candidates.clear()
                return True
            if any(job.request_id == request_id for job in self._boxes):
                self._boxes = deque(j for j in self._boxes if j.request_id != request_id)
                return True
            if self._prefetch is not None and self._prefetch.request.request_id == request_id:
                was_pending = bool(self._prefetch.left)
                self._prefetch = None
                return was_pending
            kept = [m for m in self._models if m.request_id != request_id]
            found, self._models = len(kept) != len(self._models), kept
            return found

    def close(self) -> None:
        """Refuse new requests and hand out no more jobs (the worker is stopping)."""
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def pending_ids(self) -> list[int]:
        """Ids of every request still waiting to run (prefetch counted while images are left)."""
        with self._lock:
            ids = [m.request_id for m in self._models]
            ids += [r.request_id for r in self._decodes.values()]
            if self._focus is not None and not self._focus_taken:
                ids.append(self._focus.request_id)
            if self._prefetch is not None and self._prefetch.left:
                ids.append(self._prefetch.request.request_id)
            ids += {job.request_id for job in self._candidates}
            ids += [job.request_id for job in self._boxes]
            ids += [job.request_id for job in self._propagations]
            return sorted(ids)
