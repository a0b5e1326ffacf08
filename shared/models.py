"""memsync's domain records: integrations, their secrets' metadata, customer tenants.

These are what the stores keep and the services pass around. The HTTP API's request and response
models live in `shared.api` and are built from these; no record here ever holds a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.errors import ErrorInfo


class Camel(BaseModel):
    """Records serialise with the API's camelCase names (docs/api.md)."""

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
    # The partner admin's delegated refresh token (Partner Center user_impersonation), from the
    # partner sign-in (docs/gdap.md). Not an app secret: it renews on use and lapses after 90 idle days.
    PARTNER_SIGNIN = "partnerSignin"


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
    """An `ErrorInfo` as records store it (the code kept as text, so an unknown code still loads)."""

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


# -- what registering and re-keying are given (the HTTP API's request bodies, as the domain sees them) --


@dataclass(frozen=True)
class AppSecret:
    """An app id and a new client secret of it, held in memory only until Key Vault has it."""

    app_id: str
    secret: SecretStr
    expires_on: datetime | None = None  # as the person read it in Certificates & secrets; None: unknown


@dataclass(frozen=True)
class NewIntegration:
    """An integration to register: the tenant that owns the apps, the sync app and, for an MSP, the partner app."""

    home_tenant_id: str
    sync_app: AppSecret
    partner_app: AppSecret | None = None  # present: multi-tenant (an MSP listing its customers)
    display_name: str | None = None
    include_defender: bool = True
    collect: list[str] | None = None  # optional entities to collect; None: every one
    tenant_filter: TenantFilter = field(default_factory=lambda: TenantFilter())
    auto_consent: bool = False

    @property
    def kind(self) -> IntegrationKind:
        return IntegrationKind.MULTI_TENANT if self.partner_app is not None else IntegrationKind.SINGLE_TENANT


@dataclass(frozen=True)
class IntegrationChange:
    """What a person changes on a registered integration; None (and `collect_given` False) leaves it."""

    display_name: str | None = None
    tenant_filter: TenantFilter | None = None
    include_defender: bool | None = None
    collect: list[str] | None = None
    collect_given: bool = False  # `collect` was in the request (None then means: every optional entity)
    status: Literal["active", "disabled"] | None = None

    def fields(self) -> list[str]:
        """The request fields this change sets, for messages and the audit of what changed."""
        named = {"displayName": self.display_name, "tenantFilter": self.tenant_filter,
                 "includeDefender": self.include_defender, "status": self.status}
        return [k for k, v in named.items() if v is not None] + (["collect"] if self.collect_given else [])


@dataclass(frozen=True)
class NewSecrets:
    """New secret values for an integration's apps (each optional), and their stated expiry dates."""

    partner_app_secret: SecretStr | None = None
    partner_app_secret_expires_on: datetime | None = None
    sync_app_secret: SecretStr | None = None
    sync_app_secret_expires_on: datetime | None = None


SigninStatus = Literal["pending", "done", "failed", "expired"]


class PartnerSignin(Camel):
    """The partner admin's sign-in through Entra's device code flow (never the device code itself,
    which waits in Key Vault while the sign-in is pending, nor the refresh token)."""

    status: SigninStatus
    started_at: datetime
    user_code: str | None = None  # shown to the admin; useless without the device code
    verification_uri: str | None = None
    message: str | None = None
    expires_at: datetime | None = None  # of the device code
    interval: int = 5
    next_poll_at: datetime | None = None
    signed_in_at: datetime | None = None
    signed_in_as: str | None = None  # the admin's UPN, from the token
    refresh_expires_on: datetime | None = None  # 90 days after the last use (sliding)
    error: ErrorModel | None = None


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
    # The optional entities it collects (`shared.entities.COLLECTABLE`); None: every one of them.
    collect: list[str] | None = None
    tenant_filter: TenantFilter = Field(default_factory=TenantFilter)
    secrets: list[SecretRef] = Field(default_factory=list)
    created_at: datetime
    error: ErrorModel | None = None
    # docs/gdap.md: consent in every customer that needs it once the partner admin has signed in.
    auto_consent: bool = False
    partner_signin: PartnerSignin | None = None

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
    skipped: int = 0  # listed records memsync could not read; each kept its stored copy
    entities: dict[str, int] = Field(default_factory=dict)  # other listed entities present, by name
    # Per entity with declared facts (`shared.entities.Entity.facts`), its figures summed over the tenant.
    facts: dict[str, dict[str, int]] = Field(default_factory=dict)


class CustomerTenant(Camel):
    """A customer tenant of an integration and its sync status (docs/api.md, Tenant status)."""

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
    # The sync attempt that holds the `syncing` lease: a token drawn per claim (a redelivered job is a
    # new attempt under the same run id), and when that lease lapses if nobody releases it.
    lease_id: str | None = None
    lease_until: datetime | None = None
    access: TenantAccess | None = None  # the access diagnosis (docs/gdap.md)


# -- access diagnosis (docs/gdap.md) ---------------------------------------------------------------


class GdapRelationship(Camel):
    """One GDAP relationship with a customer, as Graph's delegatedAdminRelationship lists it."""

    id: str
    display_name: str | None = None
    status: str | None = None
    end_date_time: datetime | None = None
    roles: list[str] = Field(default_factory=list)  # role names where known, else template ids
    role_ids: list[str] = Field(default_factory=list)


class RelationshipFacts(Camel):
    partner_center: str | None = None  # Partner Center relationshipToPartner
    dap: bool = False  # a DAP contract (Graph /contracts)
    gdap: list[GdapRelationship] = Field(default_factory=list)
    listed: bool = True  # False when the last complete discovery no longer listed the customer


class TokenFacts(Camel):
    """Whether the sync app got a token in the tenant, and which application permissions it held."""

    ok: bool | None = None
    roles: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    error: str | None = None  # the error code when Entra refused
    source: Literal["sync", "probe", "none"] = "none"
    checked_at: datetime | None = None


class ConsentFacts(Camel):
    """The last consent memsync made in the tenant through Partner Center."""

    status: Literal["granted", "failed"]
    at: datetime
    error: ErrorModel | None = None


class TenantAccess(Camel):
    """How memsync reaches a customer tenant, and the one verdict (with its fix) that follows."""

    verdict: str
    action: str | None = None
    relationship: RelationshipFacts = Field(default_factory=RelationshipFacts)
    token: TokenFacts = Field(default_factory=TokenFacts)
    intune: str = "unknown"  # ok, notLicensed, unknown
    defender: str = "unknown"  # ok, unavailable, notIncluded, unknown
    defender_included: bool = True
    sync_app_id: str = ""
    consent: ConsentFacts | None = None
    checked_at: datetime


CustomerTenant.model_rebuild()
