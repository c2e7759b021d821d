"""The session controller, tested without the window: a recording view and a fake client.

The fake client records every request and lets the test answer it with
results shaped like the worker's, so what the session sends (prompts,
``mask_input`` logits, multimask) and what it does with answers (stale ones
dropped, text candidates labelled by phrase) is checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal

from samdesk import masks
from samdesk.inference.engines.base import Detections, Point, Prediction, Prompts
from samdesk.inference.worker.requests import (
    CandidateMasks,
    DetectResult,
    EmbeddingState,
    PredictResult,
)
from samdesk.project import Project
from samdesk.views.session import Session

H, W = 60, 80
WAIT_MS = 20_000


class FakeClient(QObject):
    predicted = Signal(object)
    candidates = Signal(object)
    detected = Signal(object)
    box_masks = Signal(object)
    embedding_state = Signal(object)
    model_loaded = Signal(object)
    failed = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple] = []
        self.cancelled: list[int] = []
        self._id = 0

    def _next(self, *request: object) -> int:
        self._id += 1
        self.requests.append((self._id, *request))
        return self._id

    def focus(self, image):
        return self._next("focus", image)

    def prefetch(self, images):
        return self._next("prefetch", list(images))

    def predict(self, image, prompts, mask_input=None, multimask=True, preview=None):
        return self._next("predict", image, prompts, mask_input, multimask, preview)

    def detect(self, image, text, box_threshold=0.3, text_threshold=0.25, multimask=False):
        return self._next("detect", image, text, box_threshold, text_threshold)

    def cancel(self, request_id: int) -> bool:
        self.cancelled.append(request_id)
        return True

    def last(self, kind: str) -> tuple:
        return next(r for r in reversed(self.requests) if r[1] == kind)


class RecordingView:
    def __init__(self) -> None:
        self.image = None
        self.layers: list = []
        self.candidate = None
        self.candidate_is_preview = False
        self.markers = ([], None)
        self.shown = None  # (h, w) the image is drawn at; None: not known
        self.message = ""

    def set_image(self, rgb):
        self.image = rgb

    def set_message(self, text):
        self.message = text or ""

    def set_image_size(self, width, height):
        pass

    def set_layers(self, layers):
        self.layers = layers

    def set_candidate(self, mask, color="#00e5ff", preview=False):
        self.candidate, self.candidate_is_preview = mask, preview

    def shown_size(self):
        return self.shown

    def set_prompt_markers(self, points, box):
        self.markers = (points, box)


def rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def prediction(*candidates: tuple[np.ndarray, float]) -> Prediction:
    stack = np.stack([m for m, _ in candidates])[None]
    scores = np.array([[s for _, s in candidates]], np.float32)
    logits = np.stack([np.full((256, 256), i, np.float32) for i in range(len(candidates))])[None]
    return Prediction(stack, scores, logits)


@pytest.fixture
def setup(tmp_path: Path, qtbot):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((H, W, 3), 40 * i, np.uint8))
    project = Project.open(tmp_path)
    client, view = FakeClient(), RecordingView()
    session = Session(project, client, view)
    open_and_wait(qtbot, session, project.images()[0].id)
    yield project, client, view, session
    session.close()
    project.close()


def open_and_wait(qtbot, session: Session, image_id: int) -> None:
    """Open the image and wait until the pool thread has decoded it."""
    with qtbot.waitSignal(session.image_loaded, timeout=WAIT_MS):
        session.open_image(image_id)
    requests = getattr(session.client, "requests", None)
    if requests is not None and session.ref is not None:  # the prefetch follows the decode
        qtbot.waitUntil(lambda: any(r[1] == "prefetch" for r in requests), timeout=WAIT_MS)


def answer(client: FakeClient, session: Session, pred: Prediction) -> None:
    request_id, _, image, prompts, *_ = client.last("predict")
    client.predicted.emit(PredictResult.of(request_id, image.key, prompts, pred))


def test_opening_an_image_focuses_it_and_prefetches_the_next(setup) -> None:
    project, client, view, session = setup
    kinds = [r[1] for r in client.requests]
    assert kinds == ["focus", "prefetch"]
    assert [ref.path.name for ref in client.last("prefetch")[2]] == ["im1.png", "im2.png"]
    assert view.image.shape == (H, W, 3)
    client.embedding_state.emit(EmbeddingState(session.ref.key, "ready"))
    assert session.embedding == "ready"


def test_second_click_refines_with_the_shown_candidates_logits(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    assert client.last("predict")[5] is True  # one click: several candidates
    answer(client, session, prediction((rect(0, 0, 20, 20), 0.5), (rect(0, 0, 40, 40), 0.9)))
    assert session.candidates[0].score == pytest.approx(0.9)  # best first
    session.cycle_candidate()
    assert np.array_equal(view.candidate, rect(0, 0, 20, 20))
    session.add_point(30, 30, positive=False)
    _, _, _, prompts, mask_input, multimask, _ = client.last("predict")
    assert [(p.x, p.y, p.positive) for p in prompts.points] == [(10, 10, True), (30, 30, False)]
    assert mask_input.shape == (1, 256, 256) and mask_input[0, 0, 0] == 0  # the shown one
    assert multimask is False
    assert view.markers[0] == [(10.0, 10.0, True), (30.0, 30.0, False)]


def test_stale_results_are_dropped(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    old_id, _, image, prompts, *_ = client.last("predict")
    session.add_point(12, 12)
    client.predicted.emit(PredictResult.of(old_id, image.key, prompts,
                                           prediction((rect(0, 0, 5, 5), 1.0))))
    assert session.candidates == []
    answer(client, session, prediction((rect(0, 0, 9, 9), 1.0)))
    assert len(session.candidates) == 1


def test_enter_adds_a_layer_with_the_default_label_and_refine_replaces_it(setup) -> None:
    project, client, view, session = setup
    label = project.add_label("cat")
    session.set_box(5, 5, 30, 30)
    answer(client, session, prediction((rect(5, 5, 30, 30), 0.8)))
    [ann_id] = session.accept()
    layer = project.annotation(ann_id)
    assert layer.label_id == label.id and layer.prompts["box"] == [5, 5, 30, 30]
    assert np.array_equal(masks.decode(layer.rle), rect(5, 5, 30, 30))
    assert session.selected == [ann_id] and view.layers[0].selected
    assert session.refine_selected()
    assert session.box == (5, 5, 30, 30)
    session.add_point(40, 40)
    answer(client, session, prediction((rect(5, 5, 45, 45), 0.9)))
    assert session.accept() == [ann_id]
    assert len(project.annotations(session.image.id)) == 1
    assert np.array_equal(masks.decode(project.annotation(ann_id).rle), rect(5, 5, 45, 45))


def test_text_candidates_become_layers_labelled_by_phrase(setup) -> None:
    project, client, view, session = setup
    session.detect("dog . cat", 0.3, 0.25)
    request_id, _, image, text, *_ = client.last("detect")
    found = Detections(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
                       ["dog", "cat"], np.array([0.7, 0.6], np.float32))
    pred = Prediction(np.stack([rect(0, 0, 10, 10)[None], rect(20, 20, 40, 40)[None]]),
                      np.array([[0.9], [0.8]], np.float32))
    shown = []
    session.detections_changed.connect(shown.append)
    client.detected.emit(DetectResult(request_id, image.key, text, found, pred))
    assert shown[-1] == [("dog", pytest.approx(0.7)), ("cat", pytest.approx(0.6))]
    made = session.accept([1])
    assert [project.label(project.annotation(i).label_id).name for i in made] == ["cat"]
    assert project.label_by_name("dog") is None
    project.undo()
    assert project.annotations(session.image.id) == []


def test_hotkeys_relabel_the_selection_or_set_the_default(setup) -> None:
    project, client, view, session = setup
    a, b = project.add_label("a"), project.add_label("b")
    layer = project.add_annotation(session.image.id, masks.encode(rect(0, 0, 5, 5)), a.id)
    session.apply_hotkey(b.hotkey)
    assert session.default_label == b.id
    assert project.annotation(layer.id).label_id == a.id
    session.select([layer.id])
    session.apply_hotkey(a.hotkey)
    session.apply_hotkey(b.hotkey)
    assert project.annotation(layer.id).label_id == b.id


def test_brush_and_eraser_edit_the_selected_mask(setup) -> None:
    project, client, view, session = setup
    session.brush(rect(0, 0, 10, 10), erase=False)  # nothing selected: a new layer
    [layer] = project.annotations(session.image.id)
    assert session.selected == [layer.id]
    session.brush(rect(10, 0, 20, 10), erase=False)
    session.brush(rect(0, 0, 5, 10), erase=True)
    assert np.array_equal(masks.decode(project.annotation(layer.id).rle), rect(5, 0, 20, 10))
    assert session.layer_at(7, 3).id == layer.id and session.layer_at(2, 3) is None
    session.set_locked(layer.id, True)
    messages = []
    session.message.connect(messages.append)
    session.brush(rect(0, 0, 40, 40), erase=False)
    assert "locked" in messages[-1]
    session.undo()  # the lock
    session.undo()  # the erase
    assert np.array_equal(masks.decode(project.annotation(layer.id).rle), rect(0, 0, 20, 10))


def test_layer_order_merge_and_delete_go_through_the_project(setup) -> None:
    project, client, view, session = setup
    ids = [project.add_annotation(session.image.id, masks.encode(rect(i * 10, 0, i * 10 + 5, 5)))
           .id for i in range(3)]
    session.move_layer(ids[0], 2)
    assert [layer.id for layer in view.layers] == [ids[1], ids[2], ids[0]]
    session.merge_layers([ids[1], ids[2]])
    assert len(project.annotations(session.image.id)) == 2
    session.delete_layers()
    assert len(project.annotations(session.image.id)) == 1


def test_step_image_follows_the_given_order(setup) -> None:
    project, client, view, session = setup
    ids = [r.id for r in project.images()]
    assert session.step_image(1) == ids[1]
    assert session.step_image(1, order=[ids[0], ids[2]]) == ids[0]
    assert session.step_image(-1) is None
    session.add_point(3, 3)
    session.step_image(1)
    assert session.points == [] and client.cancelled


# -- candidates that arrive after the first answer (SAM, SAM 2) ----------------


def first_answer(client: FakeClient, pred: Prediction, shown: int) -> int:
    """Answer the last predict with candidate ``shown``'s mask only, as the worker does."""
    request_id, _, image, prompts, *_ = client.last("predict")
    client.predicted.emit(PredictResult(request_id, image.key, prompts, pred.scores,
                                        pred.logits, {(0, shown): pred.masks[0, shown]}))
    return request_id


def test_tab_before_the_other_candidates_arrive_shows_them_when_they_do(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    pred = prediction((rect(0, 0, 20, 20), 0.5), (rect(0, 0, 40, 40), 0.9),
                      (rect(0, 0, 30, 30), 0.7))
    request_id = first_answer(client, pred, 1)
    assert np.array_equal(view.candidate, rect(0, 0, 40, 40))
    session.cycle_candidate()  # the 0.7 one is not here yet: the shown mask stays
    assert session.candidate_index == 0 and np.array_equal(view.candidate, rect(0, 0, 40, 40))
    key = session.ref.key
    client.candidates.emit(CandidateMasks(request_id, key, {(0, 2): rect(0, 0, 30, 30)}))
    assert session.candidate_index == 1 and np.array_equal(view.candidate, rect(0, 0, 30, 30))
    session.cycle_candidate()
    assert session.candidate_index == 1  # the third is still on its way
    client.candidates.emit(CandidateMasks(request_id, key, {(0, 0): rect(0, 0, 20, 20)}))
    assert session.candidate_index == 2 and np.array_equal(view.candidate, rect(0, 0, 20, 20))
    session.add_point(15, 15)  # refines with the shown candidate's logits
    assert client.last("predict")[4][0, 0, 0] == 0
    [ann_id] = session.accept()
    assert np.array_equal(masks.decode(project.annotation(ann_id).rle), rect(0, 0, 20, 20))
    assert request_id in client.cancelled  # its leftover upsampling is not wanted


def test_late_candidates_of_an_older_request_are_dropped(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    pred = prediction((rect(0, 0, 20, 20), 0.9), (rect(0, 0, 40, 40), 0.5))
    old = first_answer(client, pred, 0)
    session.add_point(50, 50)
    new = first_answer(client, prediction((rect(40, 40, 60, 60), 0.9),
                                          (rect(30, 30, 60, 60), 0.4)), 0)
    client.candidates.emit(CandidateMasks(old, session.ref.key, {(0, 1): rect(0, 0, 40, 40)}))
    session.cycle_candidate()
    assert session.candidate_index == 0 and session.candidates[1].mask is None
    client.candidates.emit(CandidateMasks(new, session.ref.key, {(0, 1): rect(30, 30, 60, 60)}))
    assert np.array_equal(view.candidate, rect(30, 30, 60, 60))


def test_sam_click_and_tab_show_exactly_what_predict_returns(tmp_path: Path, qtbot) -> None:
    """The real client and worker with a random-weight tiny SAM: the first mask the
    person sees is ``predict``'s best candidate, and Tab shows its others, pixel for pixel."""
    from samdesk.inference.engines.loading import load_model
    from samdesk.inference.worker.cache import EmbeddingCache, model_key
    from samdesk.inference.worker.client import InferenceClient
    from tests.model_factories import (
        TINY_SAM,
        make_sam_checkpoint,
        registered_test_model,
        textured_image,
    )

    cv2.imwrite(str(tmp_path / "photo.png"), textured_image(180, 260, seed=3)[..., ::-1])
    checkpoint = make_sam_checkpoint(tmp_path / "models" / "sam.pth", TINY_SAM)
    project = Project.open(tmp_path)
    client, view = InferenceClient(EmbeddingCache(tmp_path / "emb")), RecordingView()
    with registered_test_model("sam", TINY_SAM) as spec:
        client.start()
        session = Session(project, client, view)
        try:
            with qtbot.waitSignal(client.model_loaded, timeout=60_000):
                client.set_model(spec.name, checkpoint)
            open_and_wait(qtbot, session, project.images()[0].id)
            with qtbot.waitSignal(client.predicted, timeout=60_000):
                session.add_point(90, 70)
            first = view.candidate.copy()
            qtbot.waitUntil(lambda: all(c.mask is not None for c in session.candidates),
                            timeout=WAIT_MS)
            embedding = client.cache.get(model_key(spec.name, checkpoint), session.ref.key)
            expected = load_model(spec.name, checkpoint, "cpu").predict(
                embedding, Prompts(points=(Point(90, 70),)), None, True)
            order = np.argsort(-expected.scores[0])
            assert np.array_equal(first, expected.masks[0, order[0]])
            for shown in order[1:]:
                session.cycle_candidate()
                assert np.array_equal(view.candidate, expected.masks[0, shown])
            assert np.array_equal(session.shown_candidate().logits,
                                  expected.logits[0, order[2]:order[2] + 1])
        finally:
            session.close()
            client.stop()
            project.close()


# -- a preview at screen size first, the full-resolution mask right after -----


def preview_answer(client: FakeClient, pred: Prediction, shown: int) -> int:
    """Answer the last predict with candidate ``shown`` previewed at half size only."""
    request_id, _, image, prompts, *_ = client.last("predict")
    small = pred.masks[0, shown][::2, ::2]
    client.predicted.emit(PredictResult(request_id, image.key, prompts, pred.scores,
                                        pred.logits, {}, {(0, shown): small}))
    return request_id


def test_the_window_asks_for_a_preview_at_the_size_it_draws_the_image(setup) -> None:
    project, client, view, session = setup
    view.shown = (30, 40)
    session.add_point(10, 10)
    assert client.last("predict")[6] == (30, 40)


def test_a_preview_is_drawn_until_the_full_mask_replaces_it(setup) -> None:
    project, client, view, session = setup
    view.shown = (30, 40)
    session.add_point(10, 10)
    pred = prediction((rect(0, 0, 20, 20), 0.5), (rect(0, 0, 40, 40), 0.9))
    request_id = preview_answer(client, pred, 1)
    assert view.candidate_is_preview and view.candidate.shape == (30, 40)
    assert np.array_equal(view.candidate, rect(0, 0, 40, 40)[::2, ::2])
    full = {(0, 1): rect(0, 0, 40, 40)}
    client.candidates.emit(CandidateMasks(request_id, session.ref.key, full))
    assert not view.candidate_is_preview
    assert np.array_equal(view.candidate, rect(0, 0, 40, 40))


def test_enter_on_a_preview_saves_the_full_mask_once_it_arrives(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    pred = prediction((rect(0, 0, 20, 20), 0.5), (rect(0, 0, 40, 40), 0.9))
    request_id = preview_answer(client, pred, 1)
    assert session.accept() == []  # nothing saved from a preview
    image_id = session.image.id
    assert project.annotations(image_id) == []
    full = {(0, 1): rect(0, 0, 40, 40)}
    client.candidates.emit(CandidateMasks(request_id, session.ref.key, full))
    [layer] = project.annotations(image_id)
    assert np.array_equal(masks.decode(layer.rle), rect(0, 0, 40, 40))  # every full-size pixel
    assert session.candidates == [] and session.selected == [layer.id]


def test_a_new_click_calls_off_an_accept_waiting_for_its_mask(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    pred = prediction((rect(0, 0, 20, 20), 0.5), (rect(0, 0, 40, 40), 0.9))
    request_id = preview_answer(client, pred, 1)
    session.accept()
    session.add_point(30, 30, positive=False)  # the person changed their mind
    full = {(0, 1): rect(0, 0, 40, 40)}
    client.candidates.emit(CandidateMasks(request_id, session.ref.key, full))
    assert project.annotations(session.image.id) == []


# -- empty and repeated candidates (issue 9.4) ---------------------------------


def test_an_empty_candidate_is_never_accepted_and_the_status_says_why(setup) -> None:
    project, client, view, session = setup
    lines: list[str] = []
    session.message.connect(lines.append)
    session.add_point(10, 10)
    session.add_point(12, 12, positive=False)  # the negative point removed every pixel
    answer(client, session, prediction((np.zeros((H, W), bool), 0.0)))
    assert session.accept() == []
    assert project.annotations(session.image.id) == []
    assert "empty" in lines[-1]
    assert session.candidates  # the prompts stay, to be fixed


def test_tab_cycles_only_distinct_candidates(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    same = rect(0, 0, 20, 20)
    answer(client, session, prediction((same, 0.9), (same.copy(), 0.8), (rect(0, 0, 30, 30), 0.7)))
    assert len(session.candidates) == 2
    shown = []
    for _ in range(4):
        session.cycle_candidate()
        shown.append(view.candidate.sum())
    assert shown == [900, 400, 900, 400]


def test_a_late_candidate_equal_to_the_shown_one_is_dropped(setup) -> None:
    project, client, view, session = setup
    session.add_point(10, 10)
    pred = prediction((rect(0, 0, 20, 20), 0.9), (rect(0, 0, 20, 20), 0.5),
                      (rect(0, 0, 30, 30), 0.7))
    request_id = first_answer(client, pred, 0)
    session.cycle_candidate()  # Tab to the 0.7 one, still upsampling
    client.candidates.emit(CandidateMasks(request_id, session.ref.key,
                                          {(0, 1): rect(0, 0, 20, 20),
                                           (0, 2): rect(0, 0, 30, 30)}))
    assert len(session.candidates) == 2
    assert session.candidate_index == 1 and np.array_equal(view.candidate, rect(0, 0, 30, 30))


def test_a_store_locked_by_another_program_is_one_status_line_and_undo_still_works(
        setup) -> None:
    import sqlite3

    project, client, view, session = setup
    lines: list[str] = []
    session.message.connect(lines.append)
    kept = project.add_annotation(session.image.id, masks.encode(rect(0, 0, 10, 10)))
    other = sqlite3.connect(project.db_path, isolation_level=None)  # another program
    other.execute("BEGIN IMMEDIATE")
    try:
        session.delete_layers([kept.id])
        session.undo()
    finally:
        other.execute("ROLLBACK")
        other.close()
    locked = f"{project.db_path} is locked by another program"
    assert lines == [f"{locked}; the edit was not saved", f"{locked}; the undo was not saved"]
    assert [a.id for a in project.annotations(session.image.id)] == [kept.id]
    session.undo()
    assert lines[-1] == "Undid: Add mask"
    assert project.annotations(session.image.id) == []
