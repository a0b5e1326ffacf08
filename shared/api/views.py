"""Records as the API shows them: the fields of docs/api.md, camelCase, never a secret value."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from shared.api.models import (
    ENTITY_MODELS,
    AccessOut,
    ErrorOut,
    IntegrationOut,
    PartnerSigninOut,
    SecretInfo,
    TenantCountsOut,
    TenantFilterOut,
    TenantOut,
)
from shared.entities import OPTIONAL, collects, entity
from shared.errors import FieldProblem
from shared.models import CustomerTenant, ErrorModel, Integration, IntegrationKind, TenantStatus
from shared.services.diagnosis import current_access
from shared.services.tenant_sync import lease_expires

if TYPE_CHECKING:
    from shared.services.consent import ConsentResult


def _error(error: ErrorModel | None) -> ErrorOut | None:
    return None if error is None else ErrorOut(code=error.code, message=error.message, action=error.action)


def integration_etag(integration: Integration) -> str:
    """A weak entity tag of the integration as the API shows it (RFC 9110 8.8.3): it changes exactly when
    GET's answer would, whoever changed the record (a person, discovery, the expiry check)."""
    view = json.dumps(integration_view(integration), sort_keys=True, separators=(",", ":"), default=str)
    return 'W/"' + hashlib.sha256(view.encode()).hexdigest()[:32] + '"'


def if_match_admits(header: str | None, current_etag: str) -> bool:
    """Whether an If-Match header admits the current tag (weak comparison, as RFC 9110 13.1.1 allows for
    the tags memsync sends): absent or `*` admits any; otherwise one listed tag must equal it."""
    if header is None or header.strip() == "*":
        return True
    opaque = current_etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(",") if tag.strip())


def integration_view(integration: Integration) -> dict[str, Any]:
    view = IntegrationOut(
        id=integration.id,
        kind=integration.kind.value,
        display_name=integration.display_name,
        status=integration.status.value,
        partner_tenant_id=integration.partner_tenant_id,
        tenant_id=integration.tenant_id,
        partner_app_id=integration.partner_app_id,
        sync_app_id=integration.sync_app_id,
        include_defender=integration.include_defender,
        collect=[e.name for e in OPTIONAL if collects(e, include_defender=integration.include_defender,
                                                       collect=integration.collect)],
        tenant_filter=TenantFilterOut.model_validate(integration.tenant_filter.model_dump()),
        secrets=[
            SecretInfo(
                name=s.name, app_id=s.app_id, expires_on=s.expires_on, expires_on_source=s.expires_on_source
            )
            for s in integration.secrets
        ],
        created_at=integration.created_at,
        error=_error(integration.error),
    )
    # docs/api.md: "partnerTenantId or tenantId" - a field that does not apply to the kind is left out.
    multi = integration.kind == IntegrationKind.MULTI_TENANT
    omit = {"tenantId"} if multi else {"partnerTenantId", "partnerAppId"}
    data = view.model_dump(mode="json", by_alias=True)
    return {k: v for k, v in data.items() if k not in omit}


def access_view(tenant: CustomerTenant) -> dict[str, Any] | None:
    """The tenant's access diagnosis, brought up to date with its last sync (docs/gdap.md)."""
    access = current_access(tenant)
    if access is None:
        return None
    data = access.model_dump(mode="json", by_alias=True, exclude={"defender_included", "sync_app_id"})
    for relationship in data["relationship"]["gdap"]:
        relationship.pop("roleIds", None)
    return AccessOut.model_validate(data).model_dump(mode="json", by_alias=True)


def tenant_view(tenant: CustomerTenant) -> dict[str, Any]:
    view = TenantOut(
        tenant_id=tenant.tenant_id,
        display_name=tenant.display_name,
        default_domain_name=tenant.default_domain_name,
        status=tenant.status.value,
        last_sync_started_at=tenant.last_sync_started_at,
        last_sync_finished_at=tenant.last_sync_finished_at,
        last_success_at=tenant.last_success_at,
        counts=TenantCountsOut.model_validate(
            {**tenant.counts.model_dump(exclude={"entities", "facts"}), **tenant.counts.entities,
             **({"facts": tenant.counts.facts} if tenant.counts.facts else {})}),
        error=_error(tenant.error),
        lease_until=lease_expires(tenant) if tenant.status == TenantStatus.SYNCING else None,
    ).model_dump(mode="json", by_alias=True)
    view["access"] = access_view(tenant)
    return view


def registered_view(integration: Integration, warnings: list[FieldProblem]) -> dict[str, Any]:
    """A registration's answer: the integration, plus `warnings` (optional permissions the app lacks)."""
    return {**integration_view(integration), "warnings": [
        {"field": w.field, "code": w.code.value, "message": w.message, "action": w.action} for w in warnings]}


def consent_view(result: ConsentResult) -> dict[str, Any]:
    """One tenant's consent outcome, with the tenant's access as recorded afterwards."""
    return {
        "tenantId": result.tenant_id,
        "status": result.status,
        "queued": result.queued,
        "access": access_view(result.tenant) if result.tenant is not None else None,
        "error": result.error.to_json() if result.error is not None else None,
    }


def signin_view(integration: Integration, consents: list[ConsentResult] | None = None) -> dict[str, Any]:
    state = integration.partner_signin
    data: dict[str, Any] = {"integrationId": integration.id, "status": "notStarted",
                            "autoConsent": integration.auto_consent}
    if state is not None:
        data |= state.model_dump(mode="json", by_alias=True, exclude={"started_at", "next_poll_at"})
        if state.status != "pending":
            for name in ("userCode", "verificationUri", "message", "expiresAt", "interval"):
                data.pop(name, None)
    if consents is not None:
        data["consents"] = [consent_view(c) for c in consents]
    return PartnerSigninOut.model_validate(data).model_dump(mode="json", by_alias=True, exclude_none=True)


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]




def csv_columns(kind: str) -> list[str]:
    """An entity's CSV header: its output fields, an object field spread into `field.member` columns
    (`shared.entities.Entity.nested`)."""
    expand = entity(kind).nested
    columns = [c for c in _aliases(ENTITY_MODELS[kind][0]) if c not in expand]
    for name, subs in expand.items():
        columns += [f"{name}.{sub}" for sub in subs]
    return columns


DEVICE_COLUMNS = csv_columns("devices")
SOFTWARE_COLUMNS = csv_columns("software")

# A cell that a spreadsheet would run as a formula (OWASP "CSV injection"): prefix it with a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _row(asset: Mapping[str, Any], columns: list[str]) -> list[str]:
    row = []
    for column in columns:
        head, _, sub = column.partition(".")
        value = asset.get(head)
        if sub:
            value = value.get(sub) if isinstance(value, Mapping) else None
        row.append(_cell(value))
    return row


class CsvWriter:
    """CSV text, a header then one row per asset; `chunk()` hands out what was written so far."""

    def __init__(self, columns: list[str]) -> None:
        self._columns = columns
        self._buffer = io.StringIO()
        # A byte-order mark first: Excel opens a CSV without one in the machine's ANSI code page and garbles
        # every non-ASCII name (Microsoft Support, "Opening CSV UTF-8 files correctly in Excel").
        self._buffer.write("\ufeff")
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")  # RFC 4180 line ends
        self._writer.writerow(columns)

    def write(self, assets: Iterable[Mapping[str, Any]]) -> None:
        for asset in assets:
            self._writer.writerow(_row(asset, self._columns))

    def text(self) -> str:
        return self._buffer.getvalue()
