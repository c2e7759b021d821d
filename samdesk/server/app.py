"""``create_app(settings) -> FastAPI``: the whole server, ready for uvicorn or a TestClient.

The app holds ``app.state.settings`` (:class:`ServerSettings`) and
``app.state.scheduler`` (:class:`~samdesk.server.scheduler.Scheduler`, the
one owner of the models). Routes get both from ``request.app.state``, call
:func:`samdesk.server.auth.authorize` first (it returns the key's scope for
image ids), decode images with :mod:`samdesk.server.images` and raise
:class:`~samdesk.server.errors.ApiError` for any answer other than 200.

Routers: Roboflow-compatible ``/sam/*`` and ``/sam2/*``
(:mod:`~samdesk.server.routes_roboflow`), Segmind's ``/v1/sam-v2-image``
(:mod:`~samdesk.server.routes_segmind`), ``/grounded_sam/segment_image``
(:mod:`~samdesk.server.routes_text`), and samdesk's own routes
(:mod:`~samdesk.server.routes_native`) when that module exists. OpenAPI at
``/docs``. Bodies over ``--max-body-mb`` get 413 before any route runs; answers
over 1 kB are gzip-compressed for clients that accept it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

from samdesk.server import errors
from samdesk.server.scheduler import Loader, Scheduler
from samdesk.server.settings import ServerSettings

log = logging.getLogger(__name__)

ROUTERS = (
    "samdesk.server.routes_roboflow",
    "samdesk.server.routes_segmind",
    "samdesk.server.routes_text",
    "samdesk.server.routes_native",
)
"""Modules with a ``router``; one that does not exist (yet) is skipped."""


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 and reaches no route.

    The body is read here (at most ``limit`` bytes held) and replayed to the app.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        mb = self.limit / (1 << 20)
        line = f"request body larger than the server's limit of {mb:.3g} MB (--max-body-mb)"
        body = json.dumps({"error": line}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: ServerSettings, loader: Loader | None = None,
               scheduler: Scheduler | None = None) -> FastAPI:
    """The server app. ``loader(name, checkpoint, device)`` builds engines (tests pass
    their own); ``scheduler``: an existing one to share (it is closed with the app)."""
    if scheduler is None:
        scheduler = Scheduler(settings) if loader is None else Scheduler(settings, loader)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            scheduler.close()

    app = FastAPI(title="samdesk serve", version="1",
                  description="Segment Anything over HTTP: embed an image once under an "
                              "image_id, then segment many prompts. Roboflow- and "
                              "Segmind-compatible routes.",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.scheduler = scheduler
    errors.install(app)
    for name in ROUTERS:
        if importlib.util.find_spec(name) is None:
            continue
        app.include_router(importlib.import_module(name).router)
    # answers over 1 kB go gzip-compressed to clients that accept it (httpx, requests, curl
    # --compressed): a 12 MP mask's RLE shrinks to about a third
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
