"""The inference worker thread and its client: current results only, errors as messages.

Engines here are real (GrabCut, a random-weight tiny SAM); the wrapper below
only counts their calls and can hold a call until the test lets it go, which
makes "the worker is busy" certain without timing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QTimer
from pytestqt.qtbot import QtBot

from samdesk.inference.engines.base import Embedding, Point, Prediction, Prompts
from samdesk.inference.engines.grabcut import GrabCutEngine
from samdesk.inference.engines.loading import load_model
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.request_queue import RequestQueue
from samdesk.inference.worker.requests import (
    EmbeddingState,
    Encode,
    FocusImage,
    ImageRef,
    Predict,
    Prefetch,
    SetModel,
)

WAIT_MS = 20_000


class CountingEngine:
    """A real engine whose calls are counted; ``hold`` makes calls wait for ``release``."""

    def __init__(self, inner: Any, hold: bool = False) -> None:
        self.inner, self.model_id = inner, inner.model_id
        self.embedded: list[tuple[int, int]] = []  # (H, W) of each encoded image
        self.prompts: list[Prompts] = []  # of each prediction run
        self.busy = threading.Event()
        self.gate = threading.Event()
        if not hold:
            self.gate.set()

    def release(self) -> None:
        self.gate.set()

    def embed(self, rgb: np.ndarray) -> Embedding:
        self.embedded.append(rgb.shape[:2])
        self.busy.set()
        self.gate.wait(WAIT_MS / 1000)
        return self.inner.embed(rgb)

    def predict(self, embedding: Embedding, prompts: Prompts, mask_input: Any = None,
                multimask: bool = True) -> Prediction:
        self.prompts.append(prompts)
        self.busy.set()
        self.gate.wait(WAIT_MS / 1000)
        return self.inner.predict(embedding, prompts, mask_input, multimask)


def scene(path: Path, height: int, width: int, seed: int) -> tuple[ImageRef, np.ndarray]:
    """Write a textured image with a red disk; return its ref and the disk mask."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(20, 150, (5, 7, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disk = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(height, width) / 4) ** 2
    image[disk] = (215, 70, 55)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return ImageRef.from_path(path), disk


def centre(ref: ImageRef, shape: tuple[int, int], dx: float = 0) -> Prompts:
    return Prompts(points=(Point(shape[1] / 2 + dx, shape[0] / 2),))


@pytest.fixture
def images(tmp_path: Path) -> list[tuple[ImageRef, np.ndarray]]:
    sizes = [(240, 320), (200, 300), (180, 260)]
    return [scene(tmp_path / f"img{i}.png", h, w, i) for i, (h, w) in enumerate(sizes)]


class Harness:
    """A started client whose ``grabcut`` model is a :class:`CountingEngine`."""

    def __init__(self, qtbot: QtBot, cache_dir: Path, hold: bool = False,
                 grabcut: GrabCutEngine | None = None) -> None:
        self.qtbot = qtbot
        self.engines: list[CountingEngine] = []
        self.hold, self.grabcut = hold, grabcut
        self.client = InferenceClient(EmbeddingCache(cache_dir), loader=self.load)
        self.delivered: list[Any] = []
        self.states: list[EmbeddingState] = []
        self.client.predicted.connect(self.delivered.append)
        self.client.failed.connect(self.delivered.append)
        self.client.embedding_state.connect(self.states.append)
        self.client.start()

    def load(self, name: str, checkpoint: Path | None, device: str) -> Any:
        if name != "grabcut":
            return load_model(name, checkpoint, device)
        engine = CountingEngine(self.grabcut or GrabCutEngine(), hold=self.hold)
        self.engines.append(engine)
        return engine

    def use_grabcut(self) -> None:
        """Load the counting GrabCut engine and wait until the worker has it."""
        with self.qtbot.waitSignal(self.client.model_loaded, timeout=WAIT_MS):
            self.client.set_model("grabcut")

    @property
    def engine(self) -> CountingEngine:
        return self.engines[-1]

    def wait_for(self, signal: Any, request_id: int) -> Any:
        with self.qtbot.waitSignal(
            signal, timeout=WAIT_MS, check_params_cb=lambda r: r.request_id == request_id
        ) as blocker:
            pass
        return blocker.args[0]

    def until_idle(self) -> None:
        """Wait until the worker has nothing left, then let its last signals arrive."""
        self.qtbot.waitUntil(self.client.is_idle, timeout=WAIT_MS)
        QCoreApplication.processEvents()  # deliver the signals already posted

    def close(self) -> None:
        for engine in self.engines:
            engine.release()
        self.client.stop()


@pytest.fixture
def harness(qtbot: QtBot, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(qtbot, tmp_path / "embeddings")
    yield h
    h.close()


@pytest.fixture
def held(qtbot: QtBot, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(qtbot, tmp_path / "embeddings", hold=True)
    yield h
    h.close()


def test_predict_through_the_client_returns_the_clicked_object(
    qtbot: QtBot, tmp_path: Path, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    client = InferenceClient(EmbeddingCache(tmp_path / "emb"))
    states: list[EmbeddingState] = []
    client.embedding_state.connect(states.append)
    client.start()
    try:
        ref, disk = images[0]
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS):
            client.set_model("grabcut")
        client.focus(ref)
        with qtbot.waitSignal(client.predicted, timeout=WAIT_MS) as blocker:
            request_id = client.predict(ref, centre(ref, disk.shape))
        result = blocker.args[0]
        assert result.request_id == request_id and result.image_key == ref.key
        mask = result.prediction.masks[0, result.prediction.best()[0]]
        assert mask.shape == disk.shape
        assert (mask & disk).sum() / (mask | disk).sum() >= 0.8
        assert [s.status for s in states] == ["queued", "computing", "ready"]
    finally:
        client.stop()


def test_newer_predicts_supersede_those_not_yet_run(
    held: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    ref, disk = images[0]
    held.use_grabcut()
    held.client.focus(ref)
    held.qtbot.waitUntil(held.engine.busy.is_set, timeout=WAIT_MS)  # the encode holds the worker
    ids = [held.client.predict(ref, centre(ref, disk.shape, dx=i)) for i in range(5)]
    held.engine.release()
    result = held.wait_for(held.client.predicted, ids[-1])
    held.until_idle()
    assert [r.request_id for r in held.delivered] == [ids[-1]]
    assert held.engine.prompts == [centre(ref, disk.shape, dx=4)]  # four never ran
    assert result.prompts == centre(ref, disk.shape, dx=4)


def test_result_of_a_request_overtaken_while_running_is_dropped(
    held: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    ref, disk = images[0]
    held.use_grabcut()
    held.engine.release()  # let the encode through, then hold the next prediction
    held.client.focus(ref)
    held.until_idle()
    held.engine.gate.clear()
    held.engine.busy.clear()
    raw: list[int] = []
    assert held.client.worker is not None
    held.client.worker.predicted.connect(lambda r: raw.append(r.request_id))
    first = held.client.predict(ref, centre(ref, disk.shape))
    held.qtbot.waitUntil(held.engine.busy.is_set, timeout=WAIT_MS)  # first is running
    second = held.client.predict(ref, centre(ref, disk.shape, dx=5))
    held.engine.release()
    held.wait_for(held.client.predicted, second)
    held.until_idle()
    assert raw == [first, second]  # the worker answered both ...
    assert [r.request_id for r in held.delivered] == [second]  # ... the window saw one


def test_result_for_an_image_left_behind_is_dropped(
    held: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    (ref_a, disk_a), (ref_b, _) = images[0], images[1]
    held.use_grabcut()
    held.client.focus(ref_a)
    held.qtbot.waitUntil(held.engine.busy.is_set, timeout=WAIT_MS)
    held.client.predict(ref_a, centre(ref_a, disk_a.shape))
    held.client.focus(ref_b)
    held.engine.release()
    held.until_idle()
    assert held.delivered == []
    assert held.engine.prompts == []  # the prediction on A was dropped unrun
    assert held.states[-1].image_key == ref_b.key and held.states[-1].status == "ready"


def test_focusing_quickly_skips_encodes_nobody_waits_for(
    held: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    held.use_grabcut()
    held.client.focus(images[0][0])
    held.qtbot.waitUntil(held.engine.busy.is_set, timeout=WAIT_MS)
    held.client.focus(images[1][0])  # passed over before its encode started
    held.client.focus(images[2][0])
    held.engine.release()
    held.until_idle()
    assert held.engine.embedded == [images[0][1].shape, images[2][1].shape]


def test_predict_sent_before_its_embedding_is_ready_is_answered(
    held: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    ref, disk = images[1]
    held.use_grabcut()
    held.client.focus(ref)
    held.qtbot.waitUntil(held.engine.busy.is_set, timeout=WAIT_MS)  # encoding now
    request_id = held.client.predict(ref, centre(ref, disk.shape))
    held.engine.release()
    result = held.wait_for(held.client.predicted, request_id)
    assert result.prediction.masks.shape[-2:] == disk.shape
    assert held.engine.embedded == [disk.shape]


def test_errors_come_back_as_one_line_and_the_worker_keeps_serving(
    harness: Harness, images: list[tuple[ImageRef, np.ndarray]], tmp_path: Path
) -> None:
    ref, disk = images[0]
    client = harness.client
    harness.use_grabcut()
    bad_model = client.set_model("no_such_model")
    failure = harness.wait_for(client.failed, bad_model)
    assert "unknown model 'no_such_model'" in failure.message

    outside = client.predict(ref, Prompts(points=(Point(5000, 5),)))
    failure = harness.wait_for(client.failed, outside)
    assert "outside the 320x240 image" in failure.message and "\n" not in failure.message

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    broken_ref = ImageRef.from_path(broken)
    client.focus(broken_ref)
    on_broken = client.predict(broken_ref, Prompts(points=(Point(1, 1),)))
    failure = harness.wait_for(client.failed, on_broken)
    assert "broken.png" in failure.message

    client.focus(ref)
    good = client.predict(ref, centre(ref, disk.shape))
    result = harness.wait_for(client.predicted, good)  # still serving, still GrabCut
    assert result.prediction.masks[0, 0][disk].mean() > 0.8


def test_prefetch_fills_the_cache_so_the_next_image_needs_no_encode(
    harness: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    client = harness.client
    harness.use_grabcut()
    client.focus(images[0][0])
    with harness.qtbot.waitSignal(
        client.progress, timeout=WAIT_MS, check_params_cb=lambda p: p.done == p.total == 2
    ):
        client.prefetch([images[1][0], images[2][0]])
    harness.until_idle()
    assert harness.engine.embedded == [img[1].shape for img in images]

    ref, disk = images[1]
    client.focus(ref)
    result = harness.wait_for(client.predicted, client.predict(ref, centre(ref, disk.shape)))
    assert result.prediction.masks[0, 0][disk].mean() > 0.8
    harness.until_idle()
    assert len(harness.engine.embedded) == 3  # no new encode
    ready = [s for s in harness.states if s.image_key == ref.key]
    assert [(s.status, s.source) for s in ready] == [("queued", None), ("ready", "memory")]


def test_gui_thread_stays_free_while_a_real_encoder_runs_after_a_bad_checkpoint(
    qtbot: QtBot, tmp_path: Path, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    model_factories = pytest.importorskip("model_factories")
    checkpoint = model_factories.make_sam_checkpoint(tmp_path / "sam_tiny.pth")
    client = InferenceClient(EmbeddingCache(tmp_path / "emb"))
    ticks: list[int] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(1))
    with model_factories.registered_test_model("sam", "tiny") as spec:
        client.start()
        try:
            garbage = tmp_path / "garbage.pth"
            garbage.write_bytes(b"not a checkpoint")
            with qtbot.waitSignal(client.failed, timeout=60_000) as failure:
                client.set_model(spec.name, garbage)
            assert "garbage.pth" in failure.args[0].message  # a bad checkpoint is reported
            with qtbot.waitSignal(client.model_loaded, timeout=60_000):
                client.set_model(spec.name, checkpoint)  # and the next request still works
            ref = images[0][0]
            with qtbot.waitSignal(client.embedding_state, timeout=60_000,
                                  check_params_cb=lambda s: s.status == "computing"):
                client.focus(ref)
            timer.start()
            with qtbot.waitSignal(client.embedding_state, timeout=120_000,
                                  check_params_cb=lambda s: s.status == "ready") as ready:
                pass
            timer.stop()
            assert ready.args[0].source == "computed"
            assert len(ticks) >= 5  # the GUI event loop kept turning during the encode
            print(f"encode {ready.args[0].seconds:.2f} s, GUI timer ticks {len(ticks)}")
        finally:
            client.stop()


def test_text_prompt_segments_every_box_the_detector_finds(
    qtbot: QtBot,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    images: list[tuple[ImageRef, np.ndarray]],
) -> None:
    gdino_factory = pytest.importorskip("gdino_factory")
    tiny = gdino_factory.shared_tiny_gdino(tmp_path_factory)  # random weights: random boxes
    gdino_factory.install_tiny_gdino(monkeypatch, tiny)
    quick = GrabCutEngine(work_pixels=64 * 64, iterations=1)  # many boxes, keep each cheap
    h = Harness(qtbot, tmp_path / "emb", grabcut=quick)
    try:
        h.use_grabcut()
        ref = images[0][0]
        no_detector = h.client.detect(ref, "red disk")
        assert "no text detector" in h.wait_for(h.client.failed, no_detector).message
        with qtbot.waitSignal(h.client.model_loaded, timeout=60_000):
            h.client.set_model(tiny.spec.name, tiny.checkpoint)
        h.client.focus(ref)
        request_id = h.client.detect(ref, "red disk", box_threshold=0.0, text_threshold=0.0)
        result = h.wait_for(h.client.detected, request_id)
        count = len(result.detections)
        assert count > 0 and result.prediction.masks.shape[:2] == (count, 1)
        for (x0, y0, x1, y1), mask in zip(
            result.detections.boxes, result.prediction.masks[:, 0], strict=True
        ):
            ys, xs = np.nonzero(mask)  # GrabCut keeps each mask inside its box
            assert xs.size == 0 or (xs.min() >= x0 - 2 and xs.max() <= x1 + 2)
            assert ys.size == 0 or (ys.min() >= y0 - 2 and ys.max() <= y1 + 2)
    finally:
        h.close()


def test_stopped_client_can_start_again(
    harness: Harness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    ref, disk = images[2]
    harness.client.stop()
    assert not harness.client.running
    harness.client.start()
    harness.use_grabcut()
    result = harness.wait_for(
        harness.client.predicted, harness.client.predict(ref, centre(ref, disk.shape))
    )
    assert result.image_key == ref.key


def test_gpu_memory_is_given_back_when_idle_only_if_asked(
    qtbot: QtBot, tmp_path: Path, images: list[tuple[ImageRef, np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from samdesk.inference.engines import device

    calls: list[object] = []
    real = device.release_memory
    monkeypatch.setattr(device, "release_memory", lambda *a: calls.append(a) or real(*a))
    harness = Harness(qtbot, tmp_path / "cache")
    try:
        harness.use_grabcut()
        ref, disk = images[0]
        harness.wait_for(harness.client.predicted,
                         harness.client.predict(ref, centre(ref, disk.shape)))
        qtbot.waitUntil(harness.client.is_idle, timeout=WAIT_MS)
        qtbot.wait(100)  # let the idle signal of that work arrive
        assert calls == []
        harness.client.set_release_when_idle(True)
        harness.client.predict(ref, centre(ref, disk.shape, dx=5))
        qtbot.waitUntil(lambda: len(calls) == 1, timeout=WAIT_MS)
    finally:
        harness.client.stop()


def test_many_signals_do_not_wear_out_true(qtbot: QtBot) -> None:
    """PySide6 6.12.0 on Python 3.11 drops a reference to ``True`` per emit and aborts
    a few thousand signals later; pyproject pins PySide6 below 6.12 for that."""
    client = InferenceClient()  # not started: its signals go nowhere
    before = sys.getrefcount(True)
    for _ in range(3000):
        client.idle.emit()
    assert sys.getrefcount(True) >= before - 10


# -- the queue alone (no thread) ---------------------------------------------


def _ref(key: str) -> ImageRef:
    return ImageRef(Path(f"/images/{key}.png"), key)


def test_queue_runs_models_then_ready_work_then_focus_then_waiting_then_prefetch() -> None:
    queue = RequestQueue()
    queue.put(Prefetch(1, (_ref("p"),)))
    queue.put(Predict(2, _ref("f"), Prompts(points=(Point(1, 1),))))
    queue.put(FocusImage(3, _ref("f")))
    queue.put(Predict(4, _ref("f"), Prompts(points=(Point(2, 2),))))  # supersedes 2
    queue.put(SetModel(5, "grabcut"))
    encoded: set[str] = set()
    order = []
    while (job := queue.take(lambda key: key in encoded)) is not None:
        order.append(job)
        if isinstance(job, Encode):
            encoded.add(job.image.key)
    assert [type(j).__name__ for j in order] == ["SetModel", "Encode", "Predict", "Encode"]
    assert order[1].reason == "focus" and order[2].request_id == 4
    assert (order[3].reason, order[3].position, order[3].total) == ("prefetch", 1, 1)


def test_queue_focus_drops_other_images_and_cancel_removes_a_request() -> None:
    queue = RequestQueue()
    queue.put(Predict(1, _ref("a"), Prompts(points=(Point(1, 1),))))
    assert queue.put(FocusImage(2, _ref("b"))) == [1]
    assert queue.put(FocusImage(3, _ref("c"))) == [2]
    assert queue.cancel(3) and not queue.cancel(3)
    assert queue.take(lambda key: False) is None



def test_stopping_the_client_deletes_the_worker_on_its_own_thread_after_it_ends(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """Closing the window must not delete the worker from the GUI thread while the
    worker's thread still runs (a job, a timer): that was a use after free, the
    window's rare segfault on closing. The worker goes on its own thread's exit."""
    from PySide6.QtCore import QThread, Qt

    client = InferenceClient(EmbeddingCache(tmp_path / "emb"))
    client.start()
    with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS):
        client.set_model("grabcut")
    gui = QThread.currentThread()
    where: list[bool] = []
    client.worker.destroyed.connect(lambda *_: where.append(QThread.currentThread() is gui),
                                    Qt.ConnectionType.DirectConnection)
    client.stop()
    QCoreApplication.processEvents()
    assert where == [False]  # destroyed once, and not on the GUI thread
    assert not client.running
