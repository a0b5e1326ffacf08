"""Per-device lists: what is on a device, which devices have a detected app, and what Defender sees on it.

`GET /api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software`,
`GET /api/integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices` and
`GET /api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/vulnerabilities`, lists shaped like the rest
of the API (`{"value": [...], "nextLink"}`, `?top=` 1-1000, default 100), errors as problem documents.
The answers come from the inventory the sync stored (shared.services.inventory).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import azure.functions as func

from functions.http_problems import json_response, next_link, problem_boundary
from functions.runtime import runtime
from shared.api.parsing import (
    Continuation,
    parse_guid,
    parse_top,
    read_continuation,
    sign_continuation,
    unknown_parameters,
    verify_continuation,
)
from shared.api.problems import FieldError, invalid_request
from shared.services.inventory import device_software, device_vulnerabilities, software_devices

if TYPE_CHECKING:
    from shared.runtime import Runtime

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it unannotated

_AUTH = func.AuthLevel.FUNCTION
# Intune detectedApp ids are 44 hex characters; accept any plain id a row key can hold.
_SOFTWARE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


def _query(req: func.HttpRequest) -> tuple[int, Continuation | None]:
    errors: list[FieldError] = []
    unknown_parameters(req.params, ["top", "continuation"], errors)
    top = parse_top(req.params, errors)
    token = read_continuation(req.params, errors, text_only=True)  # the position is the last id shown
    if errors:
        raise invalid_request(errors)
    return top, token


def _software_id(value: str | None) -> str:
    if value is None or not _SOFTWARE_ID.match(value):
        raise invalid_request([FieldError(
            "softwareId", "invalidValue", "softwareId must be the id of a detected app as the API returned it",
            "Use an id from GET /api/integrations/{id}/tenants/{tenantId}/software.")])
    return value


async def _page(req: func.HttpRequest, rt: Runtime, items: list[dict[str, Any]], last: str | None, top: int,
                scope: dict[str, object]) -> func.HttpResponse:
    body: dict[str, object] = {"value": items}
    if last is not None:
        continuation = await sign_continuation(last, scope, rt.continuation_keys)
        body["nextLink"] = next_link(req, {"top": top, "continuation": continuation})
    return json_response(body)


@bp.route(route="integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software", methods=["GET"],
          auth_level=_AUTH)
@problem_boundary
async def list_device_software(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    device_id = parse_guid(req.route_params.get("deviceId"), "deviceId", "an Intune managed device")
    scope: dict[str, object] = {"kind": "deviceSoftware", "i": integration_id, "t": tenant_id, "d": device_id}
    top, token = _query(req)
    rt = await runtime.get()
    after = await verify_continuation(token, scope, rt.continuation_keys)
    items, last = await device_software(rt, integration_id, tenant_id, device_id, top=top, after=after)
    return await _page(req, rt, items, last, top, scope)


@bp.route(route="integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices", methods=["GET"],
          auth_level=_AUTH)
@problem_boundary
async def list_software_devices(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    software_id = _software_id(req.route_params.get("softwareId"))
    scope: dict[str, object] = {"kind": "softwareDevices", "i": integration_id, "t": tenant_id, "s": software_id}
    top, token = _query(req)
    rt = await runtime.get()
    after = await verify_continuation(token, scope, rt.continuation_keys)
    items, last = await software_devices(rt, integration_id, tenant_id, software_id, top=top, after=after)
    return await _page(req, rt, items, last, top, scope)


@bp.route(route="integrations/{id}/tenants/{tenantId}/devices/{deviceId}/vulnerabilities", methods=["GET"],
          auth_level=_AUTH)
@problem_boundary
async def list_device_vulnerabilities(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    device_id = parse_guid(req.route_params.get("deviceId"), "deviceId", "an Intune managed device")
    scope: dict[str, object] = {"kind": "deviceVulnerabilities", "i": integration_id, "t": tenant_id,
                                "d": device_id}
    top, token = _query(req)
    rt = await runtime.get()
    after = await verify_continuation(token, scope, rt.continuation_keys)
    items, last = await device_vulnerabilities(rt, integration_id, tenant_id, device_id, top=top, after=after)
    return await _page(req, rt, items, last, top, scope)
