"""The HTTPS server: one aiohttp application that routes by Host header and first path segment.

``https://127.0.0.1:PORT/{tenant}/...`` is Entra (MSAL takes the authority's first path segment as
the tenant), ``/graph``, ``/defender``, ``/partnercenter``, ``/vault`` and ``/_sim`` are reserved
prefixes, and ``https://localhost:PORT/`` is the Key Vault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDict

from . import control, defender, entra, graph, keyvault, partner_center
from .context import ConnectionDropped, RequestContext
from .errors import (
    defender_error,
    entra_error,
    graph_error,
    graph_throttled,
    json_response,
    key_vault_error,
    partner_center_error,
    sim_error,
)
from .faults import FaultEngine, FaultRule, Limit, RateLimiter, transform_body
from .keyvault import VaultStore
from .reqlog import RequestLog
from .scenario import Simulation, build_simulation, load_spec
from .tokens import TokenIssuer

log = logging.getLogger("cloudsim")
Handler = Callable[[RequestContext], Awaitable[web.StreamResponse]]
SERVICES: dict[str, Handler] = {
    "graph": graph.handle,
    "defender": defender.handle,
    "partnercenter": partner_center.handle,
    "vault": keyvault.handle,
    "_sim": control.handle,
}


class SimServer:
    """All mutable simulator state, shared by the service handlers."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.tokens = TokenIssuer()
        self.log = RequestLog()
        self.sim: Simulation = build_simulation(spec)
        self.faults = FaultEngine(self.sim.seed)
        self.limiter = RateLimiter(bool(self.sim.options.get("limits", True)))
        self.vault = VaultStore()
        self.device_codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.faults.add(self.sim.scenario_faults)

    def reset(self) -> None:
        self.sim = build_simulation(self.spec, now=self.sim.now)
        self.faults = FaultEngine(self.sim.seed)
        self.faults.add(self.sim.scenario_faults)
        self.limiter = RateLimiter(bool(self.sim.options.get("limits", True)), clock=self.limiter.clock)
        self.vault = VaultStore()
        self.device_codes.clear()
        self.refresh_tokens.clear()
        self.log.clear()

    async def gate(self, ctx: RequestContext, limit: Limit | tuple[Limit, ...] | None) -> web.StreamResponse | None:
        """Injected faults first, then the emulated service limits (one, or several a request must all fit);
        None lets the request through."""
        rule = self.faults.match(ctx.service, ctx.tenant_id, ctx.request.path_qs)
        if rule is not None:
            response = await self._apply(ctx, rule)
            if response is not None:
                return response
        if limit is not None and ctx.app_id and ctx.tenant_id:
            limits = limit if isinstance(limit, tuple) else (limit,)
            refused = self.limiter.check_all(limits, ctx.app_id, ctx.tenant_id)
            if refused is not None:
                wait, hit = refused
                ctx.throttled = True
                return self.throttle_response(ctx, f"{max(1, round(wait))}", limit=hit)
        return None

    def transform(self, ctx: RequestContext, response: web.StreamResponse) -> web.StreamResponse:
        """Response-phase faults (nextLink, corrupt, truncate) on a 2xx JSON response the handler made.

        Only eligible responses are matched, so ``count``/``afterRequests`` count 2xx JSON answers."""
        if not isinstance(response, web.Response) or not 200 <= response.status < 300:
            return response
        body = response.body
        if not isinstance(body, bytes | bytearray) or not body or not response.content_type.endswith("json"):
            return response
        rules = self.faults.match_transforms(ctx.service, ctx.tenant_id, ctx.request.path_qs)
        if not rules:
            return response
        places = {"origin": ctx.origin, "host": ctx.request.host, "base": ctx.base_url}
        data = transform_body(rules, service=ctx.service, body=bytes(body), places=places)
        headers = CIMultiDict(response.headers)
        headers.popall(hdrs.CONTENT_LENGTH, None)
        return web.Response(body=data, status=response.status, reason=response.reason, headers=headers)

    async def _apply(self, ctx: RequestContext, rule: FaultRule) -> web.StreamResponse | None:
        if rule.kind in ("latency", "slow"):
            delay = self.faults.delay_s(rule)
            ctx.slept_s += delay
            await asyncio.sleep(delay)
            return None
        if rule.kind == "reset":
            raise ConnectionDropped()
        if rule.kind == "throttle" or rule.status == 429:
            ctx.throttled = True
            return self.throttle_response(ctx, rule.retryAfter)
        return self.status_response(ctx, rule.status, rule.retryAfter)

    def throttle_response(
        self, ctx: RequestContext, retry_after: str | None, *, limit: Limit | None = None
    ) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if ctx.service == "graph":
            return graph_throttled(
                request_id=ctx.request_id,
                retry_after=retry_after,
                client_request_id=ctx.request.headers.get("client-request-id"),
            )
        if ctx.service == "defender":
            per = f"{limit.requests} per {int(limit.window_s // 60)} Minutes" if limit else "100 per 1 Minutes"
            return defender_error(
                429,
                "TooManyRequests",
                f"API calls quota exceeded! Maximum allowed {per}. Try again in {retry_after or 60} seconds.",
                headers=headers,
            )
        if ctx.service == "partnercenter":
            response = partner_center_error(429, 429, "Too many requests.", error_name="TooManyRequests")
            response.headers.update(headers)
            return response
        if ctx.service == "vault":
            return key_vault_error(
                429, "Throttled", "Request was not processed because too many requests were received.", headers=headers
            )
        response = entra_error(
            429,
            "temporarily_unavailable",
            50196,
            "The server is temporarily too busy to handle the request. Please try again later.",
        )
        response.headers.update(headers)
        return response

    def status_response(self, ctx: RequestContext, status: int, retry_after: str | None) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        reason = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(
            status, f"Http{status}"
        )
        if ctx.service == "graph":
            code = {500: "generalException", 503: "serviceNotAvailable", 504: "timeout"}.get(status, reason)
            return graph_error(
                status,
                code,
                "The service is temporarily unavailable. Please retry.",
                request_id=ctx.request_id,
                headers={**headers, "request-id": ctx.request_id},
            )
        if ctx.service == "defender":
            return defender_error(status, reason, "The service is temporarily unavailable.", headers=headers)
        if ctx.service == "partnercenter":
            response = partner_center_error(
                status, status, "The service is temporarily unavailable.", error_name=reason
            )
            response.headers.update(headers)
            return response
        if ctx.service == "vault":
            return key_vault_error(status, reason, "The service is temporarily unavailable.", headers=headers)
        response = entra_error(
            status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."
        )
        response.headers.update(headers)
        return response


def _route(request: web.Request) -> tuple[str, str, str]:
    """(service, path below the service prefix, service base path) for a request."""
    path = request.path
    host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
    if host == "localhost" and not path.startswith("/_sim"):
        return "vault", path, ""
    first, _, _ = path.lstrip("/").partition("/")
    if first in SERVICES:
        return first, path[len(first) + 1 :], f"/{first}"
    return "entra", path, ""


async def dispatch(request: web.Request) -> web.StreamResponse:
    server: SimServer = request.app["cloudsim"]
    started = time.perf_counter()
    service, sub_path, prefix = _route(request)
    origin = f"{request.scheme}://{request.host}"
    ctx = RequestContext(
        request=request,
        server=server,
        service="sim" if service == "_sim" else service,
        path=sub_path or "/",
        base_url=origin + prefix,
        origin=origin,
        request_id=str(uuid.uuid4()),
    )
    dropped = False
    try:
        if service == "entra":
            response = await _entra_with_faults(ctx)
        else:
            response = await SERVICES[service](ctx)
        if service != "_sim":
            response = server.transform(ctx, response)
    except ConnectionDropped:
        dropped = True
        response = web.Response(status=599)
    except Exception:  # a simulator bug must answer 500, not kill the server
        log.exception("unhandled error for %s %s", request.method, request.path_qs)
        response = _internal_error(ctx)
    handler_ms = (time.perf_counter() - started - ctx.slept_s) * 1000.0
    if service != "_sim":
        response.headers["Server-Timing"] = f"sim;dur={handler_ms:.3f}"
        server.log.record(
            method=request.method,
            path=request.path,
            query=request.query_string,
            service=service,
            tenant_id=ctx.tenant_id,
            app_id=ctx.app_id,
            status=0 if dropped else response.status,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            handler_ms=handler_ms,
            throttled=ctx.throttled,
            route=ctx.route,
        )
    if dropped:
        # "reset": drop the TCP connection without an answer, as a network fault would.
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError()
    return response


async def _entra_with_faults(ctx: RequestContext) -> web.StreamResponse:
    segment = ctx.path.strip("/").split("/")[0] if ctx.path.strip("/") else ""
    tenant = ctx.server.sim.resolve_tenant(segment) if segment else None
    ctx.tenant_id = tenant.tenant_id if tenant is not None else None
    blocked = await ctx.server.gate(ctx, None)
    if blocked is not None:
        return blocked
    return await entra.handle(ctx)


def _internal_error(ctx: RequestContext) -> web.Response:
    if ctx.service == "graph":
        return graph_error(500, "generalException", "An internal simulator error occurred.", request_id=ctx.request_id)
    if ctx.service == "defender":
        return defender_error(500, "InternalServerError", "An internal simulator error occurred.")
    if ctx.service == "vault":
        return key_vault_error(500, "InternalServerError", "An internal simulator error occurred.")
    if ctx.service == "partnercenter":
        return partner_center_error(500, 500, "An internal simulator error occurred.")
    if ctx.service == "entra":
        return entra_error(500, "server_error", 90033, "An internal simulator error occurred.")
    return sim_error(500, "internal simulator error")


def build_app(scenario: str | dict[str, Any]) -> web.Application:
    """An aiohttp application serving ``scenario`` (a built-in name, a JSON path or a spec dict)."""
    spec = load_spec(scenario) if isinstance(scenario, str) else scenario
    app = web.Application(client_max_size=16 * 1024**2)
    app["cloudsim"] = SimServer(spec)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


@dataclass
class RunningSim:
    port: int
    host: str
    ca_path: Path
    app: web.Application

    @property
    def server(self) -> SimServer:
        return self.app["cloudsim"]  # type: ignore[no-any-return]

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return env_values(self)


def env_values(running: RunningSim) -> dict[str, str]:
    origin = running.origin
    sim = running.server.sim
    host_app = sim.apps[sim.host_app_id]
    return {
        "SSL_CERT_FILE": str(running.ca_path),
        "REQUESTS_CA_BUNDLE": str(running.ca_path),
        "MEMSYNC_AUTHORITY_HOST": origin,
        "MEMSYNC_GRAPH_URL": f"{origin}/graph",
        "MEMSYNC_DEFENDER_URL": f"{origin}/defender",
        "MEMSYNC_PARTNER_CENTER_URL": f"{origin}/partnercenter",
        # Path-prefixed vault URLs break the SDK's id parsing, hence the Host-routed vault.
        "MEMSYNC_KEY_VAULT_URL": f"https://localhost:{running.port}/",
        "AZURE_TENANT_ID": sim.host_tenant_id,
        "AZURE_CLIENT_ID": sim.host_app_id,
        "AZURE_CLIENT_SECRET": host_app.secrets[0].value,
        "MEMSYNC_SIM_URL": f"{origin}/_sim",
    }


@contextlib.asynccontextmanager
async def serve(
    scenario: str | dict[str, Any],
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    state_dir: Path | None = None,
) -> AsyncIterator[RunningSim]:
    """Run the simulator in this event loop (for in-process tests); ``port=0`` picks a free port."""
    import tempfile

    from .tls import generate_tls

    owned_dir = None
    if state_dir is None:
        owned_dir = tempfile.TemporaryDirectory(prefix="cloudsim-")
        state_dir = Path(owned_dir.name)
    tls = generate_tls(state_dir)
    app = build_app(scenario)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # Bind all-interfaces only when asked; localhost must reach us for the Host-routed vault.
    site = web.TCPSite(runner, host, port, ssl_context=tls.server_context(), reuse_address=True)
    await site.start()
    bound_port = port
    if port == 0:
        server_obj = site._server
        sockets = getattr(server_obj, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1]
    try:
        yield RunningSim(port=bound_port, host=host, ca_path=tls.ca_pem_path, app=app)
    finally:
        await runner.cleanup()
        for path in (tls.cert_path, tls.key_path):
            path.unlink(missing_ok=True)
        if owned_dir is not None:
            owned_dir.cleanup()


def client_ssl_context(ca_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_path))


__all__ = ["RunningSim", "SimServer", "build_app", "client_ssl_context", "env_values", "json_response", "serve"]
