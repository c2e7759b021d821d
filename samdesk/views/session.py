"""The annotation session: what a person is working on, with no widgets of its own.

A :class:`Session` holds the open image, the prompts being placed (points
(x, y) and one box XYXY, in upright image pixels), the candidate masks the
model returned for them, the selected layers and the default label. It turns
gestures into inference requests through the
:class:`~samdesk.inference.worker.client.InferenceClient` (never running a model
itself), turns accepted candidates and brush strokes into project edits, and
tells the canvas (any object with ``set_image``, ``set_layers``,
``set_candidate``, ``set_prompt_markers``, ``set_message`` and ``shown_size``) what to
draw. An image is read and decoded on a pool thread (:mod:`~samdesk.views.image_loader`),
never on the GUI thread: the canvas says "Loading…" meanwhile, and a decode
the person no longer waits for is dropped. Docks and the
status bar listen to its signals. Project changes made anywhere (undo, an
import on another thread) come back through :meth:`Project.subscribe` and are
re-read on the GUI thread.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from samdesk import masks
from samdesk.annotations import ImageRecord, ImageStatus, Label, MaskLayer
from samdesk.image_store import ImageStore
from samdesk.images import load_display
from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.requests import (
    CandidateMasks,
    DetectResult,
    EmbeddingState,
    ImageRef,
    PredictResult,
)
from samdesk.project import Project, ProjectEvent
from samdesk.views.candidates import Candidate, distinct
from samdesk.views.image_loader import ImageLoader
from samdesk.views.qtutil import guarded
from samdesk.views.session_boxes import BoxesToMasks
from samdesk.views.session_images import PREFETCH_AHEAD, ImageOpening  # noqa: F401 (re-exported)
from samdesk.views.session_layers import LayerEdits

CANDIDATE_COLOR = "#00e5ff"
DISPLAY_MAX_SIDE = 4096
Box = tuple[float, float, float, float]


def _display(path: Path) -> np.ndarray:
    """What the canvas shows: the upright image, longer side at most DISPLAY_MAX_SIDE."""
    return load_display(path, DISPLAY_MAX_SIDE)[0]


class Session(ImageOpening, BoxesToMasks, LayerEdits, QObject):
    """The current image, prompts, candidates, selection and default label."""

    image_changed = Signal(int)  # image id (its pixels may still be loading)
    image_loaded = Signal(int)  # image id: its pixels are shown, or its error is
    images_changed = Signal()  # statuses or mask counts changed
    layers_changed = Signal()  # layers of the open image (or the selection) changed
    labels_changed = Signal()
    candidates_changed = Signal()
    detections_changed = Signal(list)  # [(phrase, score)] of text candidates
    detect_state = Signal(str)  # the outcome of the last text search, one line
    embedding_changed = Signal(str)  # "queued", "computing", "ready", "failed"
    message = Signal(str)  # one line for the status bar
    _project_changed = Signal(object)  # ProjectEvent, re-emitted on the GUI thread

    def __init__(self, project: Project, client: InferenceClient, view: Any,
                 store: ImageStore | None = None) -> None:
        QObject.__init__(self)
        self.project, self.client, self.view = project, client, view
        self.store = store or ImageStore(max_bytes=512 << 20, loader=_display)
        self.image: ImageRecord | None = None
        self.ref: ImageRef | None = None
        self.rgb: np.ndarray | None = None
        self.points: list[Point] = []
        self.box: Box | None = None
        self.candidates: list[Candidate] = []
        self.candidate_index = 0
        self.refine_target: int | None = None
        self.embedding = "none"
        self.model_name = ""
        self._pending: int | None = None
        self._answered: int | None = None  # the request whose candidates are shown
        self._wanted: int | None = None  # Tab's pick, drawn once its mask arrives
        self._accept_when_ready = False  # Enter on a preview: accept once the mask arrives
        self.loading = False  # the open image is being read on a pool thread
        self._closed = False
        self._detecting: int | None = None  # the text search whose outcome is awaited
        self._load_id = 0  # the latest open_image request; other loads are stale
        self._loader = ImageLoader(self)
        self._loader.finished.connect(self._on_loaded)
        self._init_layers()
        labels = project.labels()
        self.default_label: int | None = labels[0].id if labels else None
        self._project_changed.connect(self._on_project_event)
        self._unsubscribe = project.subscribe(self._project_changed.emit)
        client.predicted.connect(self._on_predicted)
        client.candidates.connect(self._on_candidates)
        client.detected.connect(self._on_detected)
        client.embedding_state.connect(self._on_embedding)
        client.model_loaded.connect(self._on_model_loaded)
        client.failed.connect(self._on_failed)
        self._init_boxes()

    def close(self) -> None:
        """Stop listening to the project and the client; wait for a decode in progress."""
        self._load_id += 1
        self._closed = True  # project events already queued are dropped
        self._loader.wait()
        self._close_boxes()
        self._unsubscribe()
        for signal, slot in ((self.client.predicted, self._on_predicted),
                             (self.client.candidates, self._on_candidates),
                             (self.client.detected, self._on_detected),
                             (self.client.embedding_state, self._on_embedding),
                             (self.client.model_loaded, self._on_model_loaded),
                             (self.client.failed, self._on_failed)):
            signal.disconnect(slot)

    # ------------------------------------------------------------------ images
    def step_image(self, step: int, order: list[int] | None = None) -> int | None:
        """Open the image ``step`` places away in ``order`` (default: all images)."""
        ids = order if order is not None else [r.id for r in self.project.images()]
        if not ids:
            return None
        if self.image is None or self.image.id not in ids:
            target = ids[0] if step > 0 else ids[-1]
        else:
            index = ids.index(self.image.id) + step
            if not 0 <= index < len(ids):
                return None
            target = ids[index]
        self.open_image(target)
        return target

    def mark_done(self) -> None:
        if self.image is not None:
            self.project.set_status(self.image.id, ImageStatus.DONE)
            self.message.emit(f"{self.image.path} marked done")

    # ----------------------------------------------------------------- prompts
    def add_point(self, x: float, y: float, positive: bool = True) -> None:
        """Add a click at image pixel ``(x, y)`` and ask for masks again."""
        if self.ref is None:
            if self.loading:
                self.message.emit("The image is still loading; click again once it is shown")
            return
        if self.candidates and self.candidates[0].phrase is not None:
            self.clear_prompts()
        self.points.append(Point(float(x), float(y), bool(positive)))
        self._request()

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Use the box XYXY (any corner order) as the prompt; points may follow."""
        if self.ref is None:
            return
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            return
        if self.candidates and self.candidates[0].phrase is not None:
            self.clear_prompts()
        self.box = box
        self._request()

    def _request(self) -> None:
        assert self.ref is not None
        prompts = Prompts(tuple(self.points), (self.box,) if self.box else ())
        single_click = len(self.points) == 1 and self.box is None
        shown = self.shown_candidate()
        mask_input = shown.logits if shown is not None and not single_click else None
        self._accept_when_ready = False
        self._pending = self.client.predict(self.ref, prompts, mask_input, single_click,
                                            self.view.shown_size())
        self._show_prompts()
        if self.embedding != "ready":
            self.message.emit("Waiting for the image embedding; your prompt is kept")

    def clear_prompts(self) -> None:
        """Forget the prompts and candidates (Esc); nothing in the project changes."""
        for request in (self._pending, self._answered):  # candidates still upsampling too
            if request is not None:
                self.client.cancel(request)
        self._pending = self._answered = self._wanted = None
        self._accept_when_ready = False
        self.points, self.box, self.candidates, self.candidate_index = [], None, [], 0
        self.refine_target = None
        self._show_prompts()
        self._show_candidate()
        self.detections_changed.emit([])

    def cycle_candidate(self, step: int = 1) -> None:
        """Show the next of the multimask candidates (Tab).

        A candidate the worker is still upsampling is drawn as soon as it arrives.
        """
        if len(self.candidates) > 1:
            at = self.candidate_index if self._wanted is None else self._wanted
            self.show_candidate((at + step) % len(self.candidates))

    def show_candidate(self, index: int) -> None:
        if 0 <= index < len(self.candidates):
            self._wanted = None
            if self.candidates[index].mask is None:
                self._wanted = index  # the shown one stays until this one's mask arrives
                return
            self.candidate_index = index
            self._show_candidate()

    def shown_candidate(self) -> Candidate | None:
        return self.candidates[self.candidate_index] if self.candidates else None

    def detect(self, text: str, box_threshold: float, text_threshold: float) -> None:
        """Find the objects named in ``text``; each becomes a candidate."""
        if self.ref is None:
            self.detect_state.emit("The image is still loading; try again once it is shown."
                                   if self.loading else "No image to search.")
            return
        self.clear_prompts()
        self._pending = self.client.detect(self.ref, text, box_threshold, text_threshold)
        self._detecting = self._pending

    def accept(self, indices: list[int] | None = None) -> list[int]:
        """Turn the shown candidate into a layer (Enter), or the text candidates
        at ``indices`` (all by default) into layers labelled by their phrase.
        Returns the ids of the layers made or changed; none yet when only the
        shown candidate's preview is here: it is accepted when its
        full-resolution mask arrives (a new prompt or Esc calls that off)."""
        if self.image is None or not self.candidates:
            return []
        prompts = {"points": [[p.x, p.y, int(p.positive)] for p in self.points],
                   "box": list(self.box) if self.box else None, "model": self.model_name}
        done: list[int] = []
        if self.candidates[0].phrase is not None:
            chosen = range(len(self.candidates)) if indices is None else indices
            with self.project.batch(f"Accept {len(list(chosen))} text masks"):
                for i in chosen:
                    cand = self.candidates[i]
                    if cand.mask is None or not cand.mask.any():
                        continue  # an empty text candidate is never a layer
                    label = self._label_named(cand.phrase or "object")
                    layer = self.project.add_annotation(
                        self.image.id, masks.encode(cand.mask), label.id, cand.score,
                        {"text": cand.phrase, "model": self.model_name})
                    done.append(layer.id)
        else:
            cand = self.candidates[self.candidate_index]
            if cand.mask is None:  # only its preview is here: the mask follows at once
                self._accept_when_ready = True
                return []
            if not cand.mask.any():
                self.message.emit("Not accepted: the mask is empty (a negative point removed "
                                  "every pixel); add a positive point or press Esc")
                return []
            if self.refine_target is not None:
                self.project.update_annotation(self.refine_target, rle=masks.encode(cand.mask),
                                               score=cand.score, prompts=prompts,
                                               description="Refine mask")
                done = [self.refine_target]
            else:
                layer = self.project.add_annotation(self.image.id, masks.encode(cand.mask),
                                                    self.default_label, cand.score, prompts)
                done = [layer.id]
        self.clear_prompts()
        self.select(done)
        return done

    def _label_named(self, name: str) -> Label:
        return self.project.label_by_name(name) or self.project.add_label(name)

    def refine_selected(self) -> bool:
        """Edit the selected layer with prompts: its stored points and box come back."""
        if len(self.selected) != 1 or self.ref is None:
            return False
        layer = self.project.annotation(self.selected[0])
        self.clear_prompts()
        self.refine_target = layer.id
        self.points = [Point(float(x), float(y), bool(p))
                       for x, y, p in layer.prompts.get("points") or []]
        box = layer.prompts.get("box")
        self.box = tuple(box) if box else None  # type: ignore[assignment]
        self.candidates = [Candidate(masks.decode(layer.rle), layer.score or 1.0)]
        self._show_prompts()
        self._show_candidate()
        return True

    # ----------------------------------------------------------------- results
    def _is_current(self, image_key: str, request_id: int) -> bool:
        return self.ref is not None and image_key == self.ref.key and request_id == self._pending

    @guarded("show masks")
    def _on_predicted(self, result: PredictResult) -> None:
        """The first answer: the best candidate's mask, the others' once upsampled."""
        if not self._is_current(result.image_key, result.request_id):
            return
        scores, logits = result.scores[0], result.logits
        order = np.argsort(-scores, kind="stable")
        self.candidates = [Candidate(result.masks.get((0, int(i))), float(scores[i]),
                                     None if logits is None else logits[0, i:i + 1], None, int(i),
                                     result.previews.get((0, int(i))))
                           for i in order]
        self.candidate_index, self._wanted, self._accept_when_ready = 0, None, False
        self._pending, self._answered = None, result.request_id
        self._drop_duplicates()
        self._show_candidate()

    @guarded("show masks")
    def _on_candidates(self, update: CandidateMasks) -> None:
        """Masks of candidates upsampled after the first answer: ready for Tab."""
        if self.ref is None or update.image_key != self.ref.key:
            return
        if update.request_id != self._answered:
            return  # an older request's, or the prompts were cleared
        shown = self.shown_candidate()
        previewed = shown is not None and shown.mask is None
        self.candidates = [
            replace(c, mask=update.masks[0, c.index], preview=None)
            if c.mask is None and (0, c.index) in update.masks else c
            for c in self.candidates]
        self._drop_duplicates()
        wanted = self._wanted
        if wanted is not None and self.candidates[wanted].mask is not None:
            self.show_candidate(wanted)
        elif previewed and self.candidates[self.candidate_index].mask is not None:
            self._show_candidate()  # the full-resolution mask replaces the preview
        else:
            self.candidates_changed.emit()
        if self._accept_when_ready and self.candidates[self.candidate_index].mask is not None:
            self.accept()

    def _drop_duplicates(self) -> None:
        """Tab cycles distinct masks only (see :func:`distinct`)."""
        self.candidates, self.candidate_index, self._wanted = distinct(
            self.candidates, self.candidate_index, self._wanted)

    @guarded("show text results")
    def _on_detected(self, result: DetectResult) -> None:
        if not self._is_current(result.image_key, result.request_id):
            return
        self._pending = None
        found = result.detections
        self.candidates = []
        empty = 0
        if result.prediction is not None:
            best = result.prediction.best()
            for i, phrase in enumerate(found.phrases):
                mask = result.prediction.masks[i, best[i]]
                if not mask.any():
                    empty += 1  # a box the segmenter found nothing in: never a layer
                    continue
                self.candidates.append(Candidate(mask, float(found.scores[i]), None,
                                                 phrase or "object"))
        self.candidate_index = 0
        self._show_candidate()
        self.detections_changed.emit([(c.phrase, c.score) for c in self.candidates])
        self._detecting = None
        left_out = f" ({empty} boxes with an empty mask left out)" if empty else ""
        if not self.candidates:
            self.message.emit(f"Nothing found for {result.text!r}{left_out}")
            self.detect_state.emit(f"Nothing found for {result.text!r}{left_out}.")
        else:
            count = len(self.candidates)
            self.detect_state.emit(f"Found {count} object{'s' * (count != 1)} for "
                                   f"{result.text!r}{left_out}.")

    @guarded("request failed")
    def _on_failed(self, failure: Any) -> None:
        """A request failed (the window shows why): stop waiting for it."""
        if failure.request_id == self._pending:
            self._pending = None
        if failure.request_id == self._detecting:
            self._detecting = None
            self.detect_state.emit(f"Not found: {failure.message}")

    @guarded("embedding state")
    def _on_embedding(self, state: EmbeddingState) -> None:
        if self.ref is not None and state.image_key == self.ref.key:
            self.embedding = state.status
            self.embedding_changed.emit(state.status)

    @guarded("model loaded")
    def _on_model_loaded(self, loaded: Any) -> None:
        if loaded.slot == "segmenter":
            self.model_name = loaded.name
            if self.ref is not None:  # the new model encodes the open image again
                self.embedding = "queued"
                self.embedding_changed.emit("queued")

    # ------------------------------------------------------------- canvas feed
    def _show_prompts(self) -> None:
        self.view.set_prompt_markers([(p.x, p.y, p.positive) for p in self.points], self.box)

    def _show_candidate(self) -> None:
        shown = self.shown_candidate()
        if shown is not None and shown.mask is None and shown.preview is not None:
            self.view.set_candidate(shown.preview, CANDIDATE_COLOR, preview=True)
        else:
            self.view.set_candidate(None if shown is None else shown.mask, CANDIDATE_COLOR)
        self.candidates_changed.emit()

    @guarded("project changed")
    def _on_project_event(self, event: ProjectEvent) -> None:
        if self._closed:
            return
        if "labels" in event.kinds:
            ids = {lab.id for lab in self.project.labels()}
            if self.default_label not in ids:
                self.default_label = min(ids) if ids else None
            self.labels_changed.emit()
        if "images" in event.kinds or "annotations" in event.kinds:
            self.images_changed.emit()
        if self.image is not None and (
                "labels" in event.kinds or self.image.id in event.image_ids):
            self.image = self.project.image(self.image.id)
            self._refresh_layers()

    def layers(self) -> list[MaskLayer]:
        return self.project.annotations(self.image.id) if self.image is not None else []
