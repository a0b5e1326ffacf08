"""Per-customer access diagnosis: how the customer relates to the partner, whether the sync app gets in,
and the one verdict (with the action that fixes it) that follows.

Since GDAP, the partner's AdminAgents group no longer carries a multi-tenant app into a customer: the app
must be consented in each customer, which the partner can do through Partner Center's
`applicationconsents` when it holds an admin relationship there (DAP, or GDAP with Cloud Application
Administrator, Privileged Role Administrator or Global Administrator). So the verdict weighs:

* the relationship (stored by the fan-out, listed once per integration): Partner Center's
  `relationshipToPartner`, a DAP contract (Graph `/contracts`), the GDAP relationships (Graph
  `delegatedAdminRelationships` of that customer: status, end date, roles);
* the sync's own outcome, read from the tenant record the sync writes (its error code and status), or a
  token probe memsync made after a consent (roles in the app-only token), whichever is newer.

`diagnose` is pure; the view recomputes it with the tenant's current sync outcome (`current_access`), so
the verdict never lags the last sync. Verdicts: `ok`, `consentMissing`, `permissionMissing`,
`noRelationship`, `unsupportedRelationship`, `intuneNotLicensed`, and `pending` (not synced yet) or
`unknown` (a transient or integration-wide failure; the tenant's `error` says which).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.auth import token_roles
from shared.clients.gdap import CONSENT_ROLES, DelegatedAdminRelationships, allows_consent, is_active
from shared.clients.graph import GraphClient
from shared.errors import ActionableError, ErrorCode
from shared.http import ApiError, Budget
from shared.models import (
    AppRole,
    CustomerTenant,
    ErrorModel,
    Integration,
    IntegrationKind,
    RelationshipFacts,
    TenantAccess,
    TenantStatus,
    TokenFacts,
)
from shared.permissions import Resource, lacking, required_roles
from shared.services.alerting import raise_relationship_alerts
from shared.services.credentials import app_credential
from shared.stores.tables import unless_contended, utcnow

if TYPE_CHECKING:
    from shared.http import CallStats
    from shared.models import GdapRelationship
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

OK = "ok"
CONSENT_MISSING = "consentMissing"
PERMISSION_MISSING = "permissionMissing"
NO_RELATIONSHIP = "noRelationship"
UNSUPPORTED_RELATIONSHIP = "unsupportedRelationship"
INTUNE_NOT_LICENSED = "intuneNotLicensed"
PENDING = "pending"
UNKNOWN = "unknown"
CONSENTABLE = frozenset({CONSENT_MISSING, PERMISSION_MISSING})

# Sync error codes that mean Entra gave the sync app no token in the tenant.
NO_TOKEN_CODES = frozenset({ErrorCode.CONSENT_MISSING.value, ErrorCode.APP_NOT_FOUND_IN_TENANT.value})
# Sync error codes that come after a token was issued.
TOKEN_CODES = frozenset({ErrorCode.PERMISSION_MISSING.value, ErrorCode.INTUNE_NOT_LICENSED.value,
                         ErrorCode.DEFENDER_UNAVAILABLE.value})
# Partner Center's relationshipToPartner under which the partner itself may consent (direct reseller).
CONSENTING_RELATIONSHIP = "reseller"
TENANT_WRITES_IN_FLIGHT = 16
RELATIONSHIP_BUDGET_SECONDS = 60.0
PROBE_SECONDS = 30.0


# -- the verdict (pure) -----------------------------------------------------------------------------


def token_from_sync(tenant: CustomerTenant) -> TokenFacts:
    """What the tenant's last sync says about the sync app's token there."""
    code = tenant.error.code if tenant.error is not None else None
    at = tenant.last_sync_finished_at
    if code in NO_TOKEN_CODES:
        return TokenFacts(ok=False, error=code, source="sync", checked_at=at)
    if code == ErrorCode.PERMISSION_MISSING.value:
        return TokenFacts(ok=True, missing=_missing_named(tenant.error), source="sync", checked_at=at)
    if tenant.status == TenantStatus.OK or code in TOKEN_CODES:
        return TokenFacts(ok=True, source="sync", checked_at=at)
    return TokenFacts(source="none")


def _missing_named(error: ErrorModel | None) -> list[str]:
    """The permissions a permissionMissing message names ("lacks the application permission(s) A, B in")."""
    if error is None:
        return []
    text = error.message
    start = text.find("permission(s) ")
    end = text.find(" in tenant", start)
    if start < 0 or end < 0:
        return []
    return [p.strip() for p in text[start + len("permission(s) "):end].split(",") if p.strip()]


def effective_token(tenant: CustomerTenant, probe: TokenFacts | None) -> TokenFacts:
    """The newer of the sync's outcome and memsync's own probe."""
    synced = token_from_sync(tenant)
    if probe is None or probe.source != "probe":
        return synced
    if synced.source == "none" or synced.checked_at is None:
        return probe
    if probe.checked_at is not None and probe.checked_at >= synced.checked_at:
        return probe
    return synced


def _intune(tenant: CustomerTenant) -> str:
    code = tenant.error.code if tenant.error is not None else None
    if code == ErrorCode.INTUNE_NOT_LICENSED.value:
        return "notLicensed"
    if tenant.status == TenantStatus.OK or (tenant.last_success_at is not None and code is None):
        return "ok"
    return "unknown"


def _defender(tenant: CustomerTenant, included: bool) -> str:
    if not included:
        return "notIncluded"
    code = tenant.error.code if tenant.error is not None else None
    if code == ErrorCode.DEFENDER_UNAVAILABLE.value:
        return "unavailable"
    if tenant.status == TenantStatus.OK:
        return "ok"
    return "unknown"


def _who(tenant: CustomerTenant) -> str:
    name = tenant.display_name or tenant.default_domain_name
    return f"'{name}' ({tenant.tenant_id})" if name else tenant.tenant_id


def _verdict(
    tenant: CustomerTenant, facts: RelationshipFacts, token: TokenFacts, *, sync_app_id: str,
    integration_id: str, now: datetime,
) -> tuple[str, str | None]:
    code = tenant.error.code if tenant.error is not None else None
    tid = tenant.tenant_id
    consent_one = f"POST /api/integrations/{integration_id}/tenants/{tid}/consent"
    signin = f"POST /api/integrations/{integration_id}/partner-signin"
    active_gdap = [r for r in facts.gdap if is_active(r, now)]
    admin = facts.dap or bool(active_gdap)
    can_consent = facts.dap or any(allows_consent(r, now) for r in facts.gdap)  # direct: DAP or GDAP role
    indirect = facts.partner_center is not None and facts.partner_center.lower() != CONSENTING_RELATIONSHIP

    gdap_consent = any(allows_consent(r, now) for r in facts.gdap)
    if token.ok is False:
        # An indirect reseller's (or advisor's) customer: Partner Center consents only for the partner that
        # holds the customer's admin relationship, so a DAP contract alone does not help.
        if indirect and not gdap_consent:
            return UNSUPPORTED_RELATIONSHIP, (
                f"Customer {_who(tenant)} is reached through an indirect reseller or as an advisor "
                f"(Partner Center relationshipToPartner '{facts.partner_center}'), and this partner holds no "
                "GDAP relationship there that may consent apps, so Partner Center cannot consent for it. "
                "Have the customer's Global Administrator (or the reseller that manages it) grant admin "
                "consent to the sync app "
                f"{sync_app_id}, or leave the tenant out with the integration's tenantFilter.")
        if not admin:
            return NO_RELATIONSHIP, (
                f"The partner has no active DAP or GDAP relationship with customer {_who(tenant)}, so "
                "Partner Center cannot consent for it. In Partner Center > Customers > the customer > "
                "Admin relationships, request a GDAP relationship that includes Cloud Application "
                "Administrator and have the customer approve it; then " + consent_one + ". Or have the "
                f"customer's Global Administrator grant admin consent to the sync app {sync_app_id}.")
        if not can_consent:
            return CONSENT_MISSING, (
                f"The sync app {sync_app_id} is not consented in customer {_who(tenant)}, and no active "
                "GDAP relationship there holds a role that may consent apps. In Partner Center > Customers "
                "> the customer > Admin relationships, request a GDAP relationship with Cloud Application "
                "Administrator, assign it to a security group of partner admins; once the customer "
                f"approves, {consent_one}.")
        return CONSENT_MISSING, (
            f"The sync app {sync_app_id} is not consented in customer {_who(tenant)}. Sign in once as a "
            f"partner admin ({signin}), then consent through Partner Center: {consent_one} (or POST "
            f"/api/integrations/{integration_id}/consent for every customer that needs it).")
    # A probe newer than the sync speaks for the token; the sync's permission error is then stale.
    permission_code = code == ErrorCode.PERMISSION_MISSING.value and token.source != "probe"
    if token.missing or permission_code:
        lacking = ", ".join(token.missing) or "the permissions memsync needs"
        return PERMISSION_MISSING, (
            f"The sync app's consent in customer {_who(tenant)} lacks {lacking}. Consent again through "
            f"Partner Center: {consent_one} (memsync replaces the app's consent there with the full set), "
            "or add the permission in the customer's Enterprise applications and grant admin consent.")
    if code == ErrorCode.INTUNE_NOT_LICENSED.value:
        return INTUNE_NOT_LICENSED, (
            f"Customer {_who(tenant)} has no Intune licence. Assign a Microsoft Intune licence there, or "
            "leave the tenant out with the integration's tenantFilter.")
    if tenant.status == TenantStatus.OK or token.ok:
        return OK, None
    if token.source == "none" and tenant.status in (TenantStatus.PENDING, TenantStatus.SYNCING):
        return PENDING, "Wait for the tenant's first sync; the verdict follows from it."
    if tenant.error is not None:
        return UNKNOWN, tenant.error.action.replace("{id}", integration_id)
    return UNKNOWN, None


def diagnose(
    tenant: CustomerTenant,
    facts: RelationshipFacts,
    *,
    sync_app_id: str,
    integration_id: str,
    defender_included: bool,
    probe: TokenFacts | None = None,
    consent: Any = None,
    now: datetime | None = None,
) -> TenantAccess:
    """The tenant's access diagnosis from its relationship facts and its (sync or probe) outcome."""
    now = now or utcnow()
    token = effective_token(tenant, probe)
    verdict, action = _verdict(tenant, facts, token, sync_app_id=sync_app_id, integration_id=integration_id,
                               now=now)
    return TenantAccess(
        verdict=verdict, action=action, relationship=facts, token=token, intune=_intune(tenant),
        defender=_defender(tenant, defender_included), defender_included=defender_included,
        sync_app_id=sync_app_id, consent=consent, checked_at=now,
    )


def current_access(tenant: CustomerTenant, *, now: datetime | None = None) -> TenantAccess | None:
    """The stored diagnosis brought up to date with the tenant's last sync (None when never diagnosed)."""
    stored = tenant.access
    if stored is None:
        return None
    fresh = diagnose(
        tenant, stored.relationship, sync_app_id=stored.sync_app_id, integration_id=tenant.integration_id,
        defender_included=stored.defender_included,
        probe=stored.token if stored.token.source == "probe" else None, consent=stored.consent, now=now,
    )
    return fresh.model_copy(update={"checked_at": max(stored.checked_at,
                                                       tenant.last_sync_finished_at or stored.checked_at)})


def same_facts(a: TenantAccess | None, b: TenantAccess | None) -> bool:
    """Equal apart from when they were checked (so an unchanged diagnosis is not rewritten)."""
    if a is None or b is None:
        return a is b
    return a.model_copy(update={"checked_at": b.checked_at}) == b


# -- storing it -------------------------------------------------------------------------------------


def facts_for(tenant: CustomerTenant, gdap: list[GdapRelationship] | None) -> RelationshipFacts:
    """Relationship facts from the tenant record (Partner Center, contracts) and the GDAP listing; when
    the GDAP listing failed (None), the relationships stored before are kept."""
    previous = tenant.access.relationship.gdap if tenant.access is not None else []
    return RelationshipFacts(
        partner_center=tenant.relationship,
        dap="contracts" in tenant.discovered_by,
        gdap=list(gdap) if gdap is not None else previous,
        listed=tenant.missing_since is None,
    )


def rediagnosed(
    current: CustomerTenant, integration: Integration, gdap: list[GdapRelationship] | None,
    *, probe: TokenFacts | None = None, consent: Any = None, now: datetime | None = None,
) -> CustomerTenant | None:
    """The tenant with a fresh diagnosis; None when nothing but the time changed."""
    stored = current.access
    if probe is None and stored is not None and stored.token.source == "probe":
        probe = stored.token
    if consent is None and stored is not None:
        consent = stored.consent
    access = diagnose(
        current, facts_for(current, gdap), sync_app_id=integration.sync_app_id, integration_id=integration.id,
        defender_included=integration.include_defender, probe=probe, consent=consent, now=now,
    )
    if same_facts(stored, access):
        return None
    return current.model_copy(update={"access": access})


async def collect_relationships(
    rt: Runtime, integration: Integration, stats: CallStats
) -> dict[str, list[GdapRelationship]] | None:
    """The partner's GDAP relationships by customer tenant id; None when they could not be listed."""
    try:
        app = await app_credential(rt, integration, AppRole.PARTNER)
    except ActionableError as exc:
        log.info("integration %s: GDAP relationships not listed (%s)", integration.id, exc.code.value)
        return None
    api = rt.api(integration.home_tenant_id, app, "partnerDirectory", Budget(RELATIONSHIP_BUDGET_SECONDS), stats)
    graph = GraphClient(rt.settings.graph_url + "/v1.0", directory=api)
    try:
        return await DelegatedAdminRelationships(graph, api).by_customer()
    except (ApiError, ActionableError) as exc:
        log.warning("integration %s: GDAP relationships not listed: %s", integration.id, exc)
        return None


async def diagnose_integration(
    rt: Runtime, integration: Integration, tenants: list[CustomerTenant], stats: CallStats
) -> list[CustomerTenant]:
    """During the fan-out: list the GDAP relationships once, store each tenant's diagnosis, raise the
    relationship-expiry alerts. Returns the tenants as now recorded."""
    if integration.kind != IntegrationKind.MULTI_TENANT:
        return tenants
    relationships = await collect_relationships(rt, integration, stats)
    now = utcnow()

    def gdap_of(tenant_id: str) -> list[GdapRelationship] | None:
        return None if relationships is None else relationships.get(tenant_id.lower(), [])

    recorded = await _store_diagnoses(
        rt, integration, tenants, lambda c: rediagnosed(c, integration, gdap_of(c.tenant_id), now=now))
    if relationships is not None:
        await _relationship_alerts(rt, integration, recorded, relationships)
    return recorded


async def _store_diagnoses(
    rt: Runtime, integration: Integration, tenants: list[CustomerTenant],
    change: Callable[[CustomerTenant], CustomerTenant | None],
) -> list[CustomerTenant]:
    """Write the tenants whose diagnosis changed: the integration's rows listed once with their ETags, the
    changed ones replaced 100 to a transaction, each If-Match its listed ETag (a first fan-out of 1,000
    customers: a listing page or two and 10 transactions, where a read and a replace per tenant took 2,000
    requests). A transaction that fails (one of its rows changed since the listing, say a sync wrote its
    status) leaves its rows to the one-by-one guarded read-change-write."""
    changed = [n for n, t in enumerate(tenants) if change(t) is not None]
    if not changed:  # the usual scheduled run: nothing to read or write
        return tenants
    listed = {t.tenant_id.lower(): (t, etag) for t, etag in await rt.tenants.list_tenants_with_etags(integration.id)}
    recorded = list(tenants)
    writes: list[tuple[CustomerTenant, str]] = []
    at: list[int] = []  # the position in `tenants` of each write
    for n in changed:
        found = listed.get(tenants[n].tenant_id.lower())
        if found is None:  # deleted since it was recorded: nothing to write
            continue
        current, etag = found
        updated = change(current)
        recorded[n] = current if updated is None else updated
        if updated is not None:
            writes.append((updated, etag))
            at.append(n)
    written = await rt.tenants.replace_many_if_unchanged(writes)
    slots = asyncio.Semaphore(TENANT_WRITES_IN_FLIGHT)

    async def one_by_one(n: int) -> None:
        async with slots:
            tenant = tenants[n]
            recorded[n] = await unless_contended(rt.tenants.update(integration.id, tenant.tenant_id, change)) or tenant

    await asyncio.gather(*(one_by_one(n) for n, ok in zip(at, written, strict=True) if not ok))
    return recorded


async def _relationship_alerts(
    rt: Runtime, integration: Integration, tenants: list[CustomerTenant],
    relationships: dict[str, list[GdapRelationship]],
) -> None:
    for tenant in tenants:
        if tenant.status == TenantStatus.EXCLUDED:
            continue
        found = relationships.get(tenant.tenant_id.lower(), [])
        if not found:
            continue
        try:
            await raise_relationship_alerts(rt, integration, tenant, found)
        except Exception:  # an alert that cannot be raised must not stop the fan-out
            log.exception("integration %s: relationship alerts for %s failed", integration.id,
                          tenant.tenant_id)


# -- the token probe (after a consent) --------------------------------------------------------------


async def probe_token(rt: Runtime, integration: Integration, tenant_id: str) -> TokenFacts:
    """Ask Entra for the sync app's token in the tenant now (fresh: a consent just changed it) and read
    its roles; the Defender token too when the integration includes Defender."""
    now = utcnow()
    try:
        app = await app_credential(rt, integration, AppRole.SYNC)
    except ActionableError as exc:
        log.warning("integration %s: sync secret not read for the probe (%s)", integration.id, exc.code.value)
        return TokenFacts(source="none")
    audiences: list[tuple[str, tuple[str, ...]]] = [(rt.settings.cloud.graph_scope, required_roles(Resource.GRAPH))]
    if integration.include_defender:
        audiences.append((rt.settings.cloud.defender_scope, required_roles(Resource.DEFENDER)))
    roles: set[str] = set()
    missing: list[str] = []
    for index, (scope, needed) in enumerate(audiences):
        try:
            token = await asyncio.wait_for(rt.tokens.get_token(tenant_id, app, scope, fresh=True), PROBE_SECONDS)
        except TimeoutError:
            return TokenFacts(ok=None, error=ErrorCode.UNREACHABLE.value, source="probe", checked_at=now)
        except ActionableError as exc:
            if index == 0:
                return TokenFacts(ok=False, error=exc.code.value, source="probe", checked_at=now)
            continue  # Defender is optional; the sync reports it
        granted = token_roles(token)
        roles |= granted
        if index == 0:
            missing += lacking(needed, granted)
    return TokenFacts(ok=True, roles=sorted(roles), missing=missing, source="probe", checked_at=now)


__all__ = ["CONSENT_ROLES", "current_access", "diagnose", "diagnose_integration", "probe_token"]
