"""Per-device installed software: what is on a device, and which devices have a detected app.

`GET /api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software` and
`GET /api/integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices`, lists shaped like the rest
of the API (`{"value": [...], "nextLink"}`, `?top=` 1-1000, default 100), errors as problem documents.
The answers come from the inventory the sync stored (shared.services.inventory).
"""

from __future__ import annotations

import re
from typing import Any

import azure.functions as func

from functions.http_problems import json_response, next_link, problem_boundary
from functions.runtime import runtime
from shared.api.parsing import decode_continuation, encode_continuation, parse_guid, parse_top
from shared.api.problems import FieldError, invalid_request
from shared.services.inventory import device_software, software_devices

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it unannotated

_AUTH = func.AuthLevel.FUNCTION
# Intune detectedApp ids are 44 hex characters; accept any plain id a row key can hold.
_SOFTWARE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
_ALLOWED = {"top", "continuation", "code"}


def _query(req: func.HttpRequest, scope: dict[str, object]) -> tuple[int, Any]:
    errors: list[FieldError] = []
    for name in sorted(k for k in req.params if k not in _ALLOWED)[:10]:
        shown = name if len(name) <= 40 else name[:37] + "..."
        errors.append(FieldError(shown, "unknownParameter", f"{shown} is not a query parameter of this list",
                                 "Use top and continuation."))
    top = parse_top(req.params, errors)
    after = decode_continuation(req.params, scope, errors)
    if after is not None and not isinstance(after, str):
        after = None
    if errors:
        raise invalid_request(errors)
    return top, after


def _software_id(value: str | None) -> str:
    if value is None or not _SOFTWARE_ID.match(value):
        raise invalid_request([FieldError(
            "softwareId", "invalidValue", "softwareId must be the id of a detected app as the API returned it",
            "Use an id from GET /api/integrations/{id}/tenants/{tenantId}/software.")])
    return value


def _page(req: func.HttpRequest, items: list[dict[str, Any]], last: str | None, top: int,
          scope: dict[str, object]) -> func.HttpResponse:
    body: dict[str, object] = {"value": items}
    if last is not None:
        body["nextLink"] = next_link(req, {"top": top, "continuation": encode_continuation(last, scope)})
    return json_response(body)


@bp.route(route="integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software", methods=["GET"],
          auth_level=_AUTH)
@problem_boundary
async def list_device_software(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    device_id = parse_guid(req.route_params.get("deviceId"), "deviceId", "an Intune managed device")
    scope: dict[str, object] = {"kind": "deviceSoftware", "i": integration_id, "t": tenant_id, "d": device_id}
    top, after = _query(req, scope)
    items, last = await device_software(await runtime.get(), integration_id, tenant_id, device_id,
                                        top=top, after=after)
    return _page(req, items, last, top, scope)


@bp.route(route="integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices", methods=["GET"],
          auth_level=_AUTH)
@problem_boundary
async def list_software_devices(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    software_id = _software_id(req.route_params.get("softwareId"))
    scope: dict[str, object] = {"kind": "softwareDevices", "i": integration_id, "t": tenant_id, "s": software_id}
    top, after = _query(req, scope)
    items, last = await software_devices(await runtime.get(), integration_id, tenant_id, software_id,
                                         top=top, after=after)
    return _page(req, items, last, top, scope)
