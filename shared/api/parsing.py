"""From raw request parts (headers, body bytes, query values) to validated values, or an `ApiProblem`.

Pure functions over plain values, so the blueprint stays three moves and tests need no host. Every
problem with a request is collected and reported at once; nothing the client sent is echoed back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.api.models import (
    COMPLIANCE_STATES,
    MultiTenantRegistration,
    SingleTenantRegistration,
    is_guid,
)
from shared.api.problems import (
    ApiProblem,
    FieldError,
    body_too_large,
    errors_from_validation,
    invalid_request,
    malformed_json,
    unsupported_media_type,
)

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024
MAX_TOP = 1000
DEFAULT_TOP = 100
_MAX_TOKEN_CHARS = 4096
_MAX_SEARCH_CHARS = 100
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Where a person finds each value; used as the `action` of a validation error on that field.
PORTAL = "Azure portal > Microsoft Entra ID"
FIELD_HINTS: dict[str, str] = {
    "kind": "Send kind 'multiTenant' (an MSP with a partner app) or 'singleTenant' (one tenant).",
    "displayName": "Send a short name for this integration, 1-256 characters.",
    "partnerTenantId": f"Send the partner tenant's Tenant ID (a GUID) from {PORTAL} > Overview.",
    "tenantId": f"Send the tenant's Tenant ID (a GUID) from {PORTAL} > Overview.",
    "partnerAppId": f"Send the partner app's Application (client) ID from {PORTAL} > App registrations.",
    "syncAppId": f"Send the sync app's Application (client) ID from {PORTAL} > App registrations.",
    "partnerAppSecret": "Send the Value of a client secret of the partner app (App registrations > "
    "Certificates & secrets); the Value is shown only when the secret is created.",
    "syncAppSecret": "Send the Value of a client secret of the sync app (App registrations > "
    "Certificates & secrets); the Value is shown only when the secret is created.",
    "includeDefender": "Send true or false (JSON booleans, not strings).",
    "partnerAppSecretExpiresOn": "Send the secret's 'Expires' date from Certificates & secrets, in ISO 8601 "
    "with a zone, e.g. 2027-05-01T00:00:00Z, or leave the field out.",
    "syncAppSecretExpiresOn": "Send the secret's 'Expires' date from Certificates & secrets, in ISO 8601 "
    "with a zone, e.g. 2027-05-01T00:00:00Z, or leave the field out.",
    "tenantFilter": 'Send {"include": [GUIDs], "exclude": [GUIDs]}; a tenant may not be in both.',
    "include": "List customer Tenant IDs (GUIDs), at most 1000.",
    "exclude": "List customer Tenant IDs (GUIDs), at most 1000.",
    "tenantIds": "List Tenant IDs (GUIDs) of this integration's tenants, as GET .../tenants shows them.",
    "body": "Send a JSON object, as /api/openapi.json describes.",
}


# --- bodies -----------------------------------------------------------------------------------------


def _is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return False
    params = content_type.split(";")[1:]
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Which of two values would win differs between parsers; refuse rather than guess.
            raise ValueError("a key appears twice in one object")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json_object(
    content_type: str | None, body: bytes, *, required: bool = True, limit: int = MAX_BODY_BYTES
) -> dict[str, Any] | None:
    """The body as a JSON object. 415 for another media type, 413 past `limit`, 400 when not JSON.

    With `required=False` an empty body is None (POST .../sync takes an optional body).
    """
    if len(body) > limit:
        raise body_too_large(limit)
    if not body.strip():
        if not required:
            return None
        raise malformed_json("the body is empty")
    if not _is_json_media_type(content_type):
        raise unsupported_media_type()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed_json("it is not UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise malformed_json("it is nested too deeply") from None
    except json.JSONDecodeError as exc:
        # Position only: the message of JSONDecodeError does not quote the document, but say less anyway.
        raise malformed_json(f"syntax error at line {exc.lineno}, column {exc.colno}") from None
    except ValueError as exc:
        raise malformed_json(str(exc)) from None
    if not isinstance(data, dict):
        raise malformed_json("the top level is not an object")
    return data


def parse_model(model: type[M], data: Mapping[str, Any], *, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(errors_from_validation(exc, hints=FIELD_HINTS, prefix=prefix)) from None


def parse_registration(data: Mapping[str, Any]) -> MultiTenantRegistration | SingleTenantRegistration:
    """Pick the body's kind, then validate every field of that kind at once.

    CONTRACT's multi-tenant body is "the seed's five fields plus options": a body without `kind` is a
    multi-tenant one, unless it names a `tenantId` and no `partnerTenantId`.
    """
    kind = data.get("kind")
    if kind is None:
        kind = "singleTenant" if "tenantId" in data and "partnerTenantId" not in data else "multiTenant"
        data = {**data, "kind": kind}
    if kind == "multiTenant":
        return parse_model(MultiTenantRegistration, data)
    if kind == "singleTenant":
        return parse_model(SingleTenantRegistration, data)
    raise invalid_request(
        [
            FieldError(
                "kind", "invalidValue", "kind must be 'multiTenant' or 'singleTenant'", FIELD_HINTS["kind"]
            )
        ]
    )


# --- path and query ---------------------------------------------------------------------------------


def parse_guid(value: str | None, field_name: str, what: str) -> str:
    """A path id: must be a GUID (so '..', '%2F', quotes and OData never reach a store)."""
    if not is_guid(value):
        raise invalid_request(
            [
                FieldError(
                    field_name,
                    "invalidGuid",
                    f"{field_name} must be a GUID, the id of {what}",
                    f"Use the id of {what} as the API returned it, e.g. from GET /api/integrations.",
                )
            ]
        )
    assert value is not None
    return value.lower()


def _one(params: Mapping[str, str], name: str) -> str | None:
    # azure.functions keeps the last value of a repeated parameter; a key match is case-sensitive there,
    # so accept the documented spelling only.
    value = params.get(name)
    return None if value is None else value


def parse_top(params: Mapping[str, str], errors: list[FieldError]) -> int:
    raw = _one(params, "top")
    if raw is None or raw == "":
        return DEFAULT_TOP
    if not re.fullmatch(r"\d{1,4}", raw) or not 1 <= int(raw) <= MAX_TOP:
        errors.append(
            FieldError(
                "top",
                "outOfRange",
                f"top must be a whole number from 1 to {MAX_TOP}",
                f"Send ?top= between 1 and {MAX_TOP}, or leave it out for {DEFAULT_TOP}.",
            )
        )
        return DEFAULT_TOP
    return int(raw)


def parse_bool(params: Mapping[str, str], name: str, default: bool, errors: list[FieldError]) -> bool:
    raw = _one(params, name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    errors.append(
        FieldError(
            name, "invalidValue", f"{name} must be true or false", f"Send ?{name}=true or ?{name}=false."
        )
    )
    return default


def parse_search(params: Mapping[str, str], errors: list[FieldError]) -> str | None:
    raw = _one(params, "search")
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_SEARCH_CHARS or _CONTROL.search(raw):
        errors.append(
            FieldError(
                "search",
                "invalidValue",
                f"search must be 1-{_MAX_SEARCH_CHARS} characters without control characters",
                "Send a shorter search text.",
            )
        )
        return None
    return raw


def parse_compliance_state(params: Mapping[str, str], errors: list[FieldError]) -> str | None:
    raw = _one(params, "complianceState")
    if raw is None or raw == "":
        return None
    for state in COMPLIANCE_STATES:
        if raw.lower() == state.lower():
            return state
    errors.append(
        FieldError(
            "complianceState",
            "invalidValue",
            "complianceState must be one of " + ", ".join(COMPLIANCE_STATES),
            "Send one of Intune's compliance states, or leave it out.",
        )
    )
    return None


def wants_csv(params: Mapping[str, str], accept: str | None, errors: list[FieldError]) -> bool:
    """`?format=csv|json` decides; otherwise an Accept header that prefers text/csv over JSON."""
    fmt = _one(params, "format")
    if fmt:
        if fmt.lower() in ("csv", "json"):
            return fmt.lower() == "csv"
        errors.append(
            FieldError(
                "format",
                "invalidValue",
                "format must be csv or json",
                "Send ?format=csv for a CSV export, or leave it out for JSON.",
            )
        )
        return False
    if not accept:
        return False
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media, *params_ = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params_:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    csv_q = weights.get("text/csv", 0.0)
    json_q = max(weights.get("application/json", 0.0), weights.get("*/*", 0.0) if csv_q == 0 else 0.0)
    return csv_q > 0 and csv_q >= json_q


# --- continuation tokens ----------------------------------------------------------------------------


def _binding(scope: Mapping[str, object]) -> str:
    """A short digest of the query a token belongs to, so a token cannot be replayed with other filters."""
    text = json.dumps({k: scope[k] for k in sorted(scope)}, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_continuation(position: object, scope: Mapping[str, object]) -> str:
    payload = json.dumps({"v": 1, "p": position, "b": _binding(scope)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_continuation(
    params: Mapping[str, str], scope: Mapping[str, object], errors: list[FieldError]
) -> Any:
    """The store's position from `?continuation=`, None for the first page."""
    raw = _one(params, "continuation")
    if raw is None or raw == "":
        return None
    problem = FieldError(
        "continuation",
        "invalidContinuation",
        "continuation is not a token this API issued for this query",
        "Follow nextLink exactly as returned, with the same filters; or start again without continuation.",
    )
    if len(raw) > _MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(raw):
        errors.append(problem)
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        errors.append(problem)
        return None
    if (
        not isinstance(data, dict)
        or data.get("v") != 1
        or data.get("b") != _binding(scope)
        or "p" not in data
    ):
        errors.append(problem)
        return None
    return data["p"]


@dataclass(frozen=True)
class AssetQuery:
    """A validated devices/software query: what the store is asked, nothing the client typed unchecked."""

    top: int
    continuation: Any
    removed: bool
    search: str | None
    compliance_state: str | None
    csv: bool

    def scope(self, kind: str, integration_id: str, tenant_id: str) -> dict[str, object]:
        return {
            "kind": kind,
            "i": integration_id,
            "t": tenant_id,
            "r": self.removed,
            "s": self.search,
            "c": self.compliance_state,
        }


def parse_asset_query(
    params: Mapping[str, str], accept: str | None, *, kind: str, integration_id: str, tenant_id: str
) -> AssetQuery:
    errors: list[FieldError] = []
    allowed = {"top", "continuation", "search", "format", "code"}
    if kind == "devices":
        allowed |= {"removed", "complianceState"}
    unknown = sorted(k for k in params if k not in allowed)
    for name in unknown[:10]:
        shown = name if len(name) <= 40 and not _CONTROL.search(name) else name[:37] + "..."
        errors.append(
            FieldError(
                shown,
                "unknownParameter",
                f"{shown} is not a query parameter of this list",
                "Use top, continuation, search, format"
                + (", removed, complianceState." if kind == "devices" else "."),
            )
        )
    top = parse_top(params, errors)
    removed = parse_bool(params, "removed", False, errors) if kind == "devices" else False
    search = parse_search(params, errors)
    compliance = parse_compliance_state(params, errors) if kind == "devices" else None
    csv = wants_csv(params, accept, errors)
    scope = {"kind": kind, "i": integration_id, "t": tenant_id, "r": removed, "s": search, "c": compliance}
    continuation = decode_continuation(params, scope, errors)
    if errors:
        raise invalid_request(errors)
    return AssetQuery(top, continuation, removed, search, compliance, csv)


def parse_page(params: Mapping[str, str], scope: Mapping[str, object]) -> tuple[int, Any]:
    """`top` and the decoded continuation of a plain list (integrations, tenants)."""
    errors: list[FieldError] = []
    top = parse_top(params, errors)
    continuation = decode_continuation(params, scope, errors)
    if errors:
        raise invalid_request(errors)
    return top, continuation


__all__ = ["MAX_BODY_BYTES", "ApiProblem", "AssetQuery", "encode_continuation", "parse_asset_query"]
