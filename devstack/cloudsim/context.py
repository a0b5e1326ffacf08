"""Per-request context handed to each simulated service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import SimServer


class ConnectionDropped(Exception):
    """Raised by a ``reset`` fault: the dispatcher aborts the TCP connection without answering."""


@dataclass
class RequestContext:
    request: web.Request
    server: SimServer
    service: str  # entra | graph | defender | partnercenter | vault | sim
    path: str  # path below the service prefix, e.g. /v1.0/organization
    base_url: str  # scheme://host[:port][/prefix] the client used for this service
    origin: str  # scheme://host[:port]
    request_id: str
    tenant_id: str | None = None
    app_id: str | None = None
    throttled: bool = False
    slept_s: float = 0.0
    route: str = ""
