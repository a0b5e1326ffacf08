"""The audit trail at the HTTP edge: `audited(action)` records every request that asks for a change, made
or refused, and `GET /api/audit` pages the trail (docs/api.md, Audit).

Who: the function key today (memsync's one credential; a signed-in person once Entra ID sign-in is
configured). What: the action, the integration and tenant of the route, the names of the fields the
request sent (never a value: a body holds secrets), the status answered and the first error code. From
where: the client address the platform appended to `X-Forwarded-For` (the last entry; earlier ones are
the client's own claim). The record is written after the answer is decided and never changes it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import azure.functions as func

from functions.http_problems import Handler, json_response, next_link, problem_boundary
from functions.runtime import runtime
from shared.api.models import is_guid
from shared.api.parsing import (
    MAX_BODY_BYTES,
    parse_top,
    read_continuation,
    sign_continuation,
    unknown_parameters,
    verify_continuation,
    wants_csv,
)
from shared.api.problems import FieldError, invalid_request
from shared.api.views import CsvWriter
from shared.services.audit import list_audit, record
from shared.stores.audit import AuditEntry
from shared.stores.tables import utcnow

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it unannotated

_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_ADDRESS = re.compile(r"^[0-9A-Fa-f:.\[\]]{2,64}$")
_MAX_FIELDS = 30
_EXPORT_ROWS = 100_000
AUDIT_COLUMNS = ["at", "action", "outcome", "status", "actor.kind", "actor.name", "actor.id", "integrationId",
                 "tenantId", "fields", "code", "address", "method", "route"]


def field_names(req: func.HttpRequest) -> list[str]:
    """The names of the body's top-level fields and of the query parameters (not `code`, the key), never a
    value; a name that is not a plain identifier is left out (a name could be made to carry data)."""
    names: list[str] = []
    raw = req.get_body() or b""
    try:  # a body the API refused (too large, too deep, not JSON) names no fields
        body = json.loads(raw) if 0 < len(raw) <= MAX_BODY_BYTES else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if isinstance(body, dict):
        names += [k for k in body if isinstance(k, str) and _FIELD.match(k)]
    names += [k for k in req.params if k != "code" and _FIELD.match(k)]
    return sorted(set(names))[:_MAX_FIELDS]


def client_address(headers: Mapping[str, str]) -> str | None:
    """The address the platform saw: the last `X-Forwarded-For` entry, without its port."""
    forwarded = headers.get("x-forwarded-for") or headers.get("X-Forwarded-For")
    if not forwarded:
        return None
    last = forwarded.split(",")[-1].strip()
    if last.count(":") == 1:  # IPv4:port
        last = last.split(":")[0]
    elif last.startswith("[") and "]" in last:  # [IPv6]:port
        last = last[1:last.index("]")]
    return last if _ADDRESS.match(last) else None


def _error_code(response: func.HttpResponse) -> str | None:
    if response.status_code < 400:
        return None
    try:
        doc = json.loads(response.get_body() or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return code if isinstance(code, str) and _FIELD.match(code) else None
    return None


def _guid(value: str | None) -> str | None:
    return value.lower() if value and is_guid(value) else None


def audited(action: str, *, created_id: Callable[[func.HttpResponse], str | None] | None = None) -> Callable[
        [Handler], Handler]:
    """Record each call of a change route (already behind `problem_boundary`) in the audit trail."""
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def recorded(req: func.HttpRequest) -> func.HttpResponse:
            response = await handler(req)
            integration_id = _guid(req.route_params.get("id"))
            if integration_id is None and created_id is not None:
                integration_id = _guid(created_id(response))
            status = response.status_code
            entry = AuditEntry(
                at=utcnow(), action=action, status=status,
                outcome="done" if status < 400 else "refused" if status < 500 else "failed",
                actor_kind="functionKey", actor_name="function key",
                integration_id=integration_id, tenant_id=_guid(req.route_params.get("tenantId")),
                fields=field_names(req), code=_error_code(response), address=client_address(req.headers),
                method=req.method, route=_route_of(req),
            )
            try:
                rt = await runtime.get()
            except Exception:  # noqa: BLE001  # not configured: the answer already says so
                return response
            await record(rt, entry)
            return response

        return recorded

    return decorate


def _route_of(req: func.HttpRequest) -> str:
    """The path of this request, from /api/ (no query string: it could hold the key)."""
    path = str(req.url).split("?", 1)[0]
    marker = path.find("/api/")
    return path[marker:] if marker >= 0 else path


def location_id(response: func.HttpResponse) -> str | None:
    location = response.headers.get("Location") or ""
    return location.rstrip("/").rsplit("/", 1)[-1] or None


def _moment(params: Mapping[str, str], name: str, errors: list[FieldError]) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        errors.append(FieldError(name, "invalidDateTime", f"{name} must be an ISO 8601 date-time with a zone",
                                 "Send e.g. 2026-11-01T00:00:00Z."))
        return None
    return moment


@bp.route(route="audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problem_boundary
async def list_audit_trail(req: func.HttpRequest) -> func.HttpResponse:
    errors: list[FieldError] = []
    unknown_parameters(req.params, ["top", "continuation", "integrationId", "since", "until", "format"], errors,
                       what="the audit trail")
    top = parse_top(req.params, errors)
    token = read_continuation(req.params, errors, text_only=True)
    integration_id = req.params.get("integrationId")
    if integration_id is not None and not is_guid(integration_id):
        errors.append(FieldError("integrationId", "invalidValue", "integrationId must be a GUID",
                                 "Use an id from GET /api/integrations (deleted integrations keep their records)."))
    since, until = _moment(req.params, "since", errors), _moment(req.params, "until", errors)
    csv_out = wants_csv(req.params, req.headers.get("accept"), errors)
    if errors:
        raise invalid_request(errors)
    rt = await runtime.get()
    integration = integration_id.lower() if integration_id else None
    scope: dict[str, object] = {"kind": "audit", **{k: str(v) for k, v in
                                                     (("i", integration), ("s", since), ("u", until)) if v}}
    after = await verify_continuation(token, scope, rt.continuation_keys)
    if csv_out:
        writer = CsvWriter(AUDIT_COLUMNS)
        rows = 0
        while True:
            page, after = await list_audit(rt, top=1000, after=after, integration_id=integration, since=since,
                                           until=until)
            writer.write(page)
            rows += len(page)
            if after is None or rows >= _EXPORT_ROWS:
                break
        return func.HttpResponse(writer.text(), status_code=200, mimetype="text/csv", charset="utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="audit.csv"',
                                          "Cache-Control": "no-store"})
    items, last = await list_audit(rt, top=top, after=after, integration_id=integration, since=since, until=until)
    body: dict[str, Any] = {"value": items}
    if last is not None:
        continuation = await sign_continuation(last, scope, rt.continuation_keys)
        link = {"top": top, "continuation": continuation, "integrationId": integration_id,
                "since": req.params.get("since"), "until": req.params.get("until")}
        body["nextLink"] = next_link(req, {k: v for k, v in link.items() if v is not None})
    return json_response(body)
