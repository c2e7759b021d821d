"""The worker with an ONNX Runtime encoder: the model change carries the runtime, the export
reports progress, clicks are answered meanwhile and between the ONNX chunks, and a newer
model change stops an export that is under way.

Real random-weight tiny SAM exported to ONNX Runtime behind the real client and worker
thread. Gates (events the test sets) hold an encode or an export open, so "answered
meanwhile" needs no timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from samdesk.inference.engines import runtime_choice
from samdesk.inference.engines.base import Embedding
from samdesk.inference.engines.steps import EmbedSteps, run_to_end
from samdesk.inference.runtimes.cache import ENV_VAR
from samdesk.inference.worker.cache import EmbeddingCache, model_key
from samdesk.inference.worker.client import InferenceClient
from tests.inference.worker.test_worker import scene
from tests.inference.worker.test_worker_preempt import WAIT_MS, centre_click
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

SIZES = [(240, 320), (200, 300)]  # A, B (its encode held open between ONNX chunks)


class MidEncodeGate:
    """A real engine whose encode of ``held_shape`` images stops after its first chunk
    until ``gate`` is set (yielding meanwhile, as between two chunks)."""

    def __init__(self, inner: Any, held_shape: tuple[int, int]) -> None:
        self.inner, self.held_shape = inner, held_shape
        self.held = threading.Event()
        self.gate = threading.Event()
        self.encoded: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, rgb: np.ndarray) -> Embedding:
        return run_to_end(self.embed_steps(rgb))

    def embed_steps(self, rgb: np.ndarray) -> EmbedSteps:
        steps = self.inner.embed_steps(rgb)
        next(steps)  # the first ONNX chunk ran
        if rgb.shape[:2] == self.held_shape:
            self.held.set()
            while not self.gate.wait(0.01):
                yield
        embedding = yield from steps
        self.encoded.append(rgb.shape[:2])
        return embedding


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny_sam.pth", TINY_SAM)


@pytest.fixture
def sam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "runtime-cache"))
    with registered_test_model("sam", TINY_SAM) as spec:
        yield spec.name


class Loader:
    """The real runtime loader; SAM engines wrapped in :class:`MidEncodeGate`; with
    ``export_gate`` clear, an export keeps reporting its first chunk until it is set."""

    def __init__(self) -> None:
        self.engine: MidEncodeGate | None = None
        self.exporting = threading.Event()
        self.export_gate = threading.Event()
        self.export_gate.set()
        self.runtimes: list[str | None] = []

    def __call__(self, name: str, checkpoint: Path | None, device: str,
                 runtime: str | None = None, progress: Any = None) -> Any:
        self.runtimes.append(runtime)

        def held(done: int, total: int, what: str) -> None:
            self.exporting.set()
            while not self.export_gate.is_set():  # the export "runs": progress, clicks
                progress(done, total, what)
                time.sleep(0.01)
            progress(done, total, what)

        engine = runtime_choice.load_engine(name, checkpoint, device, runtime,
                                            held if progress else None)
        if not hasattr(engine, "embed_steps") or name == "grabcut":
            return engine
        self.engine = MidEncodeGate(engine, SIZES[1])
        return self.engine


def start(qtbot: QtBot, tmp_path: Path, loader: Loader) -> tuple[InferenceClient, dict]:
    client = InferenceClient(EmbeddingCache(tmp_path / "emb"), loader=loader)
    seen: dict[str, list] = {"loaded": [], "progress": [], "predicted": [], "failed": [],
                             "ready": []}
    client.model_loaded.connect(seen["loaded"].append)
    client.progress.connect(seen["progress"].append)
    client.predicted.connect(seen["predicted"].append)
    client.failed.connect(seen["failed"].append)
    client.embedding_state.connect(
        lambda s: seen["ready"].append(s.image_key) if s.status == "ready" else None)
    client.start()
    return client, seen


def click(qtbot: QtBot, client: InferenceClient, seen: dict, ref: Any) -> Any:
    request = client.predict(ref, centre_click(ref))
    qtbot.waitUntil(lambda: any(r.request_id == request
                                for r in seen["predicted"] + seen["failed"]), timeout=WAIT_MS)
    return next(r for r in seen["predicted"] + seen["failed"] if r.request_id == request)


def test_an_onnx_model_answers_a_click_between_its_encoder_chunks(
        qtbot: QtBot, tmp_path: Path, checkpoint: Path, sam: str) -> None:
    a, b = (scene(tmp_path / f"img{i}.png", h, w, i)[0] for i, (h, w) in enumerate(SIZES))
    loader = Loader()
    client, seen = start(qtbot, tmp_path, loader)
    try:
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS * 4) as loaded:
            client.set_model(sam, checkpoint, "cpu", runtime="onnx")
        assert loader.runtimes == ["onnx"]
        assert (loaded.args[0].runtime, loaded.args[0].runtime_note) == ("onnx", "")
        whats = {p.message for p in seen["progress"]}
        assert "preparing ONNX fp32 (exported on a checkpoint's first use)" in whats
        engine = loader.engine
        assert engine is not None
        client.focus(a)
        qtbot.waitUntil(lambda: a.key in seen["ready"], timeout=WAIT_MS)
        client.prefetch([b])
        qtbot.waitUntil(engine.held.is_set, timeout=WAIT_MS)  # B: one ONNX chunk run, held
        result = click(qtbot, client, seen, a)
        assert not engine.gate.is_set() and engine.encoded == [SIZES[0]]
        embedding = client.cache.get(model_key(sam, checkpoint), a.key)
        expected = engine.inner.predict(embedding, centre_click(a))
        assert result.masks
        for (obj, candidate), mask in result.masks.items():
            assert np.array_equal(mask, expected.masks[obj, candidate])
        engine.gate.set()
        qtbot.waitUntil(lambda: SIZES[1] in engine.encoded, timeout=WAIT_MS)
    finally:
        if loader.engine is not None:
            loader.engine.gate.set()
        client.stop()
        if loader.engine is not None:
            loader.engine.inner.close()


def test_clicks_are_answered_during_an_export_and_a_newer_model_stops_it(
        qtbot: QtBot, tmp_path: Path, checkpoint: Path, sam: str) -> None:
    (a,) = (scene(tmp_path / "img0.png", 240, 320, 0)[0],)
    loader = Loader()
    client, seen = start(qtbot, tmp_path, loader)
    try:
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS):
            client.set_model("grabcut", None, "cpu")
        client.focus(a)
        qtbot.waitUntil(lambda: a.key in seen["ready"], timeout=WAIT_MS)
        loader.export_gate.clear()
        client.set_model(sam, checkpoint, "cpu", runtime="onnx")
        qtbot.waitUntil(loader.exporting.is_set, timeout=WAIT_MS * 4)
        qtbot.waitUntil(lambda: bool(seen["progress"]), timeout=WAIT_MS)  # the window shows it
        result = click(qtbot, client, seen, a)  # GrabCut still serves, meanwhile
        assert result.masks and not loader.export_gate.is_set()
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS) as loaded:
            client.set_model("grabcut", None, "cpu")  # the person picks another model
        assert loaded.args[0].name == "grabcut"
        assert [m.name for m in seen["loaded"]] == ["grabcut", "grabcut"]
        assert seen["failed"] == []
        assert loader.engine is None  # the export stopped: no SAM engine was made
    finally:
        loader.export_gate.set()
        client.stop()
