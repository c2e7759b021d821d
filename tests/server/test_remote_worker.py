"""The window's real worker (InferenceClient on its QThread) with a server's model.

Everything the window relies on goes through the worker as it does locally:
the first answer (the best mask, or a preview of it), Tab's other candidates,
refinement with the shown candidate's logits, prefetch, and a server that
forgot the image. The masks must be the local engine's, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from samdesk.images import load_rgb
from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.engines.loading import load_model
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.requests import CandidateMasks, Failure, ImageRef, PredictResult
from tests.mask_compare import assert_masks_close, full_logits
from tests.model_factories import textured_image
from tests.server.remote_fixtures import Served, served_sam

WAIT_MS = 60_000


class Worker:
    """A started client on the server's model; what it delivered, in order."""

    def __init__(self, qtbot: QtBot, served: Served, cache: Path) -> None:
        self.qtbot, self.served = qtbot, served
        self.client = InferenceClient(EmbeddingCache(cache))
        self.delivered: list[Any] = []
        for signal in (self.client.predicted, self.client.candidates, self.client.failed):
            signal.connect(self.delivered.append)
        self.client.start()
        with qtbot.waitSignal(self.client.model_loaded, timeout=WAIT_MS):
            self.client.set_model(served.remote_name)

    def ready(self, ref: ImageRef) -> None:
        with self.qtbot.waitSignal(self.client.embedding_state, timeout=WAIT_MS,
                                   check_params_cb=lambda s: s.status == "ready"):
            self.client.focus(ref)

    def predict(self, ref: ImageRef, prompts: Prompts, **kwargs: Any) -> PredictResult:
        with self.qtbot.waitSignal(self.client.predicted, timeout=WAIT_MS) as blocker:
            self.client.predict(ref, prompts, **kwargs)
        return blocker.args[0]

    def until_idle(self) -> None:
        self.qtbot.waitUntil(self.client.is_idle, timeout=WAIT_MS)
        self.qtbot.wait(50)  # the signals already posted

    def candidates(self, request_id: int) -> dict[tuple[int, int], np.ndarray]:
        found: dict[tuple[int, int], np.ndarray] = {}
        for item in self.delivered:
            if isinstance(item, CandidateMasks) and item.request_id == request_id:
                found.update(item.masks)
        return found


def photo(folder: Path, name: str, seed: int, size: tuple[int, int] = (180, 240)) -> ImageRef:
    path = folder / name
    cv2.imwrite(str(path), cv2.cvtColor(textured_image(*size, seed=seed), cv2.COLOR_RGB2BGR))
    return ImageRef.from_path(path)


@pytest.fixture
def worker(qtbot: QtBot, tmp_path: Path) -> Iterator[Worker]:
    with served_sam(tmp_path) as served:
        w = Worker(qtbot, served, tmp_path / "emb")
        yield w
        w.client.stop()


def test_a_click_and_tab_through_the_worker_equal_the_local_engine(worker: Worker,
                                                                  tmp_path: Path) -> None:
    ref = photo(tmp_path, "a.jpg", 1)
    local = load_model(worker.served.model, worker.served.checkpoint, "cpu")
    worker.ready(ref)
    prompts = Prompts(points=(Point(120, 90),))
    result = worker.predict(ref, prompts)
    worker.until_idle()
    reference = local.propose(local.embed(load_rgb(ref.path)), prompts)
    best = int(reference.best()[0])
    assert list(result.masks) == [(0, best)]
    assert np.array_equal(result.masks[(0, best)], reference.mask(0, best))
    others = worker.candidates(result.request_id)  # what Tab shows
    assert sorted(others) == [(0, c) for c in range(3) if c != best]
    for key, mask in others.items():
        assert np.array_equal(mask, reference.mask(*key))
    assert np.array_equal(result.logits, reference.logits)
    assert not [d for d in worker.delivered if isinstance(d, Failure)]
    assert worker.served.requests["POST images"] == 1


def test_a_preview_comes_first_then_the_full_mask(worker: Worker, tmp_path: Path) -> None:
    ref = photo(tmp_path, "big.jpg", 2, (600, 800))
    local = load_model(worker.served.model, worker.served.checkpoint, "cpu")
    worker.ready(ref)
    prompts = Prompts(boxes=((100, 80, 600, 500),))
    result = worker.predict(ref, prompts, preview=(150, 200), multimask=False)
    worker.until_idle()
    [(key, preview)] = result.previews.items()
    assert preview.shape == (150, 200) and not result.masks
    reference = local.propose(local.embed(load_rgb(ref.path)), prompts, None, False)
    assert np.array_equal(worker.candidates(result.request_id)[key], reference.mask(*key))


def test_refining_uses_the_shown_candidates_logits(worker: Worker, tmp_path: Path) -> None:
    ref = photo(tmp_path, "a.jpg", 3)
    local = load_model(worker.served.model, worker.served.checkpoint, "cpu")
    worker.ready(ref)
    first = worker.predict(ref, Prompts(points=(Point(120, 90),)))
    [(obj, best)] = first.masks
    logits = first.logits[obj, best:best + 1]
    second = Prompts(points=(Point(120, 90), Point(40, 40, False)))
    refined = worker.predict(ref, second, mask_input=logits, multimask=False)
    mine = local.embed(load_rgb(ref.path))
    ours = local.predict(mine, Prompts(points=(Point(120, 90),)))
    expected = local.predict(mine, second, ours.logits[0, best:best + 1], False)
    frame = local.frame(expected.masks.shape[-2:])
    assert_masks_close(refined.masks[(0, 0)], expected.masks[0, 0],
                       full_logits(expected.logits[0, 0], frame), tol=0.05, min_iou=0.99)


def test_prefetch_sends_the_next_images_so_clicks_on_them_send_none(worker: Worker,
                                                                   tmp_path: Path) -> None:
    refs = [photo(tmp_path, f"p{i}.jpg", 10 + i) for i in range(3)]
    worker.ready(refs[0])
    worker.client.prefetch(refs[1:])
    worker.qtbot.waitUntil(lambda: worker.served.requests["POST images"] == 3, timeout=WAIT_MS)
    worker.until_idle()
    worker.ready(refs[2])
    worker.predict(refs[2], Prompts(points=(Point(50, 50),)))
    assert worker.served.requests["POST images"] == 3


def test_a_server_that_forgot_the_image_gets_it_again_and_nobody_is_told(
        worker: Worker, tmp_path: Path) -> None:
    ref = photo(tmp_path, "a.jpg", 4)
    local = load_model(worker.served.model, worker.served.checkpoint, "cpu")
    worker.ready(ref)
    worker.served.forget_images()  # the server restarted
    prompts = Prompts(points=(Point(100, 100),))
    result = worker.predict(ref, prompts)
    worker.until_idle()
    assert worker.served.requests["POST images"] == 2
    assert not [d for d in worker.delivered if isinstance(d, Failure)]
    reference = local.propose(local.embed(load_rgb(ref.path)), prompts)
    [key] = result.masks
    assert np.array_equal(result.masks[key], reference.mask(*key))


def test_the_text_tool_runs_on_the_server_as_it_does_locally(
        qtbot: QtBot, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from samdesk.inference.engines.text import segment_text
    from samdesk.inference.models.registry import remote_name
    from tests.gdino_factory import install_tiny_gdino, scene_image, shared_tiny_gdino

    tiny = shared_tiny_gdino(tmp_path_factory)
    install_tiny_gdino(monkeypatch, tiny)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene_image(160, 200, seed=2), cv2.COLOR_RGB2BGR))
    ref = ImageRef.from_path(path)
    with served_sam(tmp_path, also={tiny.spec.name: tiny.checkpoint}) as served:
        worker = Worker(qtbot, served, tmp_path / "emb")
        try:
            with qtbot.waitSignal(worker.client.model_loaded, timeout=WAIT_MS):
                worker.client.set_model(remote_name("http://testserver", tiny.spec.name))
            worker.ready(ref)
            with qtbot.waitSignal(worker.client.detected, timeout=WAIT_MS) as blocker:
                worker.client.detect(ref, "cat . dog", 0.0, 0.0)
            result = blocker.args[0]
        finally:
            worker.client.stop()
        assert served.requests["POST images"] == 1  # one file for the detector and SAM
        local = load_model(served.model, served.checkpoint, "cpu")
        expected = segment_text(load_model(tiny.spec.name, tiny.checkpoint, "cpu"), local,
                                load_rgb(path), "cat . dog", 0.0, 0.0)
    assert len(result.detections) == len(expected) > 0
    assert result.detections.phrases == [obj.phrase for obj in expected]
    assert np.allclose(result.detections.boxes, [obj.box for obj in expected], atol=1e-3)
    best = result.prediction.best()
    for row, obj in enumerate(expected):
        assert np.array_equal(result.prediction.masks[row, best[row]], obj.mask)


def test_a_click_is_answered_while_the_server_encodes_another_image(
        worker: Worker, tmp_path: Path) -> None:
    import threading

    here, next_one = photo(tmp_path, "here.jpg", 30), photo(tmp_path, "next.jpg", 31)
    worker.ready(here)
    entered, gate = threading.Event(), threading.Event()

    def hold_next(request: Any) -> None:  # the next image's upload waits for the test
        if request.url.path.endswith(next_one.key):
            entered.set()
            gate.wait(WAIT_MS / 1000)

    worker.served.client.event_hooks["request"].append(hold_next)
    try:
        worker.client.prefetch([next_one])
        worker.qtbot.waitUntil(entered.is_set, timeout=WAIT_MS)
        result = worker.predict(here, Prompts(points=(Point(100, 80),)))
        assert not gate.is_set() and result.image_key == here.key
    finally:
        gate.set()
    worker.until_idle()
    assert worker.served.requests["POST images"] == 2
