"""memsync's domain records: integrations, their secrets' metadata, customer tenants.

These are what the stores keep and the services pass around. The HTTP API's request and response
models live in `shared.api` and are built from these; no record here ever holds a secret value.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ErrorInfo


class Camel(BaseModel):
    """Records serialise with CONTRACT's camelCase names."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=lambda s: _camel(s), extra="ignore")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class IntegrationKind(StrEnum):
    MULTI_TENANT = "multiTenant"
    SINGLE_TENANT = "singleTenant"


class IntegrationStatus(StrEnum):
    ACTIVE = "active"
    ERROR = "error"
    DISABLED = "disabled"


class AppRole(StrEnum):
    """Which of an integration's apps a secret belongs to."""

    PARTNER = "partner"
    SYNC = "sync"


ExpiresOnSource = Literal["given", "graph", "assumed"]


class SecretRef(Camel):
    """Where a secret lives in Key Vault and when it expires; never its value."""

    name: str  # the Key Vault secret name
    role: AppRole
    app_id: str
    expires_on: datetime | None = None
    expires_on_source: ExpiresOnSource = "assumed"
    version: str | None = None  # the Key Vault version now in use


class ErrorModel(Camel):
    code: str
    message: str
    action: str

    @classmethod
    def of(cls, info: ErrorInfo | None) -> ErrorModel | None:
        return None if info is None else cls(code=info.code.value, message=info.message, action=info.action)


class TenantFilter(Camel):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    def admits(self, tenant_id: str) -> bool:
        tid = tenant_id.lower()
        if tid in (t.lower() for t in self.exclude):
            return False
        return not self.include or tid in (t.lower() for t in self.include)


class Integration(Camel):
    id: str
    kind: IntegrationKind
    display_name: str
    status: IntegrationStatus = IntegrationStatus.ACTIVE
    partner_tenant_id: str | None = None  # multi-tenant
    tenant_id: str | None = None  # single-tenant
    partner_app_id: str | None = None
    sync_app_id: str
    include_defender: bool = True
    tenant_filter: TenantFilter = Field(default_factory=TenantFilter)
    secrets: list[SecretRef] = Field(default_factory=list)
    created_at: datetime
    error: ErrorModel | None = None

    @property
    def home_tenant_id(self) -> str:
        """The tenant whose apps these are: the partner tenant, or the single tenant."""
        tid = self.partner_tenant_id or self.tenant_id
        assert tid is not None
        return tid

    def secret(self, role: AppRole) -> SecretRef | None:
        return next((s for s in self.secrets if s.role == role), None)


class TenantStatus(StrEnum):
    PENDING = "pending"
    SYNCING = "syncing"
    OK = "ok"
    ERROR = "error"
    EXCLUDED = "excluded"


class TenantCounts(Camel):
    devices: int = 0
    software: int = 0
    defender_machines: int = 0


class CustomerTenant(Camel):
    """A customer tenant of an integration and its sync status (CONTRACT's tenant status fields)."""

    integration_id: str
    tenant_id: str
    display_name: str | None = None
    default_domain_name: str | None = None
    status: TenantStatus = TenantStatus.PENDING
    discovered_by: list[str] = Field(default_factory=list)  # partnerCenter, contracts, gdap, single
    relationship: str | None = None  # Partner Center relationshipToPartner, when known
    last_sync_started_at: datetime | None = None
    last_sync_finished_at: datetime | None = None
    last_success_at: datetime | None = None
    counts: TenantCounts = Field(default_factory=TenantCounts)
    error: ErrorModel | None = None
    missing_since: datetime | None = None  # no longer listed by discovery
    last_run_id: str | None = None
