"""The remote engine over a real socket: uvicorn on 127.0.0.1 in a thread, an API key,
and the engine's own httpx client (no test transport)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import uvicorn

from samdesk.images import load_rgb
from samdesk.inference.engines import remote
from samdesk.inference.engines.base import EngineError, Point, Prompts
from samdesk.inference.engines.loading import load_model
from samdesk.inference.models.registry import remote_name
from samdesk.server.app import create_app
from samdesk.server.settings import ServerSettings
from tests.model_factories import make_sam_checkpoint, registered_test_model, textured_image

KEY = "k-123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """``(url, model, checkpoint)`` of a live ``samdesk serve`` app needing :data:`KEY`."""
    checkpoint = make_sam_checkpoint(tmp_path / "tiny.pth")
    with registered_test_model("sam", "tiny") as spec:
        settings = ServerSettings(models={spec.name: checkpoint}, device="cpu",
                                  api_keys=(KEY,))
        port = free_port()
        live = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                             log_level="warning"))
        thread = threading.Thread(target=live.run, daemon=True)
        thread.start()
        started = threading.Event()
        for _ in range(600):  # at most a minute for the socket to listen
            if live.started or not thread.is_alive():
                break
            started.wait(0.1)
        assert live.started, "uvicorn did not start"
        url = f"http://127.0.0.1:{port}"
        try:
            yield url, spec.name, checkpoint
        finally:
            remote.set_api_key(url, None)
            live.should_exit = True
            thread.join(30)


def test_masks_over_a_real_socket_equal_the_local_ones(server, tmp_path: Path) -> None:
    url, model, checkpoint = server
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(textured_image(300, 400, seed=8), cv2.COLOR_RGB2BGR))
    remote.set_api_key(url, KEY)
    engine = load_model(remote_name(url, model))
    local = load_model(model, checkpoint, "cpu")
    prompts = Prompts(points=(Point(200, 150), Point(50, 40, False)))
    theirs = engine.predict(engine.embed_file(path), prompts)
    ours = local.predict(local.embed(load_rgb(path)), prompts)
    assert np.array_equal(theirs.masks, ours.masks)


def test_without_the_key_the_server_refuses_in_one_line(server) -> None:
    url, model, _ = server
    remote.set_api_key(url, None)
    with pytest.raises(EngineError) as caught:
        load_model(remote_name(url, model))
    line = str(caught.value)
    assert "API key was refused" in line and url in line and "\n" not in line
