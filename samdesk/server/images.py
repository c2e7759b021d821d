"""Images that arrive in requests, to upright ``(H, W, 3)`` uint8 RGB.

The bytes are decoded by the app's one loader (:func:`samdesk.images.load_rgb`),
so a server sees the same upright pixels as the desktop that sent the file.
The pixel count is checked from the header first (413 past
``settings.max_pixels``). A URL is fetched only from a host named by
``--allow-url-host``, with redirects refused and the size capped at the body
limit; any other URL is refused with 403 (no server-side request forgery).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import tempfile
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from samdesk.errors import ImageReadError
from samdesk.images import load_rgb
from samdesk.server.errors import ApiError
from samdesk.server.settings import ServerSettings


def b64_bytes(text: str, field: str = "image") -> bytes:
    """Bytes of base64 ``text`` (a ``data:...;base64,`` prefix allowed); 422 if not base64."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{field}: not valid base64") from None
    if not data:
        raise ApiError(422, f"{field}: empty image")
    return data


def fetch_url(url: str, settings: ServerSettings, field: str = "image.value") -> bytes:
    """The bytes at ``url`` if its host is allowed; 403 otherwise, 413 past the body limit."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(422, f"{field}: not an http(s) URL")
    allowed = {h.lower() for h in settings.allow_url_hosts}
    if host not in allowed:
        raise ApiError(403, f"{field}: fetching images from {host} is not allowed "
                            f"(start the server with --allow-url-host {host})")
    import httpx

    limit = settings.max_body_bytes
    try:
        with httpx.stream("GET", url, follow_redirects=False, timeout=30.0) as answer:
            if answer.status_code != 200:
                raise ApiError(422, f"{field}: {url} answered {answer.status_code}")
            chunks, size = [], 0
            for chunk in answer.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"{field}: the image at {url} is larger than "
                                        f"{settings.max_body_mb:g} MB")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ApiError(422, f"{field}: cannot fetch {url}: {exc}") from None
    return b"".join(chunks)


def image_bytes(image: Any, settings: ServerSettings, field: str = "image") -> bytes:
    """The file bytes of a request's image: ``{type, value}`` or a bare base64 string."""
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):  # Segmind takes a URL or base64
            return fetch_url(image, settings, field)
        return b64_bytes(image, field)
    kind = getattr(image, "type", None) or "base64"
    value = getattr(image, "value", None)
    if not isinstance(value, str) or not value:
        raise ApiError(422, f"{field}.value: missing")
    if kind == "base64":
        return b64_bytes(value, f"{field}.value")
    if kind == "url":
        return fetch_url(value, settings, f"{field}.value")
    raise ApiError(422, f"{field}.type: {kind!r} is not supported; use 'base64' or 'url'")


def image_id_of(data: bytes) -> str:
    """The id an image gets when the client names none: its content hash."""
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, settings: ServerSettings, field: str = "image") -> np.ndarray:
    """Upright RGB ``(H, W, 3)`` uint8 of an image file's bytes; 413 past ``max_pixels``."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(422, f"{field}: not an image (cannot read its header)") from None
    except Image.DecompressionBombError:
        width, height = 1 << 20, 1 << 20
    if width * height > settings.max_pixels:
        raise ApiError(413, f"{field}: {width}x{height} is {width * height} pixels, more than "
                            f"the server's limit of {settings.max_pixels}")
    handle, path = tempfile.mkstemp(prefix="samdesk-serve-", suffix=".img")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        return load_rgb(path)
    except ImageReadError as exc:
        raise ApiError(422, f"{field}: {exc.reason}") from None
    finally:
        os.unlink(path)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """``(H, W, 3)`` or ``(H, W)`` uint8 as JPEG bytes."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()
