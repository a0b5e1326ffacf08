"""Fan-out: every customer tenant of every enabled integration gets one job on `memsync-sync`.

Multi-tenant integrations discover their customers in the partner tenant, as the partner app:
Partner Center `/v1/customers` and Graph `/contracts` and `/tenantRelationships/delegatedAdminCustomers`
(GDAP), merged by tenant id. Single-tenant integrations have their one tenant. Each tenant is recorded
in the TenantStore (names, how it was found, `relationshipToPartner`); the integration's `tenantFilter`
marks tenants `excluded`; a tenant that a *complete* discovery no longer lists gets `missingSince` and is
no longer queued by the schedule.

A discovery failure does not stop the fan-out: the integration is marked with the actionable error
(status `error` when nothing could be listed; the error noted, status unchanged, when one source of
three failed) and the tenants already known are synced. Its messages start with "Customer discovery",
which is how a later successful discovery knows which error it may clear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.clients.graph import GraphClient, graph_error
from shared.clients.partner_center import PartnerCenterClient
from shared.errors import ActionableError, ErrorCode, ServiceUnavailable, throttled, unreachable
from shared.http import ApiError, Budget, CallStats, FatalApiError, RetriableApiError
from shared.mapping.tenants import (
    SINGLE,
    DiscoveredTenant,
    from_contract,
    from_delegated_admin_customer,
    from_partner_center_customer,
    merge_tenants,
)
from shared.models import (
    AppRole,
    CustomerTenant,
    ErrorModel,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    TenantStatus,
)
from shared.services.alerting import raise_credential_alert
from shared.services.consent import auto_consent_new
from shared.services.credentials import app_credential
from shared.services.diagnosis import diagnose_integration
from shared.services.jobs import enqueue_tenants, queue_run, queueable
from shared.stores.queues import Trigger
from shared.stores.tables import unless_contended, utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

DISCOVERY_BUDGET_SECONDS = 120.0
# A person waits for a manual sync's answer: discovery then gets a few seconds, not the timer's two minutes
# of retries, and a Microsoft that cannot answer in that time is a 503 to retry, not a 40-second wait.
REQUEST_DISCOVERY_SECONDS = 10.0
DISCOVERY_PREFIX = "Customer discovery"
TENANT_WRITES_IN_FLIGHT = 32
CREDENTIAL_CODES = frozenset({ErrorCode.SECRET_EXPIRED, ErrorCode.INVALID_SECRET})


@dataclass
class Discovery:
    tenants: dict[str, DiscoveredTenant]
    sources: int = 1
    errors: list[ActionableError] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.errors

    @property
    def failed(self) -> bool:
        """Nothing could be listed at all."""
        return len(self.errors) >= self.sources


# -- discovery -----------------------------------------------------------------------------------


def _source_error(exc: BaseException, *, area: str, tenant_id: str, app_id: str) -> ActionableError:
    if isinstance(exc, ActionableError):
        return exc
    if isinstance(exc, RetriableApiError):
        service = "Partner Center" if area == "partnerCenter" else "Microsoft Graph"
        return throttled(service) if exc.throttled else unreachable(service, str(exc))
    if isinstance(exc, FatalApiError) and area == "partnerCenter":
        if exc.status in (401, 403):
            return ActionableError(
                ErrorCode.PERMISSION_MISSING,
                f"Partner Center refused the partner app {app_id} (HTTP {exc.status}).",
                "In Partner Center > Account settings > App management, register the partner app as a "
                "web app of the partner account, and grant it the Partner Center API permission "
                "(user_impersonation) with admin consent in the partner tenant.",
            )
        return ActionableError(ErrorCode.DISCOVERY_FAILED,
                               f"Partner Center answered HTTP {exc.status} to GET /v1/customers.",
                               "Retry later; if it persists, check the Partner Center status page.",
                               retriable=False)
    assert isinstance(exc, ApiError)
    return graph_error(exc, area=area, tenant_id=tenant_id, app_id=app_id)


async def _collect(
    pages: AsyncIterator[list[dict[str, Any]]],
    convert: Callable[[dict[str, Any]], DiscoveredTenant | None],
) -> list[DiscoveredTenant]:
    found: list[DiscoveredTenant] = []
    async for page in pages:
        found.extend(t for t in (convert(item) for item in page) if t is not None)
    return found


async def discover_customers(
    rt: Runtime, integration: Integration, stats: CallStats, *, budget_seconds: float = DISCOVERY_BUDGET_SECONDS
) -> Discovery:
    """The integration's customer tenants, and what could not be listed (within `budget_seconds`)."""
    if integration.kind == IntegrationKind.SINGLE_TENANT:
        tid = integration.home_tenant_id.lower()
        return Discovery({tid: DiscoveredTenant(tid, discovered_by=[SINGLE])})
    partner_tenant = integration.home_tenant_id
    try:
        app = await app_credential(rt, integration, AppRole.PARTNER)
    except ActionableError as exc:
        return Discovery({}, sources=1, errors=[exc])
    settings = rt.settings
    budget = Budget(budget_seconds)

    partner_center = PartnerCenterClient(settings.partner_center_url, rt.api(
        partner_tenant, app, "partnerDirectory", budget, stats, service="partnerCenter"))
    graph = GraphClient(settings.graph_url + "/v1.0",
                        directory=rt.api(partner_tenant, app, "partnerDirectory", budget, stats))
    sources = {
        "partnerCenter": _collect(partner_center.customers(), from_partner_center_customer),
        "contracts": _collect(graph.contracts(), from_contract),
        "gdap": _collect(graph.delegated_admin_customers(), from_delegated_admin_customer),
    }
    results = await asyncio.gather(*sources.values(), return_exceptions=True)
    found: list[DiscoveredTenant] = []
    errors: list[ActionableError] = []
    for area, result in zip(sources, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, ApiError | ActionableError):
                raise result
            error = _source_error(result, area=area, tenant_id=partner_tenant, app_id=app.app_id)
            log.warning("integration %s: discovery through %s failed: %s", integration.id, area,
                        error.info.message)
            errors.append(error)
        else:
            found.extend(result)
    return Discovery(merge_tenants(found), sources=len(sources), errors=errors)


# -- recording -----------------------------------------------------------------------------------


def _desired(
    current: CustomerTenant, found: DiscoveredTenant | None, *, admitted: bool, complete: bool, now: Any
) -> CustomerTenant | None:
    update: dict[str, Any] = {}
    if found is not None:
        if sorted(found.discovered_by) != sorted(current.discovered_by):
            update["discovered_by"] = list(found.discovered_by)
        if found.relationship and found.relationship != current.relationship:
            update["relationship"] = found.relationship
        # The tenant's own /organization (read by the sync) wins over the partner's snapshots.
        if not current.display_name and found.display_name:
            update["display_name"] = found.display_name
        if not current.default_domain_name and found.default_domain_name:
            update["default_domain_name"] = found.default_domain_name
        if current.missing_since is not None:
            update["missing_since"] = None
    elif complete and current.missing_since is None:
        update["missing_since"] = now
    if not admitted and current.status != TenantStatus.EXCLUDED:
        update["status"] = TenantStatus.EXCLUDED
    elif admitted and current.status == TenantStatus.EXCLUDED:
        update["status"] = TenantStatus.PENDING
    return current.model_copy(update=update) if update else None


async def record_tenants(rt: Runtime, integration: Integration, discovery: Discovery) -> list[CustomerTenant]:
    """Write what discovery learned; returns every tenant of the integration as now recorded.

    New tenants' rows are created in batch transactions (a first fan-out of 1,000 customers is 10 requests,
    not 1,000); known tenants are changed one by one, each ETag-guarded, and only when something changed.
    """
    known = {t.tenant_id.lower(): t for t in await rt.tenants.list_tenants(integration.id)}
    now = utcnow()
    slots = asyncio.Semaphore(TENANT_WRITES_IN_FLIGHT)

    def change(tid: str) -> Callable[[CustomerTenant], CustomerTenant | None]:
        found = discovery.tenants.get(tid)
        admitted = integration.tenant_filter.admits(tid)
        return lambda c: _desired(c, found, admitted=admitted, complete=discovery.complete, now=now)

    async def update(tid: str) -> CustomerTenant | None:
        current = known.get(tid)
        if current is not None and change(tid)(current) is None:
            return current
        async with slots:
            return await unless_contended(rt.tenants.update(integration.id, tid, change(tid)))

    async def create(fresh: list[CustomerTenant]) -> list[CustomerTenant | None]:
        created = await rt.tenants.create_many_if_absent(fresh)
        out: list[CustomerTenant | None] = list(fresh)
        # A row another fan-out created meanwhile is brought up to date like any known tenant's.
        raced = [n for n, ok in enumerate(created) if not ok]
        for n, tenant in zip(raced, await asyncio.gather(*(update(fresh[n].tenant_id) for n in raced)), strict=True):
            out[n] = tenant
        return out

    fresh = [
        CustomerTenant(
            integration_id=integration.id, tenant_id=tid, display_name=found.display_name,
            default_domain_name=found.default_domain_name, discovered_by=list(found.discovered_by),
            relationship=found.relationship,
            status=TenantStatus.PENDING if integration.tenant_filter.admits(tid) else TenantStatus.EXCLUDED,
        )
        for tid, found in sorted(discovery.tenants.items()) if tid not in known
    ]
    created, updated = await asyncio.gather(create(fresh), asyncio.gather(*(update(tid) for tid in sorted(known))))
    return sorted((t for t in [*created, *updated] if t is not None), key=lambda t: t.tenant_id.lower())


def discovery_marked(current: Integration, discovery: Discovery) -> Integration | None:
    """The integration with a discovery failure noted (an error, and `error` status when discovery
    failed outright), or with the note a previous discovery left cleared; None when nothing changes."""
    update: dict[str, Any] = {}
    ours = current.error is not None and current.error.message.startswith(DISCOVERY_PREFIX)
    if discovery.errors:
        first = discovery.errors[0].info
        how = "failed" if discovery.failed else "incomplete"
        model = ErrorModel(code=first.code.value, message=f"{DISCOVERY_PREFIX} {how}: {first.message}",
                           action=first.action.replace("{id}", current.id))
        if current.error != model:
            update["error"] = model
        if discovery.failed and current.status == IntegrationStatus.ACTIVE:
            update["status"] = IntegrationStatus.ERROR
    elif ours:
        update["error"] = None
        if current.status == IntegrationStatus.ERROR:
            update["status"] = IntegrationStatus.ACTIVE
    return current.model_copy(update=update) if update else None


async def _mark_integration(rt: Runtime, integration_id: str, discovery: Discovery) -> None:
    """Note a discovery failure on the integration, or clear the one a previous discovery noted."""
    await unless_contended(rt.integrations.update(integration_id, lambda current: discovery_marked(current, discovery)))


async def _credential_alert(rt: Runtime, integration: Integration, error: ActionableError) -> None:
    try:
        await raise_credential_alert(rt, integration, AppRole.PARTNER, error)
    except Exception:  # an alert that cannot be sent must not stop the fan-out
        log.exception("integration %s: raising the partner credential alert failed", integration.id)


async def _diagnose(
    rt: Runtime, integration: Integration, tenants: list[CustomerTenant], stats: CallStats
) -> list[CustomerTenant]:
    """GDAP (docs/gdap.md): each tenant's access diagnosis (GDAP relationships listed once), relationship-expiry
    alerts, and with autoConsent the consents a signed-in partner admin can make. Never stops the fan-out."""
    try:
        tenants = await diagnose_integration(rt, integration, tenants, stats)
    except Exception:  # a diagnosis that fails must not keep the tenants from syncing
        log.exception("integration %s: access diagnosis failed", integration.id)
        return tenants
    if integration.auto_consent and integration.secret(AppRole.PARTNER_SIGNIN) is not None:
        try:
            await auto_consent_new(rt, integration, tenants)
        except Exception:  # recorded per tenant; the fan-out goes on
            log.exception("integration %s: automatic consent failed", integration.id)
    return tenants


# -- enqueueing ----------------------------------------------------------------------------------


async def enqueue_integration(
    rt: Runtime, integration: Integration, trigger: Trigger, tenant_ids: list[str] | None = None, *,
    waiting: bool = False,
) -> int:
    """Queue one sync job per tenant of the integration (or per named tenant); returns how many.

    Without `tenant_ids` the customers are discovered first. With them, the known tenants named are
    queued (unknown ones are skipped). Discovery failures are recorded on the integration, not raised;
    except when someone is `waiting` for the answer (a manual sync): discovery then has
    `REQUEST_DISCOVERY_SECONDS`, and when Microsoft could not be reached at all in that time the caller
    gets `ServiceUnavailable` (a 503 with Retry-After) and nothing is queued.
    """
    if integration.status == IntegrationStatus.DISABLED:
        return 0
    if tenant_ids is not None:
        return await enqueue_tenants(rt, integration, trigger, tenant_ids)
    stats = CallStats()
    discovery = await discover_customers(
        rt, integration, stats, budget_seconds=REQUEST_DISCOVERY_SECONDS if waiting else DISCOVERY_BUDGET_SECONDS)
    await _mark_integration(rt, integration.id, discovery)
    if waiting and discovery.failed and all(e.retriable for e in discovery.errors):
        raise ServiceUnavailable.of(discovery.errors[0])
    for error in discovery.errors:
        if error.code in CREDENTIAL_CODES:
            await _credential_alert(rt, integration, error)
            break
    tenants = await record_tenants(rt, integration, discovery)
    tenants = await _diagnose(rt, integration, tenants, stats)
    log.info("integration %s: %d tenant(s) known, discovery %s (%d requests)", integration.id,
             len(tenants), "complete" if discovery.complete else "incomplete", stats.requests)
    # A manual sync also queues tenants whose lease is held, to run when it lapses (jobs.delay).
    targets = [t for t in tenants if queueable(t, integration, named=False, defer=trigger == "manual")]
    return await queue_run(rt, integration, targets, trigger)


async def enqueue_all(rt: Runtime, trigger: Trigger = "schedule") -> dict[str, Any]:
    """The scheduled fan-out over every enabled integration; one integration's failure is its own."""
    integrations = [i for i in await rt.integrations.list_integrations()
                    if i.status != IntegrationStatus.DISABLED]
    results = await asyncio.gather(*(enqueue_integration(rt, i, trigger) for i in integrations),
                                   return_exceptions=True)
    report: dict[str, Any] = {}
    for integration, result in zip(integrations, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            log.error("integration %s: fan-out failed: %s: %s", integration.id, type(result).__name__, result)
            report[integration.id] = {"error": type(result).__name__}
        else:
            report[integration.id] = {"queued": result}
    return report


async def apply_tenant_filter(rt: Runtime, integration: Integration) -> list[CustomerTenant]:
    """Bring the known tenants' `excluded` status in line with the integration's tenantFilter now (an
    edit), without waiting for the next discovery; returns every tenant as recorded."""
    now = utcnow()

    async def one(tenant: CustomerTenant) -> CustomerTenant | None:
        admitted = integration.tenant_filter.admits(tenant.tenant_id)

        def change(current: CustomerTenant) -> CustomerTenant | None:
            return _desired(current, None, admitted=admitted, complete=False, now=now)

        if change(tenant) is None:
            return tenant
        return await unless_contended(rt.tenants.update(integration.id, tenant.tenant_id, change))

    known = await rt.tenants.list_tenants(integration.id)
    return [t for t in await asyncio.gather(*(one(t) for t in known)) if t is not None]
