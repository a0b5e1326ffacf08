"""The OpenAPI 3.1 document of the API in docs/api.md, generated from the models that validate and shape it.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits, so the components are the
models' own `model_json_schema` output under `#/components/schemas`.
https://spec.openapis.org/oas/v3.1.0
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import __version__
from shared.api import models as m
from shared.api.parsing import DEFAULT_TOP, MAX_TOP
from shared.entities import EXPOSED, entity

_REF = "#/components/schemas/{model}"
_REQUESTS: tuple[type[BaseModel], ...] = (
    m.MultiTenantRegistration,
    m.SingleTenantRegistration,
    m.SecretRotation,
    m.IntegrationPatch,
    m.SyncRequest,
)
_RESPONSES: tuple[type[BaseModel], ...] = (
    m.IntegrationOut,
    m.RegisteredOut,
    m.IntegrationList,
    m.TenantOut,
    m.TenantList,
    *(model for pair in m.ENTITY_MODELS.values() for model in pair),  # each listed entity's item and page
    m.AlertOut,
    m.AlertList,
    m.AuditEntryOut,
    m.AuditList,
    m.ExpiryCheckOut,
    m.SyncAccepted,
    m.PartnerSigninOut,
    m.ConsentOut,
    m.ConsentList,
    m.HealthOut,
    m.ProblemOut,
)


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    return {"$ref": _REF.format(model=model if isinstance(model, str) else model.__name__)}


def _json(model: type[BaseModel] | str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(m.ProblemOut)}},
    }


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path" or required,
        "schema": schema,
        "description": description,
    }


_GUID = {"type": "string", "format": "uuid", "pattern": m.GUID_PATTERN}
ID = _param("id", "path", _GUID, "The integration's id.")
TENANT_ID = _param("tenantId", "path", _GUID, "A customer tenant's id.")
DEVICE_ID = _param("deviceId", "path", _GUID, "An Intune managed device's id, as the devices list returns it.")
# functions/inventory.py accepts any plain id a row key can hold (Intune detectedApp ids are 44 hex characters).
SOFTWARE_ID = _param(
    "softwareId",
    "path",
    {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,200}$"},
    "A detected app's id, as the software list returns it.",
)
TOP = _param(
    "top",
    "query",
    {"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": DEFAULT_TOP},
    "Page size.",
)
CONTINUATION = _param(
    "continuation", "query", {"type": "string"}, "Opaque; follow nextLink rather than building it."
)
INTEGRATION_ORDER = _param(
    "orderBy", "query", {"type": "string", "enum": ["createdAt", "displayName"], "default": "createdAt"},
    "createdAt: oldest first; displayName: A to Z.")
TENANT_ORDER = _param(
    "orderBy", "query", {"type": "string", "enum": ["tenantId", "displayName", "lastSync"], "default": "tenantId"},
    "tenantId; displayName: A to Z, unnamed last; lastSync: the longest without a finished sync first (never "
    "synced before all). Orders other than tenantId read the integration's tenants whole for each page.")
SEARCH = _param("search", "query", {"type": "string", "maxLength": 100}, "Text the name must contain.")
FORMAT = _param(
    "format",
    "query",
    {"type": "string", "enum": ["json", "csv"]},
    "csv exports every page as CSV (so does 'Accept: text/csv').",
)

COMMON_ERRORS = {
    "400": _problem("The request is not valid; errors[] names each field."),
    "401": {"description": "The function key is missing or wrong (answered by the Functions host)."},
    "500": _problem("Unexpected error; the detail carries a reference to search the logs for."),
}
BODY_ERRORS = {
    "413": _problem("The body is larger than 64 KiB."),
    "415": _problem("The body is not application/json."),
}
NOT_FOUND = {"404": _problem("No integration (or tenant) with that id.")}


def _op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    anonymous: bool = False,
    errors: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "parameters": params or [],
        "responses": dict(responses),
    }
    if errors:
        op["responses"].update(COMMON_ERRORS)
    if body is not None:
        op["requestBody"] = body
    if anonymous:
        op["security"] = []
    return op


def _paths() -> dict[str, Any]:
    registration = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [_ref(m.MultiTenantRegistration), _ref(m.SingleTenantRegistration)],
                    "discriminator": {
                        "propertyName": "kind",
                        "mapping": {
                            "multiTenant": _REF.format(model="MultiTenantRegistration"),
                            "singleTenant": _REF.format(model="SingleTenantRegistration"),
                        },
                    },
                }
            }
        },
    }
    asset_params = [ID, TENANT_ID, TOP, CONTINUATION, SEARCH, FORMAT]

    def entity_params(kind: str) -> list[dict[str, Any]]:
        """An entity's list parameters: the common ones, then its declared filters (shared.entities)."""
        params = list(asset_params)
        for spec in entity(kind).filters:
            schema: dict[str, Any] = ({"type": "boolean"} if spec.kind == "bool"
                                      else {"type": "string", "enum": list(spec.values)})
            if spec.kind == "bool" and spec.default is not None:
                schema["default"] = spec.default
            params.append(_param(spec.param, "query", schema, spec.description))
        return params

    def csv_or(model: type[BaseModel], description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {
                "application/json": {"schema": _ref(model)},
                "text/csv": {"schema": {"type": "string"}},
            },
        }

    return {
        "/api/integrations": {
            "post": _op(
                "registerIntegration",
                "Register an integration; its credentials are tried first.",
                {
                    "201": {
                        **_json(m.RegisteredOut, "Registered; the first full sync is queued."),
                        "headers": {
                            "Location": {
                                "schema": {"type": "string"},
                                "description": "/api/integrations/{id}",
                            }
                        },
                    },
                    "409": _problem(
                        "These apps are already registered for this tenant, or being registered by another "
                        "request, or (singleTenant) a multi-tenant integration already syncs the tenant with "
                        "this sync app: alreadyRegistered, errors[] names the integration."
                    ),
                    "422": _problem(
                        "Microsoft refused the credentials: invalidSecret, secretExpired, "
                        "appNotFoundInTenant, consentMissing, permissionMissing, tenantNotFound or "
                        "unreachable, each with an action (type credentials-rejected); or an *ExpiresOn "
                        "date is in the past: dateInPast (type invalid-request)."
                    ),
                    **BODY_ERRORS,
                },
                tag="integrations",
                body=registration,
            ),
            "get": _op(
                "listIntegrations",
                "List integrations.",
                {"200": _json(m.IntegrationList, "A page of integrations.")},
                tag="integrations",
                params=[TOP, CONTINUATION, INTEGRATION_ORDER],
            ),
        },
        "/api/integrations/{id}": {
            "get": _op(
                "getIntegration",
                "One integration.",
                {"200": _json(m.IntegrationOut, "The integration, with its ETag header."), **NOT_FOUND},
                tag="integrations",
                params=[ID],
            ),
            "patch": _op(
                "changeIntegration",
                "Change the name, tenant filter (multiTenant), includeDefender, collect or status (active, "
                "disabled); fields left out stay. With If-Match (the ETag of GET), only if nobody changed it "
                "since.",
                {
                    "200": _json(m.IntegrationOut, "The changed integration, with its new ETag header."),
                    **NOT_FOUND,
                    "409": _problem("status active on an integration deleted with DELETE (integrationDisabled)."),
                    "412": _problem("If-Match names a version that is no longer current (changedMeanwhile)."),
                    **BODY_ERRORS,
                },
                tag="integrations",
                params=[ID, _param("If-Match", "header", {"type": "string"},
                                   "An ETag from GET /api/integrations/{id}; absent: change whatever is current.")],
                body={"required": True, "content": {"application/json": {"schema": _ref(m.IntegrationPatch)}}},
            ),
            "delete": _op(
                "deleteIntegration",
                "Stop syncing and delete the integration's secrets from Key Vault.",
                {
                    "204": {"description": "Removed (status disabled); assets kept unless purgeAssets=true."},
                    **NOT_FOUND,
                },
                tag="integrations",
                params=[
                    ID,
                    _param(
                        "purgeAssets",
                        "query",
                        {"type": "boolean", "default": False},
                        "Also delete the integration's record, tenants, devices and software.",
                    ),
                ],
            ),
        },
        "/api/integrations/{id}/secrets": {
            "put": _op(
                "rotateSecrets",
                "Give new secrets; they are tried before they replace the old ones.",
                {
                    "200": _json(m.IntegrationOut, "The secrets were replaced."),
                    **NOT_FOUND,
                    "409": _problem(
                        "The integration was removed (integrationDisabled), or its secret is deleted in Key Vault "
                        "and not purged (secretDeleted); nothing changed."
                    ),
                    "422": _problem("Microsoft refused a new secret, or an *ExpiresOn date is in the past "
                                    "(dateInPast); nothing changed."),
                    **BODY_ERRORS,
                },
                tag="integrations",
                params=[ID],
                body={"required": True, "content": {"application/json": {"schema": _ref(m.SecretRotation)}}},
            ),
        },
        "/api/integrations/{id}/sync": {
            "post": _op(
                "syncIntegration",
                "Queue a sync of every tenant, or of the tenants named.",
                {
                    "202": _json(m.SyncAccepted, "Queued."),
                    **NOT_FOUND,
                    "409": _problem("The integration was removed."),
                    **BODY_ERRORS,
                },
                tag="integrations",
                params=[ID],
                body={"required": False, "content": {"application/json": {"schema": _ref(m.SyncRequest)}}},
            ),
        },
        "/api/integrations/{id}/tenants": {
            "get": _op(
                "listTenants",
                "Per-tenant sync status.",
                {
                    "200": _json(m.TenantList, "A page of tenants."),
                    **NOT_FOUND,
                },
                tag="tenants",
                params=[ID, TOP, CONTINUATION, TENANT_ORDER],
            ),
        },
        **{
            f"/api/integrations/{{id}}/tenants/{{tenantId}}/{e.name}": {
                "get": _op(
                    f"list{e.name[0].upper()}{e.name[1:]}",
                    e.summary,
                    {
                        "200": csv_or(m.ENTITY_MODELS[e.name][1], f"A page of {e.name}, or all of them as CSV."),
                        **NOT_FOUND,
                    },
                    tag="assets",
                    params=entity_params(e.name),
                ),
            }
            for e in EXPOSED
        },
        "/api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software": {
            "get": _op(
                "listDeviceSoftware",
                "The software installed on one device (from the Intune export, or per-app listing).",
                {
                    "200": _json(m.SoftwareList, "A page of the device's software titles."),
                    "404": _problem("No integration, tenant or device with that id."),
                },
                tag="assets",
                params=[ID, TENANT_ID, DEVICE_ID, TOP, CONTINUATION],
            ),
        },
        "/api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/vulnerabilities": {
            "get": _op(
                "listDeviceVulnerabilities",
                "The vulnerabilities Defender for Endpoint lists for one device's machine (joined by Entra "
                "device id); empty for a device Defender does not know or when vulnerabilities are not collected.",
                {
                    "200": _json(m.VulnerabilityList, "A page of the device's vulnerabilities, by id."),
                    "404": _problem("No integration, tenant or device with that id."),
                },
                tag="assets",
                params=[ID, TENANT_ID, DEVICE_ID, TOP, CONTINUATION],
            ),
        },
        "/api/integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices": {
            "get": _op(
                "listSoftwareDevices",
                "The devices on which one detected app is installed.",
                {
                    "200": _json(m.DeviceList, "A page of the devices that have the app."),
                    "404": _problem("No integration, tenant or software title with that id."),
                },
                tag="assets",
                params=[ID, TENANT_ID, SOFTWARE_ID, TOP, CONTINUATION],
            ),
        },
        "/api/integrations/{id}/partner-signin": {
            "post": _op(
                "startPartnerSignin",
                "Start the partner admin's sign-in (Entra device code flow, Partner Center user_impersonation).",
                {
                    "202": _json(m.PartnerSigninOut, "Pending: open verificationUri and enter userCode."),
                    **NOT_FOUND,
                    "409": _problem("The integration is single-tenant or was removed."),
                    "422": _problem("Entra ID refused to start the sign-in (errors[] names the AADSTS code)."),
                },
                tag="gdap",
                params=[ID],
            ),
            "get": _op(
                "getPartnerSignin",
                "Report the sign-in: pending, done or failed (polls Entra at most once per interval).",
                {"200": _json(m.PartnerSigninOut, "The sign-in's state."), **NOT_FOUND},
                tag="gdap",
                params=[ID],
            ),
        },
        "/api/integrations/{id}/tenants/{tenantId}/consent": {
            "post": _op(
                "consentTenant",
                "Consent the sync app in one customer through Partner Center, then re-diagnose and sync it.",
                {
                    "200": _json(m.ConsentOut, "Consented (or already consented); the tenant's sync is queued."),
                    **NOT_FOUND,
                    "409": _problem("No partner admin has signed in (signInRequired), or the sign-in lapsed "
                                    "(signInExpired)."),
                    "422": _problem("Partner Center refused the consent; errors[] names the cause. Nothing "
                                    "else changed."),
                },
                tag="gdap",
                params=[ID, TENANT_ID],
            ),
        },
        "/api/integrations/{id}/consent": {
            "post": _op(
                "consentAll",
                "Consent the sync app in every customer whose verdict is consentMissing or permissionMissing.",
                {
                    "200": _json(m.ConsentList, "One result per customer tried."),
                    **NOT_FOUND,
                    "409": _problem("No partner admin has signed in, or the sign-in lapsed."),
                },
                tag="gdap",
                params=[ID],
            ),
        },
        "/api/audit": {
            "get": _op(
                "listAudit",
                "The audit trail, newest first: every change asked of the API (made or refused), who asked, "
                "from where, and the outcome; records outlive the integration they describe.",
                {"200": csv_or(m.AuditList, "A page of audit records, or all of them as CSV."),
                 "400": _problem("A parameter is not valid (an unknown one, a date without a zone).")},
                tag="audit",
                params=[
                    TOP,
                    CONTINUATION,
                    _param("integrationId", "query", _GUID, "Only the records of this integration."),
                    _param("since", "query", {"type": "string", "format": "date-time"}, "Records at or after."),
                    _param("until", "query", {"type": "string", "format": "date-time"}, "Records before."),
                    FORMAT,
                ],
            ),
        },
        "/api/alerts": {
            "get": _op(
                "listAlerts",
                "Raised secret-expiry and credential alerts.",
                {
                    "200": _json(m.AlertList, "A page of alerts."),
                },
                tag="alerts",
                params=[
                    TOP,
                    CONTINUATION,
                    _param("integrationId", "query", _GUID, "Only the alerts of this integration."),
                    _param(
                        "status",
                        "query",
                        {"type": "string", "enum": ["open", "resolved"]},
                        "Only open or only resolved alerts; both when left out.",
                    ),
                ],
            ),
        },
        "/api/alerts/check": {
            "post": _op(
                "checkAlerts",
                "Run the secret-expiry check now, as the timer does: one open alert per secret (the most "
                "urgent mark reached), stale ones resolved, undelivered ones posted to the webhook. Takes "
                "no body.",
                {
                    "202": {
                        **_json(m.ExpiryCheckOut, "The check ran; what it did."),
                        "headers": {
                            "Location": {"schema": {"type": "string"}, "description": "/api/alerts?status=open"}
                        },
                    },
                },
                tag="alerts",
            ),
        },
        "/api/health": {
            "get": _op(
                "getHealth",
                "Whether storage and Key Vault answer.",
                {"200": _json(m.HealthOut, "Health report.")},
                tag="health",
                anonymous=True,
                errors=False,
            ),
        },
        "/api/openapi.json": {
            "get": _op(
                "getOpenApi",
                "This document.",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                tag="health",
                anonymous=True,
                errors=False,
            ),
        },
    }


@lru_cache(maxsize=1)
def build_openapi() -> dict[str, Any]:
    """The whole document; built once per process (about 20 ms), then served from memory."""
    _, schemas = models_json_schema(
        [(model, "validation") for model in _REQUESTS] + [(model, "serialization") for model in _RESPONSES],
        ref_template=_REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memsync",
            "version": __version__,
            "description": "Syncs MSP customer tenants' Intune devices and software and Defender health "
            "into Table Storage. Errors are RFC 9457 problem documents (application/problem+json).",
        },
        "servers": [{"url": "/"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "An Azure Functions function or host key.",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The same key as a query parameter.",
                },
            },
        },
    }
