"""Every error a route answers is one line in a JSON body: ``{"error": "..."}``.

:class:`ApiError` carries a status, extra body fields and headers; the
handlers :func:`install` adds turn it, the engines' errors, pydantic's
validation errors and anything unexpected (through
:func:`samdesk.errorlog.report`, traceback to the log) into such bodies.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from samdesk.errorlog import report, shorten
from samdesk.errors import EngineError, ImageReadError, SamdeskError
from samdesk.server.scheduler import ModelUnavailable, QueueFull, UnknownImage

log = logging.getLogger(__name__)


class ApiError(SamdeskError):
    """An answer other than 200: ``status``, the one-line ``message``, more body fields."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.fields = fields


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **fields: Any) -> JSONResponse:
    body = {"error": shorten(message, 400), **fields}
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query")]
    return ".".join(parts) or "body"


def validation_line(exc: RequestValidationError) -> str:
    """The first validation problem as ``field: message`` (plus how many more)."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    line = f"{_field(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more)"
    return line


def install(app: FastAPI) -> None:
    """Add the handlers that give every failure its one-line JSON body."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.headers, **exc.fields)

    @app.exception_handler(UnknownImage)
    async def _unknown(_: Request, exc: UnknownImage) -> JSONResponse:
        return JSONResponse({"error": "unknown image_id", "image_id": exc.image_id,
                             "detail": "no embedding is cached under this id; "
                                       "send the image again"}, status_code=404)

    @app.exception_handler(QueueFull)
    async def _full(_: Request, exc: QueueFull) -> JSONResponse:
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ModelUnavailable)
    async def _model(_: Request, exc: ModelUnavailable) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(ImageReadError)
    async def _image(_: Request, exc: ImageReadError) -> JSONResponse:
        return error_response(422, f"image: {exc}")

    @app.exception_handler(EngineError)
    async def _engine(_: Request, exc: EngineError) -> JSONResponse:
        text = str(exc)
        status = 503 if "not installed" in text or "samdesk models fetch" in text else 422
        return error_response(status, text)

    @app.exception_handler(SamdeskError)
    async def _samdesk(_: Request, exc: SamdeskError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, report(exc, f"samdesk serve {request.url.path}"))
