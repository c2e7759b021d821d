"""A click on an encoded image never waits for a whole background encode.

The engine is a real random-weight tiny SAM behind the real client and worker
thread; the wrapper holds the encode of one image open (it keeps pausing
between chunks, as a long encoder does) until the test sets ``gate``. A click
answered while the gate is closed was answered before that encode finished,
with no timing involved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication
from pytestqt.qtbot import QtBot

from samdesk.images import load_rgb
from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Embedding, Point, Prompts
from samdesk.inference.engines.steps import EmbedSteps, run_to_end
from samdesk.inference.worker.cache import EmbeddingCache, model_key
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.request_queue import RequestQueue
from samdesk.inference.worker.requests import (
    DetectSegment,
    Encode,
    FocusImage,
    ImageRef,
    Predict,
    Prefetch,
    SetModel,
)
from tests.inference.worker.test_worker import scene
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

WAIT_MS = 30_000
SIZES = [(240, 320), (200, 300), (180, 260)]  # A, B (held open), C


class GatedEngine:
    """A real engine whose encode of images of ``held_shape`` lasts until ``gate`` is set.

    ``encoded`` lists the ``(H, W)`` of each finished encode, in order.
    """

    def __init__(self, inner: Any, held_shape: tuple[int, int]) -> None:
        self.inner, self.held_shape = inner, held_shape
        self.encoding = threading.Event()  # the held encode has started
        self.gate = threading.Event()
        self.encoded: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, rgb: np.ndarray) -> Embedding:
        return run_to_end(self.embed_steps(rgb))

    def embed_steps(self, rgb: np.ndarray) -> EmbedSteps:
        if rgb.shape[:2] == self.held_shape:
            self.encoding.set()
            while not self.gate.wait(0.01):
                yield  # the encoder is still busy: a chunk boundary
        embedding = yield from self.inner.embed_steps(rgb)
        self.encoded.append(rgb.shape[:2])
        return embedding


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny_sam.pth", TINY_SAM)


class Session:
    """A started client on the gated tiny SAM, and three images on disk."""

    def __init__(self, qtbot: QtBot, tmp_path: Path, checkpoint: Path, name: str) -> None:
        self.qtbot = qtbot
        self.refs = [scene(tmp_path / f"img{i}.png", h, w, i)[0] for i, (h, w) in enumerate(SIZES)]
        self.engine: GatedEngine | None = None
        self.cache = EmbeddingCache(tmp_path / "emb")
        self.key = model_key(name, checkpoint)
        self.client = InferenceClient(self.cache, loader=self.load)
        self.predicted: list[Any] = []
        self.failed: list[Any] = []
        self.ready: list[Any] = []
        self.client.predicted.connect(self.predicted.append)
        self.client.failed.connect(self.failed.append)
        self.client.embedding_state.connect(
            lambda s: self.ready.append(s) if s.status == "ready" else None)
        self.client.start()
        with qtbot.waitSignal(self.client.model_loaded, timeout=WAIT_MS):
            self.client.set_model(name, checkpoint, "cpu")

    def load(self, name: str, checkpoint: Path | None, device: str) -> GatedEngine:
        self.engine = GatedEngine(loading.load_model(name, checkpoint, device), SIZES[1])
        return self.engine

    def until(self, done: Any) -> None:
        self.qtbot.waitUntil(done, timeout=WAIT_MS)

    def focus_and_wait(self, ref: ImageRef) -> None:
        self.client.focus(ref)
        self.until(lambda: any(s.image_key == ref.key for s in self.ready))

    def click(self, ref: ImageRef, prompts: Prompts) -> Any:
        request = self.client.predict(ref, prompts)
        self.until(lambda: any(r.request_id == request for r in self.predicted + self.failed))
        return next(r for r in self.predicted + self.failed if r.request_id == request)

    def until_idle(self) -> None:
        self.until(self.client.is_idle)
        QCoreApplication.processEvents()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.gate.set()
        self.client.stop()


@pytest.fixture
def session(qtbot: QtBot, tmp_path: Path, checkpoint: Path) -> Iterator[Session]:
    with registered_test_model("sam", TINY_SAM) as spec:
        s = Session(qtbot, tmp_path, checkpoint, spec.name)
        yield s
        s.close()


def centre_click(ref: ImageRef) -> Prompts:
    height, width = load_rgb(ref.path).shape[:2]
    return Prompts(points=(Point(width / 2, height / 2),))


def test_click_on_the_next_image_is_answered_while_a_prefetch_encode_runs(
    session: Session,
) -> None:
    a, b, c = session.refs
    engine = session.engine
    assert engine is not None
    session.focus_and_wait(a)
    session.client.prefetch([c, b])  # as the window does: the next images
    session.until(engine.encoding.is_set)  # C encoded, B's encode running and held open

    # the person arrives at C (encoded by the prefetch) and clicks at once
    session.client.focus(c)
    session.client.prefetch([b])
    prompts = centre_click(c)
    result = session.click(c, prompts)

    assert engine.encoded == [SIZES[0], SIZES[2]]  # B's encode has not finished
    assert not engine.gate.is_set()
    assert [s.image_key for s in session.ready][-1] == c.key  # C reported ready meanwhile
    embedding_c = session.cache.get(session.key, c.key)
    assert embedding_c is not None
    expected = engine.inner.predict(embedding_c, prompts)
    assert result.masks  # the shown candidate, as the window draws it
    for (obj, candidate), mask in result.masks.items():
        assert np.array_equal(mask, expected.masks[obj, candidate])
    assert np.array_equal(result.scores, expected.scores)

    engine.gate.set()
    session.until(lambda: SIZES[1] in engine.encoded)
    session.until_idle()
    assert engine.encoded == [SIZES[0], SIZES[2], SIZES[1]]  # the encode finished, once
    one_piece = engine.inner.embed(load_rgb(b.path)).tensors["image_embed"]
    session.focus_and_wait(b)  # a cache hit: no new encode, the same embedding
    assert session.ready[-1].source in ("memory", "disk")
    assert len(engine.encoded) == 3
    cached = session.cache.get(session.key, b.key)
    assert cached is not None and np.array_equal(cached.tensors["image_embed"], one_piece)

    session.focus_and_wait(c)  # the worker's last embedding is B's now: C comes from the cache
    again = session.click(c, prompts)
    for key, mask in again.masks.items():
        assert np.array_equal(mask, result.masks[key])


def test_a_failing_click_during_an_encode_fails_alone(session: Session) -> None:
    a, b, _ = session.refs
    engine = session.engine
    assert engine is not None
    session.focus_and_wait(a)
    session.client.prefetch([b])
    session.until(engine.encoding.is_set)

    failure = session.click(a, Prompts())  # no prompt: the engine refuses it
    assert "no prompt" in failure.message
    result = session.click(a, centre_click(a))  # the worker keeps answering meanwhile
    assert result.masks and not engine.gate.is_set()

    engine.gate.set()
    session.until(lambda: session.cache.contains(session.key, b.key))
    session.until_idle()
    assert engine.encoded == [SIZES[0], SIZES[1]]
    assert len(session.failed) == 1


def test_stopping_during_an_encode_ends_it_and_caches_nothing(session: Session) -> None:
    a, b, _ = session.refs
    engine = session.engine
    assert engine is not None
    session.focus_and_wait(a)
    session.client.prefetch([b])
    session.until(engine.encoding.is_set)
    session.client.stop()  # returns although the gate was never opened
    assert not session.client.running
    assert engine.encoded == [SIZES[0]]
    assert not session.cache.contains(session.key, b.key)


# -- the queue alone (no thread) ---------------------------------------------


def _ref(key: str) -> ImageRef:
    return ImageRef(Path(f"/images/{key}.png"), key)


def test_queue_hands_out_only_ready_decodes_and_a_ready_focus_between_chunks() -> None:
    queue = RequestQueue()
    queue.put(Prefetch(1, (_ref("p"),)))
    queue.put(FocusImage(2, _ref("f")))
    queue.put(Predict(3, _ref("f"), Prompts(points=(Point(1, 1),))))
    queue.put(DetectSegment(4, _ref("f"), "cat"))
    ready: set[str] = set()
    assert queue.take_ready(ready.__contains__) is None  # nothing has an embedding yet
    ready.add("f")
    queue.put(SetModel(5, "grabcut"))
    assert queue.take_ready(ready.__contains__) is None  # a model change goes first
    assert isinstance(queue.take(ready.__contains__), SetModel)
    taken = []
    while (job := queue.take_ready(ready.__contains__)) is not None:
        taken.append(job)
    assert [type(j).__name__ for j in taken] == ["Predict", "DetectSegment", "Encode"]
    assert isinstance(taken[2], Encode) and taken[2].reason == "focus"
    job = queue.take(ready.__contains__)  # the prefetch is left for take
    assert isinstance(job, Encode) and job.reason == "prefetch"
    queue.put(Predict(6, _ref("f"), Prompts(points=(Point(1, 1),))))
    queue.close()
    assert queue.take_ready(ready.__contains__) is None


def test_queue_holds_prefetch_until_the_person_settles() -> None:
    queue = RequestQueue()
    queue.prefetch_settle_s = 3600.0
    queue.put(Prefetch(1, (_ref("p"),)))
    assert queue.prefetch_wait() == 0.0  # nobody has clicked: it may run at once
    queue.put(FocusImage(2, _ref("f")))
    assert queue.take(lambda key: True) is not None  # the focus encode
    assert queue.take(lambda key: True) is None  # the prefetch is held
    wait = queue.prefetch_wait()
    assert wait is not None and 0 < wait <= 3600.0
    queue.prefetch_settle_s = 0.0
    job = queue.take(lambda key: True)
    assert isinstance(job, Encode) and job.reason == "prefetch"
    assert queue.prefetch_wait() is None  # nothing left to prefetch


def test_a_previewed_click_gets_its_full_mask_while_the_encode_is_held(
    session: Session, tmp_path: Path
) -> None:
    """The window draws a preview first; the mask that replaces it (and that Enter
    saves) must not wait for the rest of a background encode either."""
    from samdesk.inference.worker.requests import CandidateMasks

    big = scene(tmp_path / "big.png", 600, 800, 7)[0]  # previewed at a quarter of its pixels
    a, b, _ = session.refs
    engine = session.engine
    assert engine is not None
    session.focus_and_wait(big)
    full: list[CandidateMasks] = []
    session.client.candidates.connect(full.append)
    session.client.prefetch([b])
    session.until(engine.encoding.is_set)

    prompts = Prompts(points=(Point(400, 300),))
    request = session.client.predict(big, prompts, preview=(300, 400))
    session.until(lambda: any(r.request_id == request for r in session.predicted))
    result = next(r for r in session.predicted if r.request_id == request)
    [(key, preview)] = result.previews.items()
    assert preview.shape == (300, 400) and not result.masks
    session.until(lambda: any(key in update.masks for update in full))
    assert not engine.gate.is_set() and SIZES[1] not in engine.encoded  # B still held open
    embedding = session.cache.get(session.key, big.key)
    assert embedding is not None
    expected = engine.inner.predict(embedding, prompts).masks[key]
    mask = next(update.masks[key] for update in full if key in update.masks)
    assert np.array_equal(mask, expected)  # the reference's mask, every full-size pixel
