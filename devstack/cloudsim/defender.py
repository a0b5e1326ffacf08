"""Defender for Endpoint: ``GET /api/machines`` and ``/api/machines/{id}``
(https://learn.microsoft.com/defender-endpoint/api/get-machines)."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

from aiohttp import web

from .context import RequestContext
from .errors import defender_error, json_response
from .faults import DEFENDER_MACHINES
from .model import DEFENDER, DEFENDER_ALT, RESOURCE_APP_IDS
from .odata import ODataError, build_query, parse_filter, predicate_for
from .tokens import TokenRejected

AUDIENCES = frozenset({DEFENDER, DEFENDER_ALT, RESOURCE_APP_IDS[DEFENDER]})
MACHINE_READ = ("Machine.Read.All", "Machine.ReadWrite.All")
TOP_MAX = 10_000
DATETIME_FIELDS = {"lastSeen", "firstSeen"}
STRING_FIELDS = {
    "aadDeviceId",
    "healthStatus",
    "computerDnsName",
    "osPlatform",
    "riskScore",
    "exposureLevel",
    "id",
    "onboardingStatus",
    "deviceValue",
    "rbacGroupName",
}
_ONE = re.compile(r"^/api/machines(?:/([^/()]+)|\('([^']+)'\))$")


async def handle(ctx: RequestContext) -> web.StreamResponse:
    server = ctx.server
    try:
        principal = server.tokens.validate(ctx.request.headers.get("Authorization"), AUDIENCES)
    except TokenRejected as exc:
        return defender_error(401, "Unauthorized", exc.message, headers={"WWW-Authenticate": "Bearer"})
    ctx.tenant_id = principal.tenant_id
    ctx.app_id = principal.app_id
    tenant = server.sim.tenants.get(principal.tenant_id)
    if tenant is None:
        return defender_error(401, "Unauthorized", "Invalid tenant.")
    blocked = await server.gate(ctx, DEFENDER_MACHINES)
    if blocked is not None:
        return blocked
    path = unquote(ctx.path).rstrip("/")
    if ctx.request.method != "GET" or not path.startswith("/api/machines"):
        return defender_error(404, "ResourceNotFound", f"Resource {path or '/'} was not found")
    if not any(role in principal.roles for role in MACHINE_READ):
        return defender_error(
            403,
            "Forbidden",
            "The application does not have any of the required application permissions (Machine.ReadWrite.All, Machine.Read.All) to access the resource.",
        )
    store = tenant.machines
    if not tenant.defender_licensed or len(store) == 0:
        # No Defender here (no licence, or no recently seen machines): the API answers 404.
        return defender_error(404, "ResourceNotFound", f"No machines were found for tenant {tenant.tenant_id}")
    context = f"{ctx.base_url}/api/$metadata#Machines"
    if path == "/api/machines":
        ctx.route = "defender.machines.list"
        query = ctx.request.query
        try:
            top = int(query.get("$top", TOP_MAX))
            skip = int(query.get("$skip", 0))
            if top < 1 or skip < 0:
                raise ValueError
        except ValueError:
            return defender_error(400, "InvalidRequest", "Invalid value for $top or $skip")
        top = min(top, TOP_MAX)
        predicate = None
        if query.get("$filter"):
            try:
                clauses = parse_filter(query["$filter"], datetime_fields=DATETIME_FIELDS, string_fields=STRING_FIELDS)
            except ODataError as exc:
                return defender_error(400, "InvalidRequest", str(exc))
            predicate = predicate_for(store, clauses)
        ids = store.filtered(predicate)
        chunk = ids[skip : skip + top]
        head = b'{"@odata.context":' + json.dumps(context).encode()
        if skip + top < len(ids):
            params = [(k, v) for k, v in query.items() if k not in ("$skip", "$top")]
            params += [("$top", str(top)), ("$skip", str(skip + top))]
            head += b',"@odata.nextLink":' + json.dumps(f"{ctx.base_url}/api/machines?{build_query(params)}").encode()
        body = head + b',"value":[' + b",".join(store.list_json(i) for i in chunk) + b"]}"
        response = web.Response(body=body)
        response.headers["Content-Type"] = (
            "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
        )
        return response
    match = _ONE.match(path)
    if match:
        ctx.route = "defender.machines.get"
        machine_id = match.group(1) or match.group(2)
        machine = store.get(machine_id)
        if machine is None:
            return defender_error(404, "ResourceNotFound", f"Machine {machine_id} was not found")
        return json_response({"@odata.context": f"{ctx.base_url}/api/$metadata#Machines/$entity", **machine})
    return defender_error(404, "ResourceNotFound", f"Resource {path} was not found")
