"""HTTP front end (aiohttp) for HTTP-triggered functions and the host's admin API.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger
https://learn.microsoft.com/azure/azure-functions/function-keys-how-to
* routes live under ``/{routePrefix}/`` (host.json extensions.http.routePrefix, default api);
* a template that matches with the wrong method is a 404 (the host registers methods as
  route constraints; azure-functions-host#10098);
* authLevel function/admin needs the key in ``x-functions-key`` or ``?code=``, else 401
  with an empty body; keys are only enforced when the host was given one (Core Tools
  does not enforce keys locally);
* a body over the limit is a 413; an exception in the function is a 500 with an empty
  body (the stack trace only goes to the host log).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import MultiMapping

from .app_loader import FunctionSpec, HttpTriggerSpec, QueueTriggerSpec, TimerTriggerSpec
from .invoke import InvocationResult
from .routing import Router, strip_prefix

log = logging.getLogger("devstack.functions_host")

HTTP_REASON = "This function was programmatically called via the host APIs."
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"

Invoke = Callable[[FunctionSpec, Any, str], Awaitable[InvocationResult]]


def is_authorized(
    auth_level: str, configured_key: str | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> bool:
    """Key check for one request. ``headers`` must be case-insensitive."""
    if configured_key is None or auth_level.lower() == "anonymous":
        return True
    presented = headers.get(KEY_HEADER) or query.get(KEY_QUERY)
    if not presented:
        return False
    # Constant-time comparison: keys are secrets.
    return hmac.compare_digest(presented.encode(), configured_key.encode())


def _join_multi(m: MultiMapping[str]) -> dict[str, str]:
    """Collapse repeated headers/query keys into one comma-joined value, as ASP.NET's
    StringValues.ToString() does when the host forwards them to the worker."""
    out: dict[str, str] = {}
    for k in m:
        if k not in out:
            out[k] = ",".join(m.getall(k))
    return out


def _to_web_response(value: Any, spec: FunctionSpec) -> web.Response:
    if isinstance(value, func.HttpResponse):
        headers: list[tuple[str, str]] = list(value.headers.items())
        if not any(k.lower() == "content-type" for k, _ in headers):
            ct = value.mimetype or "text/plain"
            if value.charset and (ct.startswith("text/") or ct in ("application/json", "application/xml")):
                ct = f"{ct}; charset={value.charset}"
            headers.append(("Content-Type", ct))
        resp = web.Response(status=value.status_code, body=value.get_body())
        for k, v in headers:
            if k.lower() in ("content-length", "transfer-encoding"):
                continue  # computed by the server
            resp.headers.add(k, v)
        return resp
    if value is None:
        log.warning("Function '%s' returned no HttpResponse; answering 204", spec.name)
        return web.Response(status=204)
    if isinstance(value, (str, bytes)):
        return web.Response(
            status=200,
            body=value.encode() if isinstance(value, str) else value,
            content_type="text/plain" if isinstance(value, str) else "application/octet-stream",
        )
    # The worker JSON-serialises other return values (dict, list, ...).
    return web.Response(status=200, body=json.dumps(value).encode(), content_type="application/json")


class HttpFrontEnd:
    def __init__(
        self,
        *,
        functions: list[FunctionSpec],
        route_prefix: str,
        function_key: str | None,
        body_limit: int,
        invoke: Invoke,
        host_id: str,
        trigger_function: Callable[[FunctionSpec, str], Awaitable[None]] | None = None,
    ) -> None:
        self.route_prefix = route_prefix
        self.function_key = function_key
        self.body_limit = body_limit
        self.invoke = invoke
        self.host_id = host_id
        self.trigger_function = trigger_function
        self.started = time.monotonic()
        self.state = "Running"
        self.functions = {f.name.lower(): f for f in functions}
        self.router: Router[FunctionSpec] = Router()
        for f in functions:
            if isinstance(f.trigger, HttpTriggerSpec):
                self.router.add(f.trigger.route, f.trigger.methods, f)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.body_limit)
        # [\s\S], not ".": a route value may hold an encoded newline (%0A), which "." does not match;
        # the real host hands such a request to the function, which answers for it.
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.handle)
        return app

    def url_for(self, spec: FunctionSpec, base: str) -> str:
        assert isinstance(spec.trigger, HttpTriggerSpec)
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        return f"{base}{prefix}/{spec.trigger.route.strip('/')}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if raw_path.lower().startswith("/admin/"):
            return await self._admin(request, raw_path)
        rel = strip_prefix(raw_path, self.route_prefix)
        if rel is None:
            return web.Response(status=404)
        match = self.router.match(request.method, rel)
        if match is None:
            return web.Response(status=404)
        spec = match.route.target
        assert isinstance(spec.trigger, HttpTriggerSpec)
        if not is_authorized(spec.trigger.auth_level, self.function_key, request.headers, request.query):
            return web.Response(status=401)
        if request.content_length is not None and request.content_length > self.body_limit:
            return web.Response(status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413)
        headers = _join_multi(request.headers)
        # As App Service's front end does: the client's address appended to X-Forwarded-For (the last
        # entry is the platform's; earlier ones are whatever the client sent).
        # https://learn.microsoft.com/azure/app-service/configure-language-python#detect-https-session
        forwarded = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), None)
        headers = {k: v for k, v in headers.items() if k.lower() != "x-forwarded-for"}
        if request.remote:
            headers["X-Forwarded-For"] = f"{forwarded}, {request.remote}" if forwarded else request.remote
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=headers,
            params=_join_multi(request.query),
            route_params=match.values,
            body=body,
        )
        result = await self.invoke(spec, req, HTTP_REASON)
        if not result.succeeded:
            return web.Response(status=500)  # details are in the host log only
        try:
            return _to_web_response(result.return_value, spec)
        except (TypeError, ValueError) as exc:
            # Unserialisable return value: the worker fails the invocation -> 500.
            log.error("Function '%s' returned a value the host cannot send: %s", spec.name, exc)
            return web.Response(status=500)

    # ----------------------------------------------------------------- admin API
    async def _admin(self, request: web.Request, raw_path: str) -> web.StreamResponse:
        parts = [p for p in raw_path.split("/") if p]
        # /admin/host/status: the real host's health endpoint (used by tests to wait).
        if [p.lower() for p in parts] == ["admin", "host", "status"] and request.method in ("GET", "HEAD"):
            return web.json_response(
                {
                    "id": self.host_id,
                    "state": self.state,
                    "version": "4.x (devstack local twin)",
                    "processUptime": int((time.monotonic() - self.started) * 1000),
                }
            )
        # POST /admin/functions/{name}: run a non-HTTP function now, with {"input": "..."}.
        # https://learn.microsoft.com/azure/azure-functions/functions-manually-run-non-http
        if (
            len(parts) == 3
            and parts[0].lower() == "admin"
            and parts[1].lower() == "functions"
            and request.method == "POST"
        ):
            # The real endpoint needs the master key; the single key stands in for it.
            if not is_authorized("admin", self.function_key, request.headers, request.query):
                return web.Response(status=401)
            spec = self.functions.get(parts[2].lower())
            if spec is None:
                return web.Response(status=404)
            if isinstance(spec.trigger, HttpTriggerSpec) or self.trigger_function is None:
                return web.Response(status=400)
            try:
                payload = await request.json() if request.can_read_body else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                return web.Response(status=400)
            text = str((payload or {}).get("input", "")) if isinstance(payload, dict) else ""
            await self.trigger_function(spec, text)
            return web.Response(status=202)
        return web.Response(status=404)


def describe_function(spec: FunctionSpec, front: HttpFrontEnd, base: str) -> str:
    """One line of the start-up banner, formatted like Core Tools."""
    trig = spec.trigger
    if isinstance(trig, HttpTriggerSpec):
        methods = ",".join(trig.methods) if trig.methods else "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"
        return f"{spec.name}: [{methods}] {front.url_for(spec, base)}"
    if isinstance(trig, TimerTriggerSpec):
        return f"{spec.name}: timerTrigger"
    if isinstance(trig, QueueTriggerSpec):
        return f"{spec.name}: queueTrigger"
    return f"{spec.name}: {type(trig).__name__}"


def new_host_id() -> str:
    return uuid.uuid4().hex[:32]
