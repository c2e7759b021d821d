"""An idle model the server unloads gives its runtime's memory back: its sessions are closed;
so does closing the server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samdesk.inference import runtimes
from samdesk.inference.engines import loading
from samdesk.inference.runtimes.cache import ENV_VAR
from samdesk.server.scheduler import Scheduler
from samdesk.server.settings import ServerSettings
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

pytestmark = pytest.mark.skipif("openvino" not in runtimes.available(),
                                reason="openvino is not installed")
RGB = np.zeros((60, 80, 3), np.uint8)


def _wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["idle", "close"])
def test_an_unloaded_model_has_no_runtime_sessions(tmp_path: Path, how: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "runtime-cache"))
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth", TINY_SAM)
    engines: list[Any] = []

    def loader(name: str, checkpoint: Path | None, device: str) -> Any:
        engines.append(loading.load_model(name, checkpoint, device, runtime="openvino"))
        return engines[-1]

    with registered_test_model("sam", TINY_SAM) as spec:
        idle = 0.2 if how == "idle" else None
        scheduler = Scheduler(ServerSettings(models={spec.name: checkpoint},
                                             idle_unload_s=idle), loader)
        try:
            scheduler.embed(spec.name, RGB, "a")
            (engine,) = engines
            assert engine.runtime == "openvino" and engine._encoder is not None
            sessions = engine._encoder._sessions
            if how == "idle":
                _wait_until(lambda: scheduler.loaded() == [], "the idle model was unloaded")
        finally:
            scheduler.close()
        assert engine._encoder is None and sessions == [] and engine.runtime == "torch"
