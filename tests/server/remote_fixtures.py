"""A ``samdesk serve`` app in the test process, and a desktop remote engine talking to it.

The app serves a random-weight tiny SAM (the same checkpoint file the local
engine loads), through FastAPI's ``TestClient`` (no socket). ``Served``
counts every request by route, so tests see what crossed the wire.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from samdesk.inference.engines import remote
from samdesk.inference.models.registry import remote_name
from samdesk.server.app import create_app
from samdesk.server.settings import ServerSettings
from tests.model_factories import make_sam_checkpoint, registered_test_model

URL = "http://testserver"


@dataclass
class Served:
    """A running in-process server: its app, the model's name and checkpoint, the traffic."""

    app: Any
    client: TestClient
    model: str
    checkpoint: Path
    requests: Counter = field(default_factory=Counter)
    sent_bytes: list[int] = field(default_factory=list)
    received_bytes: list[int] = field(default_factory=list)

    @property
    def remote_name(self) -> str:
        return remote_name(URL, self.model)

    def forget_images(self) -> None:
        """What a restart does to the server's memory: every image and embedding gone."""
        scheduler = self.app.state.scheduler
        scheduler._embeddings = type(scheduler._embeddings)(scheduler._embeddings.max_bytes)
        if hasattr(self.app.state, "native_images"):
            del self.app.state.native_images


@contextlib.contextmanager
def served_sam(tmp_path: Path, api_key: str | None = None,
               also: dict[str, Path] | None = None) -> Iterator[Served]:
    """A tiny SAM served in process; the remote engine's client for :data:`URL` is set.

    ``also``: more registered models to serve, name -> checkpoint.
    """
    checkpoint = make_sam_checkpoint(tmp_path / "tiny_sam.pth")
    with registered_test_model("sam", "tiny") as spec:
        settings = ServerSettings(models={spec.name: checkpoint, **(also or {})}, device="cpu",
                                  api_keys=(api_key,) if api_key else ())
        app = create_app(settings)
        served: Served | None = None

        def count(request: httpx.Request) -> None:
            assert served is not None
            route = request.url.path.rsplit("/", 2)
            name = route[-2] if route[-2] == "images" else route[-1]
            served.requests[f"{request.method} {name}"] += 1
            served.sent_bytes.append(len(request.content))

        def size(response: httpx.Response) -> None:
            assert served is not None
            response.read()
            served.received_bytes.append(len(response.content))

        headers = {"x-api-key": api_key} if api_key else {}
        with TestClient(app, base_url=URL, headers=headers) as client:
            client.event_hooks = {"request": [count], "response": [size]}
            served = Served(app, client, spec.name, checkpoint)
            remote.use_client(URL, client)
            try:
                yield served
            finally:
                remote.use_client(URL, None)
