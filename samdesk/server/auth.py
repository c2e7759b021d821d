"""API keys: which requests may use the models, and whose image ids they see.

A key is accepted as the seed services send it: an ``x-api-key`` header,
``Authorization: Bearer KEY``, or ``api_key`` as a query parameter or a body
field. Without configured keys (loopback only) every request is let in; a
key sent anyway still scopes its image ids.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from samdesk.server.errors import ApiError
from samdesk.server.scheduler import scope_of
from samdesk.server.settings import ServerSettings

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def sent_key(request: Request, body_key: str | None = None) -> str | None:
    """The API key a request carries, wherever it carries it; ``None`` if none."""
    header = request.headers.get("x-api-key")
    if header:
        return header.strip()
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    query = request.query_params.get("api_key")
    if query:
        return query
    return body_key or None


def authorize(request: Request, body_key: str | None = None) -> str:
    """The request's scope (:func:`scope_of` its key); 401 for a missing or wrong key."""
    settings: ServerSettings = request.app.state.settings
    key = sent_key(request, body_key)
    if settings.api_keys:
        if key is None:
            raise ApiError(401, "missing API key: send it as x-api-key, "
                                "Authorization: Bearer KEY or api_key", _CHALLENGE)
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
            raise ApiError(401, "wrong API key", _CHALLENGE)
    return scope_of(key)
