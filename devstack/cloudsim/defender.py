"""Defender for Endpoint: ``GET /api/machines`` and ``/api/machines/{id}``
(https://learn.microsoft.com/defender-endpoint/api/get-machines), and the vulnerabilities on them by machine
and software, ``GET /api/vulnerabilities/machinesVulnerabilities``
(https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .context import RequestContext
from .errors import defender_error, json_response
from .faults import DEFENDER_MACHINES, DEFENDER_VULNERABILITIES
from .model import DEFENDER, DEFENDER_ALT, RESOURCE_APP_IDS, TenantState
from .odata import Clause, ODataError, build_query, parse_filter, predicate_for
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
VULNERABILITIES_PATH = "/api/vulnerabilities/machinesVulnerabilities"
# The page's permission table lists one application permission (WindowsDefenderATP).
VULNERABILITY_READ = ("Vulnerability.Read.All",)
# "$filter is supported on the following properties" (the list page); the simulator takes eq (and ne).
VULNERABILITY_FILTER_FIELDS = {
    "id",
    "cveId",
    "machineId",
    "fixingKbId",
    "productName",
    "productVersion",
    "severity",
    "productVendor",
}
VULNERABILITY_CONTEXT = "Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)"


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
    path = unquote(ctx.path).rstrip("/")
    vulnerabilities = path == VULNERABILITIES_PATH
    # Each API has its own limits: the vulnerability APIs' two windows, or the machines' one.
    blocked = await server.gate(ctx, DEFENDER_VULNERABILITIES if vulnerabilities else DEFENDER_MACHINES)
    if blocked is not None:
        return blocked
    if ctx.request.method == "GET" and vulnerabilities:
        ctx.route = "defender.machinesVulnerabilities.list"
        return _list_vulnerabilities(ctx, tenant, principal.roles)
    if ctx.request.method != "GET" or not path.startswith("/api/machines"):
        return defender_error(404, "ResourceNotFound", f"Resource {path or '/'} was not found")
    if not any(role in principal.roles for role in MACHINE_READ):
        return defender_error(
            403,
            "Forbidden",
            "The application does not have any of the required application permissions (Machine.ReadWrite.All, Machine.Read.All) to access the resource.",
        )
    store = tenant.machines
    if not _has_defender(tenant):
        return _no_defender(tenant)
    context = f"{ctx.base_url}/api/$metadata#Machines"
    if path == "/api/machines":
        ctx.route = "defender.machines.list"
        query = ctx.request.query
        window = _top_skip(query)
        if window is None:
            return defender_error(400, "InvalidRequest", "Invalid value for $top or $skip")
        top, skip = window
        predicate = None
        if query.get("$filter"):
            try:
                clauses = parse_filter(query["$filter"], datetime_fields=DATETIME_FIELDS, string_fields=STRING_FIELDS)
            except ODataError as exc:
                return defender_error(400, "InvalidRequest", str(exc))
            predicate = predicate_for(store, clauses)
        ids = store.filtered(predicate)
        chunk = [store.list_json(i) for i in ids[skip : skip + top]]
        return _page(ctx, "/api/machines", context, chunk, skip + top < len(ids), top, skip)
    match = _ONE.match(path)
    if match:
        ctx.route = "defender.machines.get"
        machine_id = match.group(1) or match.group(2)
        machine = store.get(machine_id)
        if machine is None:
            return defender_error(404, "ResourceNotFound", f"Machine {machine_id} was not found")
        return json_response({"@odata.context": f"{ctx.base_url}/api/$metadata#Machines/$entity", **machine})
    return defender_error(404, "ResourceNotFound", f"Resource {path} was not found")


def _has_defender(tenant: TenantState) -> bool:
    return tenant.defender_licensed and len(tenant.machines) > 0


def _no_defender(tenant: TenantState) -> web.Response:
    # No Defender here (no licence, or no recently seen machines): the API answers 404.
    return defender_error(404, "ResourceNotFound", f"No machines were found for tenant {tenant.tenant_id}")


def _top_skip(query: Any) -> tuple[int, int] | None:
    """($top, $skip), $top capped at 10,000 as the machines list does; None when either is not a number."""
    try:
        top = int(query.get("$top", TOP_MAX))
        skip = int(query.get("$skip", 0))
    except ValueError:
        return None
    if top < 1 or skip < 0:
        return None
    return min(top, TOP_MAX), skip


def _page(ctx: RequestContext, path: str, context: str, chunk: list[bytes], more: bool, top: int, skip: int) -> web.Response:
    """A Defender page: context, a next link with the same query and the next ``$skip`` while more remain
    (as /api/machines sends it), and the records."""
    query = ctx.request.query
    head = b'{"@odata.context":' + json.dumps(context).encode()
    if more:
        params = [(k, v) for k, v in query.items() if k not in ("$skip", "$top")]
        params += [("$top", str(top)), ("$skip", str(skip + top))]
        head += b',"@odata.nextLink":' + json.dumps(f"{ctx.base_url}{path}?{build_query(params)}").encode()
    response = web.Response(body=head + b',"value":[' + b",".join(chunk) + b"]}")
    response.headers["Content-Type"] = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
    return response


def _record_predicate(clauses: list[Clause]) -> Callable[[dict[str, Any]], bool]:
    def matches(record: dict[str, Any]) -> bool:
        for clause in clauses:
            current = record.get(clause.field)
            equal = current is not None and str(current).lower() == str(clause.value).lower()
            if equal != (clause.op == "eq"):
                return False
        return True

    return matches


def _list_vulnerabilities(ctx: RequestContext, tenant: TenantState, roles: frozenset[str]) -> web.Response:
    # Permission first, then Defender's presence, in the order /api/machines checks them.
    if not any(role in roles for role in VULNERABILITY_READ):
        return defender_error(
            403,
            "Forbidden",
            "The application does not have any of the required application permissions (Vulnerability.Read.All) "
            "to access the resource.",
        )
    if not _has_defender(tenant):
        return _no_defender(tenant)
    query = ctx.request.query
    window = _top_skip(query)
    if window is None:
        return defender_error(400, "InvalidRequest", "Invalid value for $top or $skip")
    top, skip = window
    predicate = None
    if query.get("$filter"):
        try:
            clauses = parse_filter(query["$filter"], datetime_fields=set(), string_fields=VULNERABILITY_FILTER_FIELDS)
        except ODataError as exc:
            return defender_error(400, "InvalidRequest", str(exc))
        predicate = _record_predicate(clauses)
    records = tenant.vulnerabilities
    positions = records.positions(predicate)
    chunk = [records.json(i) for i in positions[skip : skip + top]]
    context = f"{ctx.base_url}/api/$metadata#{VULNERABILITY_CONTEXT}"
    return _page(ctx, VULNERABILITIES_PATH, context, chunk, skip + top < len(positions), top, skip)
