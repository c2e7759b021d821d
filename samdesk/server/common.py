"""What every route does first: authorize, warn about unknown fields, find the embedding.

For the native routes too: ``ctx = Context.of(request, body)`` gives the
settings, the scheduler and the key's ``scope``; :meth:`Context.embedded`
returns ``(image_id, Embedding)`` from the cache or by encoding the sent image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response

from samdesk.errorlog import shorten
from samdesk.inference.engines.base import Embedding
from samdesk.server import images
from samdesk.server.auth import authorize
from samdesk.server.errors import ApiError
from samdesk.server.requests import Body, unknown_fields
from samdesk.server.scheduler import Scheduler, UnknownImage
from samdesk.server.settings import ServerSettings

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: ServerSettings
    scheduler: Scheduler
    scope: str
    warnings: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    @classmethod
    def of(cls, request: Request, body: Body, response: Response | None = None) -> Context:
        """Authorize ``request`` (401) and note the fields ``body`` did not know."""
        scope = authorize(request, body.api_key)
        ctx = cls(request.app.state.settings, request.app.state.scheduler, scope)
        unknown = unknown_fields(body)
        if unknown:
            line = shorten("unknown fields ignored: " + ", ".join(unknown), 300)
            log.warning("%s %s", request.url.path, line)
            ctx.warnings.append(line)
            if response is not None:
                response.headers["Warning"] = f'299 samdesk "{line}"'
        return ctx

    def headers(self) -> dict[str, str]:
        """The warning header for answers built by hand (binary, JPEG)."""
        return {"Warning": f'299 samdesk "{self.warnings[0]}"'} if self.warnings else {}

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def image(self, image: Any, field: str = "image") -> tuple[bytes, Any]:
        """The sent image's bytes and its upright RGB (decoded, limits checked)."""
        data = images.image_bytes(image, self.settings, field)
        return data, images.decode(data, self.settings, field)

    def embedded(self, model: str, image: Any, image_id: str | None
                 ) -> tuple[str, Embedding]:
        """The embedding to segment on: cached under ``image_id``, or of ``image``.

        With only an unknown ``image_id``: :class:`UnknownImage` (404). With
        neither: 422. A sent image without an id is cached under its content hash.
        """
        self.scheduler.check_model(model)
        if image_id:
            found = self.scheduler.lookup(model, image_id, self.scope)
            if found is not None:
                return image_id, found
            if image is None:
                raise UnknownImage(image_id)
        elif image is None:
            raise ApiError(422, "image: give an image or the image_id of an embedded one")
        data = images.image_bytes(image, self.settings)
        image_id = image_id or images.image_id_of(data)
        found = self.scheduler.lookup(model, image_id, self.scope)
        if found is not None:
            return image_id, found
        rgb = images.decode(data, self.settings)
        return image_id, self.scheduler.embed(model, rgb, image_id, self.scope)
