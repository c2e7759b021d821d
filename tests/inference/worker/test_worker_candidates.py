"""The worker answers a SAM click with the shown mask first and the other candidates after.

A real random-weight tiny SAM (``tests/model_factories.py``) serves through the
real client and worker thread; its twin, loaded from the same checkpoint,
gives the reference ``engine.predict`` answer on the embedding the worker used.
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

from samdesk.inference.engines.base import Embedding, Prediction, Prompts
from samdesk.inference.engines.loading import load_model
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.requests import ImageRef
from tests.inference.worker.test_worker import WAIT_MS, centre, scene


@pytest.fixture
def images(tmp_path: Path) -> list[tuple[ImageRef, np.ndarray]]:
    return [scene(tmp_path / "img0.png", 240, 320, 0)]



class HeldProposals:
    """A real SAM engine whose proposals can hold the upsampling of candidates not shown.

    ``later`` records ``(proposal number, object, candidate)`` of each such
    upsampling as it starts; while ``gate`` is clear it waits there.
    """

    def __init__(self, inner: Any) -> None:
        self.inner, self.model_id = inner, inner.model_id
        self.proposals = 0
        self.later: list[tuple[int, int, int]] = []
        self.busy, self.gate = threading.Event(), threading.Event()
        self.gate.set()

    def embed(self, rgb: np.ndarray) -> Embedding:
        return self.inner.embed(rgb)

    def predict(self, *args: Any) -> Prediction:
        return self.inner.predict(*args)

    def propose(self, *args: Any) -> Any:
        proposal = self.inner.propose(*args)
        self.proposals += 1
        number, shown = self.proposals, {(i, int(c)) for i, c in enumerate(proposal.best())}
        upsample = proposal.mask

        def mask(obj: int, candidate: int) -> np.ndarray:
            if (obj, candidate) not in shown:
                self.later.append((number, obj, candidate))
                self.busy.set()
                self.gate.wait(WAIT_MS / 1000)
            return upsample(obj, candidate)

        proposal.mask = mask
        return proposal


class SamHarness:
    """A started client serving a random-weight tiny SAM, and a twin engine for references."""

    def __init__(self, qtbot: QtBot, tmp_path: Path, spec: Any, checkpoint: Path) -> None:
        self.qtbot, self.spec, self.checkpoint = qtbot, spec, checkpoint
        self.engine: HeldProposals | None = None
        self.client = InferenceClient(EmbeddingCache(tmp_path / "emb"), loader=self.load)
        self.results: list[Any] = []
        self.updates: list[Any] = []
        self.client.predicted.connect(self.results.append)
        self.client.candidates.connect(self.updates.append)
        self.client.start()
        with qtbot.waitSignal(self.client.model_loaded, timeout=60_000):
            self.client.set_model(spec.name, checkpoint)
        self.twin = load_model(spec.name, checkpoint, "cpu")  # same weights, test thread only

    def load(self, name: str, checkpoint: Path | None, device: str) -> Any:
        self.engine = HeldProposals(load_model(name, checkpoint, device))
        return self.engine

    def reference(self, ref: ImageRef, prompts: Prompts) -> Prediction:
        """``engine.predict`` on the embedding the worker used (from its cache)."""
        from samdesk.inference.worker.cache import model_key

        found = self.client.cache.lookup(model_key(self.spec.name, self.checkpoint), ref.key)
        assert found is not None
        return self.twin.predict(found[0], prompts, None, True)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.gate.set()
        self.client.stop()


@pytest.fixture
def sam(qtbot: QtBot, tmp_path: Path) -> Iterator[SamHarness]:
    from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

    checkpoint = make_sam_checkpoint(tmp_path / "sam_tiny.pth", TINY_SAM)
    with registered_test_model("sam", TINY_SAM) as spec:
        h = SamHarness(qtbot, tmp_path, spec, checkpoint)
        yield h
        h.close()


def test_sam_click_shows_the_best_candidate_at_once_and_the_others_follow_for_tab(
    sam: SamHarness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    ref, disk = images[0]
    sam.client.focus(ref)
    prompts = centre(ref, disk.shape)
    with sam.qtbot.waitSignal(sam.client.predicted, timeout=60_000) as first:
        request_id = sam.client.predict(ref, prompts)
    result = first.args[0]
    best = int(result.best()[0])
    assert result.request_id == request_id
    assert set(result.masks) == {(0, best)} and not result.complete  # only the shown one
    sam.qtbot.waitUntil(lambda: len(sam.updates) == 2, timeout=WAIT_MS)
    sam.qtbot.waitUntil(sam.client.is_idle, timeout=WAIT_MS)

    expected = sam.reference(ref, prompts)
    assert int(expected.best()[0]) == best
    assert np.array_equal(result.masks[0, best], expected.masks[0, best])
    assert np.array_equal(result.scores, expected.scores)
    assert np.array_equal(result.logits, expected.logits)  # refining clicks unchanged
    later = [key for update in sam.updates for key in update.masks]
    order = [int(c) for c in np.argsort(-expected.scores[0])]
    assert later == [(0, order[1]), (0, order[2])]  # in the order Tab shows them
    for update in sam.updates:
        assert update.request_id == request_id and update.image_key == ref.key
        for (obj, c), mask in update.masks.items():
            assert np.array_equal(mask, expected.masks[obj, c])


def test_a_newer_click_supersedes_the_candidates_still_being_upsampled(
    sam: SamHarness, images: list[tuple[ImageRef, np.ndarray]]
) -> None:
    ref, disk = images[0]
    assert sam.engine is not None
    sam.client.focus(ref)
    sam.engine.gate.clear()  # the first upsampling after a shown mask will wait
    raw: list[int] = []
    assert sam.client.worker is not None
    sam.client.worker.candidates.connect(lambda u: raw.append(u.request_id))
    first = sam.client.predict(ref, centre(ref, disk.shape))
    sam.qtbot.waitUntil(lambda: len(sam.results) == 1, timeout=60_000)  # shown, not held
    sam.qtbot.waitUntil(sam.engine.busy.is_set, timeout=WAIT_MS)  # 2nd candidate under way
    second = sam.client.predict(ref, centre(ref, disk.shape, dx=30))
    sam.engine.gate.set()
    sam.qtbot.waitUntil(lambda: len(sam.updates) == 2, timeout=WAIT_MS)
    sam.qtbot.waitUntil(sam.client.is_idle, timeout=WAIT_MS)
    QCoreApplication.processEvents()

    assert [r.request_id for r in sam.results] == [first, second]
    assert raw == [first, second, second]  # first's running candidate finished, ...
    assert [u.request_id for u in sam.updates] == [second, second]  # ... never delivered
    assert [number for number, _, _ in sam.engine.later] == [1, 2, 2]  # first's 3rd never ran
    expected = sam.reference(ref, centre(ref, disk.shape, dx=30))
    for update in sam.updates:
        for (obj, c), mask in update.masks.items():
            assert np.array_equal(mask, expected.masks[obj, c])
