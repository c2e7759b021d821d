"""A model the worker drops gives its runtime's memory back: its sessions are closed.

Real random-weight tiny SAM on OpenVINO behind the real client and worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from samdesk.inference import runtimes
from samdesk.inference.engines import loading
from samdesk.inference.runtimes.cache import ENV_VAR
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from tests.inference.worker.test_worker_preempt import WAIT_MS
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

pytestmark = pytest.mark.skipif("openvino" not in runtimes.available(),
                                reason="openvino is not installed")


def test_a_replaced_model_closes_its_runtime_sessions(
        qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "runtime-cache"))
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth", TINY_SAM)
    engines: list[Any] = []

    def loader(name: str, checkpoint: Path | None, device: str, runtime: str | None = None,
               progress: Any = None) -> Any:
        engines.append(loading.load_model(name, checkpoint, device, runtime=runtime or "torch"))
        return engines[-1]

    with registered_test_model("sam", TINY_SAM) as spec:
        client = InferenceClient(EmbeddingCache(tmp_path / "emb"), loader=loader)
        client.start()
        try:
            with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS * 4) as loaded:
                client.set_model(spec.name, checkpoint, "cpu", runtime="openvino")
            assert loaded.args[0].runtime == "openvino"
            first = engines[0]
            assert first._encoder is not None and len(first._encoder._sessions) == 6
            sessions = first._encoder._sessions
            with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS * 4) as loaded:
                client.set_model(spec.name, checkpoint, "cpu", runtime="torch")
            assert loaded.args[0].runtime == "torch"
            assert first._encoder is None and sessions == [] and first.runtime == "torch"
        finally:
            client.stop()
