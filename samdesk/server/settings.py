"""What ``samdesk serve`` was started with: one frozen dataclass, shared by the app,
the scheduler and the routes.

Sizes are in bytes or megabytes as named, times in seconds.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from samdesk.errors import CliError

MB = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    """Options of one server.

    ``models``: the served models, name -> checkpoint file (``None``: the
    installed file). Empty: any registered model whose checkpoint is installed.
    ``api_keys``: accepted keys; empty: no key needed (loopback only).
    ``idle_unload_s``: a model unused this long is unloaded (``None``: never).
    ``max_queue``: jobs waiting for the scheduler before a request gets 503.
    ``runtime``: the SAM / SAM 2 encoders' (``--runtime``: auto, torch, onnx,
    onnx-int8); ``None``: the default (auto, or ``$SAMDESK_RUNTIME``).
    """

    host: str = "127.0.0.1"
    port: int = 9001
    models: dict[str, Path | None] = field(default_factory=dict)
    device: str = "auto"
    runtime: str | None = None
    api_keys: tuple[str, ...] = ()
    cache_mb: float = 2048.0
    idle_unload_s: float | None = None
    max_body_mb: float = 64.0
    max_pixels: int = 100_000_000
    max_prompts: int = 64
    max_points: int = 64
    allow_url_hosts: tuple[str, ...] = ()
    max_queue: int = 64
    retry_after_s: int = 1
    request_timeout_s: float = 600.0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_mb * MB)

    def check(self) -> None:
        """Refuse settings a server must not start with (one line, :class:`CliError`)."""
        if not is_loopback(self.host) and not self.api_keys:
            raise CliError(
                f"--host {self.host}: binding to an address other than loopback needs "
                "--api-key KEY (anyone on the network could use the models)"
            )
        for key in self.api_keys:
            if not key.strip():
                raise CliError("--api-key: the key is empty")
        if self.max_queue < 1:
            raise CliError("max_queue must be at least 1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
