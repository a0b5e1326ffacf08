"""Microsoft Graph v1.0: organization, subscribed SKUs, contracts, GDAP relationships, Intune devices and apps,
Windows Autopilot device identities, Microsoft Entra ID devices, export jobs and application registrations.

Permissions come from the token's ``roles`` as each API page lists them, e.g.
https://learn.microsoft.com/graph/api/intune-devices-manageddevice-list?view=graph-rest-1.0.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import uuid
import zipfile
from datetime import UTC
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .context import RequestContext
from .errors import GRAPH_CONTENT_TYPE, graph_error, intune_message, json_response
from .faults import INTUNE_APPS, INTUNE_DEVICES
from .model import GRAPH, RESOURCE_APP_IDS, EntityStore, ExportJob, TenantState
from .odata import (
    ODataError,
    build_query,
    decode_skiptoken,
    encode_skiptoken,
    parse_filter,
    parse_select,
    parse_top,
    predicate_for,
)
from .timeutil import iso_seconds, iso_z, utcnow
from .tokens import Principal, TokenRejected

AUDIENCES = frozenset({GRAPH, RESOURCE_APP_IDS[GRAPH]})
PAGE_MAX = 1000  # Intune pages hold at most 1000 devices (FACTS.md)

DEVICE_READ = ("DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All")
# detectedApp list documents only the ManagedDevices permissions; DeviceManagementApps.* is
# accepted too because memsync requests it for app inventory.
APPS_READ = (*DEVICE_READ, "DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All")
EXPORT_READ = (*APPS_READ, "DeviceManagementConfiguration.Read.All", "DeviceManagementConfiguration.ReadWrite.All")
ORG_READ = ("Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
DIRECTORY_READ = ("Directory.Read.All", "Directory.ReadWrite.All")
GDAP_READ = ("DelegatedAdminRelationship.Read.All", "DelegatedAdminRelationship.ReadWrite.All")
# List and Get windowsAutopilotDeviceIdentity, Application row (v1.0 lists only these two; beta adds
# DeviceManagementConfiguration.*):
# https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-list?view=graph-rest-1.0
# https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-get?view=graph-rest-1.0
AUTOPILOT_READ = ("DeviceManagementServiceConfig.Read.All", "DeviceManagementServiceConfig.ReadWrite.All")
# List devices and Get device, Application row: Device.Read.All, or the higher privileged
# Device.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All.
# https://learn.microsoft.com/graph/api/device-list?view=graph-rest-1.0
# https://learn.microsoft.com/graph/api/device-get?view=graph-rest-1.0
ENTRA_DEVICE_READ = ("Device.Read.All", "Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
# The List devices page gives no page size. Directory collections page by 100 unless $top says otherwise,
# up to 999 (the figures List users documents, https://learn.microsoft.com/graph/api/user-list?view=graph-rest-1.0),
# and a larger $top is refused rather than capped.
ENTRA_PAGE_DEFAULT = 100
ENTRA_PAGE_MAX = 999
ENTRA_DEVICE_TYPE = "microsoft.graph.device"
ENTRA_STRING_FIELDS = {
    "id",
    "deviceId",
    "displayName",
    "operatingSystem",
    "operatingSystemVersion",
    "trustType",
    "mdmAppId",
    "profileType",
    "deviceOwnership",
    "managementType",
    "enrollmentType",
}
_entra_properties: set[str] = set()
# List subscribedSkus, Application row: LicenseAssignment.Read.All, or the higher privileged Directory.Read.All,
# Directory.ReadWrite.All, Organization.Read.All, Organization.ReadWrite.All.
# https://learn.microsoft.com/graph/api/subscribedsku-list?view=graph-rest-1.0
SKU_READ = (
    "LicenseAssignment.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Organization.Read.All",
    "Organization.ReadWrite.All",
)
# The subscribedSku properties (https://learn.microsoft.com/graph/api/resources/subscribedsku?view=graph-rest-1.0).
SKU_PROPERTIES = {
    "id",
    "accountId",
    "accountName",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
}
SKU_TYPE = "microsoft.graph.subscribedSku"
APPLICATION_READ = (
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)

DEVICE_DATETIME_FIELDS = {"lastSyncDateTime", "enrolledDateTime"}
DEVICE_STRING_FIELDS = {
    "operatingSystem",
    "complianceState",
    "deviceName",
    "managementAgent",
    "azureADDeviceId",
    "serialNumber",
    "userPrincipalName",
    "managedDeviceOwnerType",
    "manufacturer",
    "model",
    "id",
    "userId",
}
APP_STRING_FIELDS = {"displayName", "platform", "publisher", "version", "id"}
# The v1.0 properties of windowsAutopilotDeviceIdentity
# (https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity?view=graph-rest-1.0).
AUTOPILOT_PROPERTIES = {
    "id",
    "groupTag",
    "purchaseOrderIdentifier",
    "serialNumber",
    "productKey",
    "manufacturer",
    "model",
    "enrollmentState",
    "lastContactedDateTime",
    "addressableUserName",
    "userPrincipalName",
    "resourceName",
    "skuNumber",
    "systemFamily",
    "azureActiveDirectoryDeviceId",
    "managedDeviceId",
    "displayName",
}
AUTOPILOT_TYPE = "microsoft.graph.windowsAutopilotDeviceIdentity"
# The list "supports a limited subset of $filter operators and functions. Most notably, Equality
# operators such as eq are not currently supported"; contains() works (list page above). The
# simulator takes one contains() on these string properties, or several joined by ``and``.
AUTOPILOT_CONTAINS_FIELDS = {
    "serialNumber",
    "groupTag",
    "purchaseOrderIdentifier",
    "manufacturer",
    "model",
    "displayName",
    "userPrincipalName",
}
_CONTAINS = re.compile(r"contains\(\s*(\w+)\s*,\s*'((?:[^']|'')*)'\s*\)\s*")
_AND = re.compile(r"(?<=\s)and\s+", re.IGNORECASE)
APP_PROPERTIES = {"id", "displayName", "version", "sizeInByte", "deviceCount", "platform", "publisher"}
APP_INV_COLUMNS = (
    "ApplicationKey",
    "ApplicationName",
    "ApplicationPublisher",
    "ApplicationShortVersion",
    "ApplicationVersion",
    "DeviceId",
    "DeviceName",
    "EmailAddress",
    "OSDescription",
    "OSVersion",
    "Platform",
    "UserId",
    "UserName",
)
_device_properties: set[str] = set()


def device_properties() -> set[str]:
    if not _device_properties:
        import random
        from datetime import datetime

        from .generate import DeviceFactory

        _device_properties.update(DeviceFactory(random.Random(0), "x.test", datetime.now(UTC), "X").device().keys())
        _device_properties.discard("@odata.type")
    return _device_properties


def entra_device_properties() -> set[str]:
    """The v1.0 device properties the simulator serves (generate.py lists the sources)."""
    if not _entra_properties:
        import random
        from datetime import datetime

        from .generate import EntraDeviceFactory

        _entra_properties.update(EntraDeviceFactory(random.Random(0), "X", datetime.now(UTC)).unmanaged(0))
    return _entra_properties


class GraphCall:
    """One Graph request: headers, error helpers and the caller's principal."""

    def __init__(self, ctx: RequestContext, principal: Principal, tenant: TenantState) -> None:
        self.ctx = ctx
        self.principal = principal
        self.tenant = tenant
        self.client_request_id = ctx.request.headers.get("client-request-id") or ctx.request_id

    def headers(self) -> dict[str, str]:
        return {
            "request-id": self.ctx.request_id,
            "client-request-id": self.client_request_id,
            "x-ms-ags-diagnostic": json.dumps(
                {
                    "ServerInfo": {
                        "DataCenter": "Sim",
                        "Slice": "E",
                        "Ring": "1",
                        "ScaleUnit": "000",
                        "RoleInstance": "CLOUDSIM",
                    }
                }
            ),
            "OData-Version": "4.0",
        }

    def error(self, status: int, code: str, message: str) -> web.Response:
        return graph_error(
            status,
            code,
            message,
            request_id=self.ctx.request_id,
            client_request_id=self.client_request_id,
            headers=self.headers(),
        )

    def ok(self, body: Any, status: int = 200) -> web.Response:
        return json_response(body, status=status, headers=self.headers(), content_type=GRAPH_CONTENT_TYPE)

    def bytes_ok(self, body: bytes) -> web.Response:
        response = web.Response(body=body, headers=self.headers())
        response.headers["Content-Type"] = GRAPH_CONTENT_TYPE
        return response

    def require(self, allowed: tuple[str, ...]) -> bool:
        return any(role in self.principal.roles for role in allowed)

    def intune_forbidden(self, allowed: tuple[str, ...]) -> web.Response:
        url = f"https://fef.msua01.manage.microsoft.com/StatelessSim{self.ctx.request.path_qs}"
        message = intune_message(
            "Application is not authorized to perform this operation. Application must have one of the following scopes: "
            + ", ".join(allowed),
            url,
        )
        return self.error(403, "Forbidden", message)

    def intune_gate(self, allowed: tuple[str, ...]) -> web.Response | None:
        if not self.require(allowed):
            return self.intune_forbidden(allowed)
        if not self.tenant.intune_licensed:
            # Choice documented in README: a tenant without an Intune licence answers 400
            # "Request not applicable to target tenant." (FACTS.md lists it beside a 403).
            url = f"https://fef.msua01.manage.microsoft.com/StatelessSim{self.ctx.request.path_qs}"
            return self.error(400, "BadRequest", intune_message("Request not applicable to target tenant.", url))
        return None

    @property
    def v1(self) -> str:
        return f"{self.ctx.base_url}/v1.0"


async def handle(ctx: RequestContext) -> web.StreamResponse:
    server = ctx.server
    try:
        principal = server.tokens.validate(ctx.request.headers.get("Authorization"), AUDIENCES)
    except TokenRejected as exc:
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            exc.message,
            request_id=ctx.request_id,
            client_request_id=ctx.request.headers.get("client-request-id"),
            headers={
                "WWW-Authenticate": f'Bearer realm="", authorization_uri="{ctx.origin}/common/oauth2/authorize", client_id="{RESOURCE_APP_IDS[GRAPH]}"',
                "request-id": ctx.request_id,
            },
        )
    ctx.tenant_id = principal.tenant_id
    ctx.app_id = principal.app_id
    tenant = server.sim.tenants.get(principal.tenant_id)
    if tenant is None or not tenant.exists:
        return graph_error(
            401, "InvalidAuthenticationToken", "Access token validation failure.", request_id=ctx.request_id
        )
    call = GraphCall(ctx, principal, tenant)
    path = unquote(ctx.path)
    limit = INTUNE_DEVICES if "managedDevices" in path else INTUNE_APPS if "detectedApps" in path else None
    blocked = await server.gate(ctx, limit)
    if blocked is not None:
        return blocked
    method = ctx.request.method
    try:
        return await _route(call, method, path)
    except ODataError as exc:
        return call.error(400, "BadRequest", str(exc))


_DEVICE_ONE = re.compile(r"^/v1\.0/deviceManagement/managedDevices(?:/([^/()]+)|\('([^']+)'\))$")
_APP_ONE = re.compile(r"^/v1\.0/deviceManagement/detectedApps(?:/([^/()]+)|\('([^']+)'\))(/managedDevices)?$")
_EXPORT_ONE = re.compile(r"^/v1\.0/deviceManagement/reports/exportJobs(?:/([^/()]+)|\('([^']+)'\))$")
_AUTOPILOT_ONE = re.compile(r"^/v1\.0/deviceManagement/windowsAutopilotDeviceIdentities(?:/([^/()]+)|\('([^']+)'\))$")
# /devices/{id}, /devices('{id}') and the alternate key /devices(deviceId='{deviceId}') (device resource page).
_ENTRA_ONE = re.compile(r"^/v1\.0/devices(?:/([^/()]+)|\('([^']+)'\)|\(deviceId='([^']+)'\))$")
_APPLICATION = re.compile(r"^/v1\.0/applications(?:\(appId='([^']+)'\)|/([^/]+))$")
_SKU_ONE = re.compile(r"^/v1\.0/subscribedSkus(?:/([^/()]+)|\('([^']+)'\))$")


async def _route(call: GraphCall, method: str, path: str) -> web.StreamResponse:
    ctx = call.ctx
    path = path.rstrip("/")
    if not path.startswith("/v1.0/") and not path.startswith("/beta/"):
        segment = path.strip("/").split("/")[0] if path.strip("/") else ""
        return call.error(400, "BadRequest", f"Invalid version: {segment}" if segment else "Invalid request")
    if method == "GET" and path == "/v1.0/organization":
        ctx.route = "graph.organization"
        if not call.require(ORG_READ):
            return call.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        return call.ok({"@odata.context": f"{call.v1}/$metadata#organization", "value": [call.tenant.organization()]})
    if method == "GET" and path == "/v1.0/subscribedSkus":
        ctx.route = "graph.subscribedSkus.list"
        return _list_skus(call)
    match = _SKU_ONE.match(path)
    if match and method == "GET":
        ctx.route = "graph.subscribedSkus.get"
        return _get_sku(call, match.group(1) or match.group(2))
    if method == "GET" and path == "/v1.0/contracts":
        ctx.route = "graph.contracts"
        if not call.require(DIRECTORY_READ):
            return call.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        return call.ok({"@odata.context": f"{call.v1}/$metadata#contracts", "value": _contracts(call)})
    if method == "GET" and path in (
        "/v1.0/tenantRelationships/delegatedAdminCustomers",
        "/v1.0/tenantRelationships/delegatedAdminRelationships",
    ):
        ctx.route = "graph.gdap"
        if not call.require(GDAP_READ):
            return call.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        kind = path.rsplit("/", 1)[1]
        return call.ok(
            {"@odata.context": f"{call.v1}/$metadata#tenantRelationships/{kind}", "value": _gdap(call, kind)}
        )
    if method == "GET" and path == "/v1.0/deviceManagement/managedDevices":
        ctx.route = "graph.managedDevices.list"
        return _list_devices(call)
    match = _DEVICE_ONE.match(path)
    if match and method == "GET":
        ctx.route = "graph.managedDevices.get"
        return _get_device(call, match.group(1) or match.group(2))
    if method == "GET" and path == "/v1.0/deviceManagement/detectedApps":
        ctx.route = "graph.detectedApps.list"
        return _list_apps(call)
    match = _APP_ONE.match(path)
    if match and method == "GET":
        app_id = match.group(1) or match.group(2)
        ctx.route = "graph.detectedApps.devices" if match.group(3) else "graph.detectedApps.get"
        return _app_devices(call, app_id) if match.group(3) else _get_app(call, app_id)
    if method == "GET" and path == "/v1.0/deviceManagement/windowsAutopilotDeviceIdentities":
        ctx.route = "graph.windowsAutopilotDeviceIdentities.list"
        return _list_autopilot(call)
    match = _AUTOPILOT_ONE.match(path)
    if match and method == "GET":
        ctx.route = "graph.windowsAutopilotDeviceIdentities.get"
        return _get_autopilot(call, match.group(1) or match.group(2))
    if method == "GET" and path == "/v1.0/devices":
        ctx.route = "graph.devices.list"
        return _list_entra_devices(call)
    match = _ENTRA_ONE.match(path)
    if match and method == "GET":
        ctx.route = "graph.devices.get"
        return _get_entra_device(call, match.group(1) or match.group(2), device_id=match.group(3))
    if path == "/v1.0/deviceManagement/reports/exportJobs":
        ctx.route = "graph.exportJobs"
        if method == "POST":
            return await _create_export(call)
        if method == "GET":
            blocked = call.intune_gate(EXPORT_READ)
            if blocked:
                return blocked
            return call.ok({"value": [_export_json(call, job) for job in call.tenant.export_jobs.values()]})
    match = _EXPORT_ONE.match(path)
    if match and method == "GET":
        ctx.route = "graph.exportJobs.get"
        return _poll_export(call, match.group(1) or match.group(2))
    match = _APPLICATION.match(path)
    if match and method == "GET":
        ctx.route = "graph.applications"
        return _application(call, app_id=match.group(1), object_id=match.group(2))
    if method == "GET" and path == "/v1.0/applications":
        ctx.route = "graph.applications"
        return _application_list(call)
    segments = [s for s in path.split("/") if s][1:]
    known = {
        "organization",
        "contracts",
        "tenantRelationships",
        "deviceManagement",
        "applications",
        "managedDevices",
        "detectedApps",
        "reports",
        "exportJobs",
        "delegatedAdminCustomers",
        "delegatedAdminRelationships",
        "windowsAutopilotDeviceIdentities",
        "devices",
        "subscribedSkus",
    }
    unknown = next((s for s in segments if s.split("(")[0] not in known), segments[-1] if segments else "")
    if method not in ("GET",) and unknown in known:
        return call.error(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request uri.")
    return call.error(400, "BadRequest", f"Resource not found for the segment '{unknown}'.")


def _customers(call: GraphCall, relationships: tuple[str, ...]) -> list[TenantState]:
    sim = call.ctx.server.sim
    return [
        t
        for t in sim.tenants.values()
        if t.partner_tenant_id == call.tenant.tenant_id and t.relationship in relationships
    ]


def _contracts(call: GraphCall) -> list[dict[str, Any]]:
    # Contracts are the DAP (reseller) relationships; display names are snapshots.
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"contract:{t.tenant_id}")),
            "deletedDateTime": None,
            "contractType": "ResellerPartner",
            "customerId": t.tenant_id,
            "defaultDomainName": t.default_domain,
            "displayName": t.display_name,
        }
        for t in _customers(call, ("dap", "both", "indirect"))
    ]


def _gdap(call: GraphCall, kind: str) -> list[dict[str, Any]]:
    """delegatedAdminCustomers: every customer with a GDAP relationship (any status);
    delegatedAdminRelationships: the relationships themselves, as the scenario set them."""
    out: list[dict[str, Any]] = []
    for t in _customers(call, ("gdap", "both", "dap", "reseller", "indirect")):
        if not t.gdap_relationships:
            continue
        if kind == "delegatedAdminCustomers":
            out.append({"id": t.tenant_id, "tenantId": t.tenant_id, "displayName": t.display_name})
        else:
            out.extend(dict(rel, customer={"tenantId": t.tenant_id, "displayName": t.display_name})
                       for rel in t.gdap_relationships)
    return out


def _page_response(
    call: GraphCall,
    store: EntityStore,
    *,
    context: str,
    list_path: str,
    select: tuple[str, ...] | None,
    predicate: Any,
    default_top: int,
    max_top: int = PAGE_MAX,
) -> web.Response:
    query = call.ctx.request.query
    top = parse_top(query.get("$top"), default=default_top, maximum=max_top)
    after = decode_skiptoken(query["$skiptoken"]) if "$skiptoken" in query else 0
    ids, last_seq, more = store.page(after_seq=after, top=top, predicate=predicate)
    if select:
        items = [store.select_json(i, select) for i in ids]
        context = f"{context}({','.join(select)})"
    else:
        items = [store.list_json(i) for i in ids]
    head = b'{"@odata.context":' + json.dumps(f"{call.v1}/$metadata#{context}").encode()
    if more:
        params = [(k, v) for k, v in query.items() if k != "$skiptoken"]
        params.append(("$skiptoken", encode_skiptoken(last_seq)))
        next_link = f"{call.v1}/{list_path}?{build_query(params)}"
        head += b',"@odata.nextLink":' + json.dumps(next_link).encode()
    return call.bytes_ok(head + b',"value":[' + b",".join(items) + b"]}")


def _list_devices(call: GraphCall) -> web.Response:
    blocked = call.intune_gate(DEVICE_READ)
    if blocked:
        return blocked
    query = call.ctx.request.query
    select = parse_select(query.get("$select"), device_properties(), "microsoft.graph.managedDevice")
    predicate = None
    if query.get("$filter"):
        clauses = parse_filter(
            query["$filter"], datetime_fields=DEVICE_DATETIME_FIELDS, string_fields=DEVICE_STRING_FIELDS
        )
        predicate = predicate_for(call.tenant.devices, clauses)
    return _page_response(
        call,
        call.tenant.devices,
        context="deviceManagement/managedDevices",
        list_path="deviceManagement/managedDevices",
        select=select,
        predicate=predicate,
        default_top=PAGE_MAX,
    )


def _get_device(call: GraphCall, device_id: str) -> web.Response:
    blocked = call.intune_gate(DEVICE_READ)
    if blocked:
        return blocked
    store = call.tenant.devices
    if device_id not in store:
        url = f"https://fef.msua01.manage.microsoft.com/StatelessSim{call.ctx.request.path_qs}"
        return call.error(
            404, "ResourceNotFound", intune_message(f"Resource not found: managedDevice {device_id}", url)
        )
    select = parse_select(call.ctx.request.query.get("$select"), device_properties(), "microsoft.graph.managedDevice")
    # physicalMemoryInBytes / ethernetMacAddress carry real values only when $selected.
    body = store.select_json(device_id, select, full=True) if select else store.list_json(device_id)
    context = f"{call.v1}/$metadata#deviceManagement/managedDevices/$entity"
    return call.bytes_ok(b'{"@odata.context":' + json.dumps(context).encode() + b"," + body[1:])


def _list_apps(call: GraphCall) -> web.Response:
    blocked = call.intune_gate(APPS_READ)
    if blocked:
        return blocked
    query = call.ctx.request.query
    select = parse_select(query.get("$select"), APP_PROPERTIES, "microsoft.graph.detectedApp")
    predicate = None
    if query.get("$filter"):
        clauses = parse_filter(query["$filter"], datetime_fields=set(), string_fields=APP_STRING_FIELDS)
        predicate = predicate_for(call.tenant.detected_apps, clauses)
    return _page_response(
        call,
        call.tenant.detected_apps,
        context="deviceManagement/detectedApps",
        list_path="deviceManagement/detectedApps",
        select=select,
        predicate=predicate,
        default_top=PAGE_MAX,
    )


def _get_app(call: GraphCall, app_id: str) -> web.Response:
    blocked = call.intune_gate(APPS_READ)
    if blocked:
        return blocked
    app = call.tenant.detected_apps.get(app_id)
    if app is None:
        return call.error(404, "ResourceNotFound", f"Resource not found: detectedApp {app_id}")
    return call.ok({"@odata.context": f"{call.v1}/$metadata#deviceManagement/detectedApps/$entity", **app})


def _app_devices(call: GraphCall, app_id: str) -> web.Response:
    blocked = call.intune_gate(APPS_READ)
    if blocked:
        return blocked
    if app_id not in call.tenant.detected_apps:
        return call.error(404, "ResourceNotFound", f"Resource not found: detectedApp {app_id}")
    query = call.ctx.request.query
    top = parse_top(query.get("$top"), default=PAGE_MAX, maximum=PAGE_MAX)
    offset = decode_skiptoken(query["$skiptoken"]) if "$skiptoken" in query else 0
    store = call.tenant.devices
    holders = [d for d in call.tenant.app_devices.get(app_id, []) if d in store]
    chunk = holders[offset : offset + top]
    head = (
        b'{"@odata.context":'
        + json.dumps(f"{call.v1}/$metadata#deviceManagement/detectedApps('{app_id}')/managedDevices").encode()
    )
    if offset + top < len(holders):
        params = [(k, v) for k, v in query.items() if k != "$skiptoken"] + [
            ("$skiptoken", encode_skiptoken(offset + top))
        ]
        head += (
            b',"@odata.nextLink":'
            + json.dumps(
                f"{call.v1}/deviceManagement/detectedApps('{app_id}')/managedDevices?{build_query(params)}"
            ).encode()
        )
    return call.bytes_ok(head + b',"value":[' + b",".join(store.list_json(d) for d in chunk) + b"]}")


# --- Windows Autopilot device identities
# https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-list?view=graph-rest-1.0


def _autopilot_filter(call: GraphCall, text: str) -> Any:
    clauses: list[tuple[str, str]] = []
    text = text.strip()
    position = 0
    while True:
        match = _CONTAINS.match(text, position)
        if match is None or match.group(1) not in AUTOPILOT_CONTAINS_FIELDS:
            # The error the list page documents for an unsupported operator or function.
            raise ODataError(
                "An error has occurred - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000"
            )
        clauses.append((match.group(1), match.group(2).replace("''", "'").lower()))
        position = match.end()
        if position == len(text):
            break
        joined = _AND.match(text, position)
        if joined is None:
            raise ODataError("Invalid filter clause")
        position = joined.end()
    store = call.tenant.autopilot

    def matches(identity_id: str) -> bool:
        identity = store.get(identity_id) or {}
        return all(needle in str(identity.get(name) or "").lower() for name, needle in clauses)

    return matches


def _list_autopilot(call: GraphCall) -> web.Response:
    blocked = call.intune_gate(AUTOPILOT_READ)
    if blocked:
        return blocked
    query = call.ctx.request.query
    select = parse_select(query.get("$select"), AUTOPILOT_PROPERTIES, AUTOPILOT_TYPE)
    predicate = _autopilot_filter(call, query["$filter"]) if query.get("$filter") else None
    # The docs give no page size for this collection (https://learn.microsoft.com/graph/paging: "different
    # APIs might have different default and maximum page sizes"); it pages like managedDevices here.
    return _page_response(
        call,
        call.tenant.autopilot,
        context="deviceManagement/windowsAutopilotDeviceIdentities",
        list_path="deviceManagement/windowsAutopilotDeviceIdentities",
        select=select,
        predicate=predicate,
        default_top=PAGE_MAX,
    )


def _get_autopilot(call: GraphCall, identity_id: str) -> web.Response:
    blocked = call.intune_gate(AUTOPILOT_READ)
    if blocked:
        return blocked
    store = call.tenant.autopilot
    if identity_id not in store:
        url = f"https://fef.msua01.manage.microsoft.com/StatelessSim{call.ctx.request.path_qs}"
        return call.error(
            404,
            "ResourceNotFound",
            intune_message(f"Resource not found: windowsAutopilotDeviceIdentity {identity_id}", url),
        )
    select = parse_select(call.ctx.request.query.get("$select"), AUTOPILOT_PROPERTIES, AUTOPILOT_TYPE)
    body = store.select_json(identity_id, select) if select else store.list_json(identity_id)
    context = f"{call.v1}/$metadata#deviceManagement/windowsAutopilotDeviceIdentities/$entity"
    return call.bytes_ok(b'{"@odata.context":' + json.dumps(context).encode() + b"," + body[1:])


# --- Microsoft Entra ID devices
# https://learn.microsoft.com/graph/api/resources/device?view=graph-rest-1.0


def _directory_denied(call: GraphCall) -> web.Response:
    # The directory's answer to a token without a permission the API lists, as for /organization.
    return call.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _list_entra_devices(call: GraphCall) -> web.Response:
    if not call.require(ENTRA_DEVICE_READ):
        return _directory_denied(call)
    query = call.ctx.request.query
    raw_top = query.get("$top")
    if raw_top is not None and raw_top.strip().lstrip("-").isdigit() and not 1 <= int(raw_top) <= ENTRA_PAGE_MAX:
        return call.error(
            400,
            "Request_UnsupportedQuery",
            f"Invalid page size specified: '{raw_top.strip()}'. Must be between 1 and {ENTRA_PAGE_MAX} inclusive.",
        )
    try:
        select = parse_select(query.get("$select"), entra_device_properties(), ENTRA_DEVICE_TYPE)
        predicate = None
        if query.get("$filter"):
            clauses = parse_filter(query["$filter"], datetime_fields=set(), string_fields=ENTRA_STRING_FIELDS)
            predicate = predicate_for(call.tenant.entra_devices, clauses)
        return _page_response(
            call,
            call.tenant.entra_devices,
            context="devices",
            list_path="devices",
            select=select,
            predicate=predicate,
            default_top=ENTRA_PAGE_DEFAULT,
            max_top=ENTRA_PAGE_MAX,
        )
    except ODataError as exc:
        # Directory APIs name a bad query Request_BadRequest (Intune says BadRequest).
        return call.error(400, "Request_BadRequest", str(exc))


def _get_entra_device(call: GraphCall, object_id: str | None, *, device_id: str | None) -> web.Response:
    if not call.require(ENTRA_DEVICE_READ):
        return _directory_denied(call)
    store = call.tenant.entra_devices
    found = object_id if object_id in store else None
    if device_id is not None:
        found = next((i for i in store.ids() if (store.get(i) or {}).get("deviceId") == device_id), None)
    if found is None:
        missing = object_id or device_id
        return call.error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{missing}' does not exist or one of its queried reference-property objects are not present.",
        )
    try:
        select = parse_select(call.ctx.request.query.get("$select"), entra_device_properties(), ENTRA_DEVICE_TYPE)
    except ODataError as exc:
        return call.error(400, "Request_BadRequest", str(exc))
    body = store.select_json(found, select) if select else store.list_json(found)
    context = f"{call.v1}/$metadata#devices/$entity"
    return call.bytes_ok(b'{"@odata.context":' + json.dumps(context).encode() + b"," + body[1:])


# --- Subscribed SKUs
# https://learn.microsoft.com/graph/api/subscribedsku-list?view=graph-rest-1.0
# https://learn.microsoft.com/graph/api/resources/subscribedsku?view=graph-rest-1.0


def _sku_query(call: GraphCall) -> tuple[str, ...] | web.Response | None:
    """The $select of a subscribedSkus request, or the 400 for an option the list does not take: "This method
    supports only the $select OData query parameter" (list page), and the collection comes whole, in one
    answer, so there is no $top, $skip or next link to honour."""
    query = call.ctx.request.query
    unsupported = next((name for name in query if name.startswith("$") and name != "$select"), None)
    if unsupported is not None:
        return call.error(
            400,
            "Request_UnsupportedQuery",
            f"The query option '{unsupported}' is not supported by subscribedSkus; it supports only $select.",
        )
    try:
        return parse_select(query.get("$select"), SKU_PROPERTIES, SKU_TYPE)
    except ODataError as exc:
        return call.error(400, "Request_BadRequest", str(exc))


def _list_skus(call: GraphCall) -> web.Response:
    if not call.require(SKU_READ):
        return _directory_denied(call)
    select = _sku_query(call)
    if isinstance(select, web.Response):
        return select
    store = call.tenant.subscribed_skus
    context = "subscribedSkus" + (f"({','.join(select)})" if select else "")
    items = [store.select_json(i, select) if select else store.list_json(i) for i in store.ids()]
    head = b'{"@odata.context":' + json.dumps(f"{call.v1}/$metadata#{context}").encode()
    return call.bytes_ok(head + b',"value":[' + b",".join(items) + b"]}")


def _get_sku(call: GraphCall, sku_object_id: str) -> web.Response:
    if not call.require(SKU_READ):
        return _directory_denied(call)
    select = _sku_query(call)
    if isinstance(select, web.Response):
        return select
    store = call.tenant.subscribed_skus
    if sku_object_id not in store:
        return call.error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{sku_object_id}' does not exist or one of its queried reference-property objects are not present.",
        )
    body = store.select_json(sku_object_id, select) if select else store.list_json(sku_object_id)
    context = f"{call.v1}/$metadata#subscribedSkus/$entity"
    return call.bytes_ok(b'{"@odata.context":' + json.dumps(context).encode() + b"," + body[1:])


# --- Export jobs (https://learn.microsoft.com/intune/intune-service/fundamentals/reports-export-graph-apis)


async def _create_export(call: GraphCall) -> web.Response:
    blocked = call.intune_gate(EXPORT_READ)
    if blocked:
        return blocked
    try:
        body = await call.ctx.request.json()
    except (ValueError, UnicodeDecodeError):
        return call.error(400, "BadRequest", "Invalid JSON in request body.")
    if not isinstance(body, dict) or not body.get("reportName"):
        return call.error(400, "BadRequest", "reportName is required.")
    if body["reportName"] != "AppInvRawData":
        return call.error(
            400, "BadRequest", f"Report '{body['reportName']}' is not supported by the simulator (only AppInvRawData)."
        )
    select = body.get("select") or []
    if not isinstance(select, list):
        return call.error(400, "BadRequest", "select must be an array of column names.")
    known = {c.lower(): c for c in APP_INV_COLUMNS}
    columns: list[str] = []
    for name in select:
        canonical = known.get(str(name).lower())
        if canonical is None:
            return call.error(400, "BadRequest", f"Column '{name}' is not a valid column for report AppInvRawData.")
        columns.append(canonical)
    fmt = str(body.get("format") or "csv").lower()
    if fmt not in ("csv", "json"):
        return call.error(400, "BadRequest", f"Format '{fmt}' is not supported.")
    job = ExportJob(
        job_id=f"AppInvRawData_{uuid.uuid4()}",
        report_name="AppInvRawData",
        select=columns,
        filter=body.get("filter"),
        format=fmt,
        requested=utcnow(),
        blob_token=secrets.token_urlsafe(24),
    )
    call.tenant.export_jobs[job.job_id] = job
    return call.ok(_export_json(call, job), status=201)


def _export_json(call: GraphCall, job: ExportJob) -> dict[str, Any]:
    url = None
    if job.status == "completed":
        url = (
            f"{call.ctx.origin}/_sim/exports/{call.tenant.tenant_id}/{job.job_id}.zip"
            f"?sv=2019-02-02&sr=b&sig={job.blob_token}&sp=r"
        )
    from datetime import timedelta

    return {
        "@odata.context": f"{call.v1}/$metadata#deviceManagement/reports/exportJobs/$entity",
        "@odata.type": "#microsoft.graph.deviceManagementExportJob",
        "id": job.job_id,
        "reportName": job.report_name,
        "filter": job.filter,
        "select": job.select,
        "format": job.format,
        "snapshotId": None,
        "localizationType": "localizedValuesAsAdditionalColumn",
        "status": job.status,
        "url": url,
        "requestDateTime": iso_z(job.requested),
        "expirationDateTime": iso_z(job.requested + timedelta(hours=6))
        if job.status == "completed"
        else "0001-01-01T00:00:00Z",
    }


def _poll_export(call: GraphCall, job_id: str) -> web.Response:
    blocked = call.intune_gate(EXPORT_READ)
    if blocked:
        return blocked
    job = call.tenant.export_jobs.get(job_id)
    if job is None:
        return call.error(404, "ResourceNotFound", f"Resource not found: deviceManagementExportJob {job_id}")
    job.polls += 1
    needed = int(call.ctx.server.sim.options.get("exportJobPolls", 2))
    if job.status not in ("completed", "failed"):
        if job.polls >= needed and call.ctx.server.sim.options.get("exportJobOutcome") == "failed":
            job.status = "failed"
        elif job.polls >= needed:
            job.blob = build_app_inventory_zip(call.tenant, job)
            job.status = "completed"
        else:
            job.status = "inProgress"
    return call.ok(_export_json(call, job))


def app_inventory_rows(tenant: TenantState) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    devices = tenant.devices
    for app in tenant.detected_apps.values():
        for device_id in tenant.app_devices.get(app["id"], []):
            device = devices.get(device_id)
            if device is None:
                continue
            rows.append(
                {
                    "ApplicationKey": app["id"],
                    "ApplicationName": app["displayName"],
                    "ApplicationPublisher": app.get("publisher") or "",
                    "ApplicationShortVersion": app.get("version") or "",
                    "ApplicationVersion": app.get("version") or "",
                    "DeviceId": device["id"],
                    "DeviceName": device["deviceName"],
                    "EmailAddress": device.get("emailAddress") or "",
                    "OSDescription": device.get("operatingSystem") or "",
                    "OSVersion": device.get("osVersion") or "",
                    "Platform": device.get("operatingSystem") or "",
                    "UserId": device.get("userId") or "",
                    "UserName": device.get("userDisplayName") or "",
                }
            )
    return rows


def build_app_inventory_zip(tenant: TenantState, job: ExportJob) -> bytes:
    columns = job.select or list(APP_INV_COLUMNS)
    rows = app_inventory_rows(tenant)
    if job.format == "json":
        payload = json.dumps(
            {
                "values": [[r[c] for c in columns] for r in rows],
                "schema": [{"Column": c, "PropertyType": "String"} for c in columns],
            },
            ensure_ascii=False,
        ).encode()
        name = f"{job.job_id}.json"
    else:
        text = io.StringIO()
        writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
        payload = text.getvalue().encode("utf-8")
        name = f"{job.job_id}.csv"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


# --- Application registrations (secret expiry) ---------------------------------------------


def _application_json(call: GraphCall, app: Any) -> dict[str, Any]:
    return {
        "@odata.context": f"{call.v1}/$metadata#applications/$entity",
        "id": app.object_id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "signInAudience": app.sign_in_audience,
        "deletedDateTime": None,
        "keyCredentials": [],
        "passwordCredentials": [
            {
                "customKeyIdentifier": None,
                "displayName": s.display_name,
                "endDateTime": iso_seconds(s.end),
                "hint": s.hint,
                "keyId": s.key_id,
                "secretText": None,
                "startDateTime": iso_seconds(s.start),
            }
            for s in app.secrets
        ],
    }


def _application(call: GraphCall, *, app_id: str | None, object_id: str | None) -> web.Response:
    if not call.require(APPLICATION_READ):
        return call.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    sim = call.ctx.server.sim
    found = None
    for app in sim.apps.values():
        if app.home_tenant_id != call.tenant.tenant_id:
            continue
        if (app_id and app.app_id == app_id.lower()) or (object_id and app.object_id == object_id.lower()):
            found = app
    if found is None:
        missing = app_id or object_id
        return call.error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{missing}' does not exist or one of its queried reference-property objects are not present.",
        )
    return call.ok(_application_json(call, found))


def _application_list(call: GraphCall) -> web.Response:
    if not call.require(APPLICATION_READ):
        return call.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    flt = call.ctx.request.query.get("$filter", "")
    match = re.fullmatch(r"\s*appId\s+eq\s+'([^']+)'\s*", flt) if flt else None
    if flt and match is None:
        return call.error(400, "BadRequest", "Invalid filter clause")
    apps = [a for a in call.ctx.server.sim.apps.values() if a.home_tenant_id == call.tenant.tenant_id]
    if match:
        apps = [a for a in apps if a.app_id == match.group(1).lower()]
    values = []
    for app in apps:
        body = _application_json(call, app)
        body.pop("@odata.context")
        values.append(body)
    return call.ok({"@odata.context": f"{call.v1}/$metadata#applications", "value": values})
