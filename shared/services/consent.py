"""Consent the sync app in customer tenants through Partner Center, as the signed-in partner admin.

`POST /v1/customers/{tenantId}/applicationconsents` creates the sync app's service principal in the
customer with exactly the application permissions the sync reads with (Graph: managed devices, detected
apps, the organization; Defender: machines, when the integration includes Defender). "Already exists"
(409) counts as success; for a tenant whose verdict is `permissionMissing` the existing consent is the
problem, so memsync deletes it and consents again with the full set. Afterwards memsync asks Entra for
the sync app's token there (the re-diagnosis) and queues the tenant's sync.

A consent that fails changes nothing but the tenant's `access.consent` (status failed, the error naming
the cause); the API answers with the same error.
https://learn.microsoft.com/partner-center/developer/control-panel-vendor-apis
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared.clients.partner_center import PartnerCenterClient
from shared.entities import chosen_areas
from shared.errors import ConsentFailed, DomainError, ErrorCode, ErrorInfo, NotFound, unreachable
from shared.http import ApiClient, Budget, CallStats, FatalApiError, RetriableApiError
from shared.models import ConsentFacts, CustomerTenant, ErrorModel, Integration, TenantStatus
from shared.permissions import consent_scopes
from shared.services.diagnosis import (
    CONSENTABLE,
    PERMISSION_MISSING,
    current_access,
    probe_token,
    rediagnosed,
)
from shared.services.jobs import enqueue_tenants
from shared.services.partner_admin import delegated_partner_token
from shared.services.queries import load_integration
from shared.stores.tables import unless_contended, utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

CONSENT_BUDGET_SECONDS = 60.0
CONSENTS_IN_FLIGHT = 4  # Partner Center allows 50 requests/s per application


def consent_body(integration: Integration) -> dict[str, Any]:
    """The applicationconsents body: the sync app and exactly the permissions its sync uses."""
    grants = [{"enterpriseApplicationId": resource.value, "scope": ",".join(scopes)}
              for resource, scopes in consent_scopes(
                  include_defender=integration.include_defender,
                  optional=chosen_areas(include_defender=integration.include_defender,
                                        collect=integration.collect)).items()]
    return {
        "applicationId": integration.sync_app_id,
        "applicationGrants": grants,
        "displayName": f"memsync ({integration.display_name})",
    }


@dataclass
class ConsentResult:
    """How the consent in one tenant went, and the tenant as recorded afterwards (its access)."""

    tenant_id: str
    status: str  # consented, alreadyConsented, reconsented, failed
    queued: int = 0
    tenant: CustomerTenant | None = None
    error: ErrorInfo | None = None


def partner_center_error(exc: FatalApiError | RetriableApiError, tenant: CustomerTenant) -> ErrorInfo:
    """What Partner Center's refusal means for this customer, and what the partner does about it."""
    who = f"'{tenant.display_name}' ({tenant.tenant_id})" if tenant.display_name else tenant.tenant_id
    if isinstance(exc, RetriableApiError):
        return unreachable("Partner Center", str(exc)).info
    detail = _pc_description(exc.body)
    if exc.status == 403:
        return ErrorInfo(
            code=ErrorCode.PARTNER_CENTER_FORBIDDEN,
            message=f"Partner Center refused the consent for customer {who} (HTTP 403{detail}): the signed-in "
            "partner admin may not consent apps there.",
            action="In Partner Center > Customers > the customer > Admin relationships, make sure an active "
            "GDAP relationship includes Cloud Application Administrator (or DAP is in place), that its role is "
            "assigned to a security group the signed-in admin belongs to, and that the admin is in the "
            "AdminAgents group; then retry the consent.",
        )
    if exc.status == 401:
        return ErrorInfo(
            code=ErrorCode.PARTNER_CENTER_UNAUTHORIZED,
            message=f"Partner Center did not accept the partner admin's token (HTTP 401{detail}).",
            action="Register the partner app in Partner Center (Account settings > App management) and give it "
            "the delegated Partner Center permission user_impersonation; then sign in again with POST "
            "/api/integrations/{id}/partner-signin.",
        )
    if exc.status == 404:
        return ErrorInfo(
            code=ErrorCode.CUSTOMER_NOT_FOUND,
            message=f"Partner Center does not know customer {who} (HTTP 404{detail}).",
            action="Check that the tenant is a customer of this partner in Partner Center > Customers.",
        )
    return ErrorInfo(
        code=ErrorCode.CONSENT_FAILED,
        message=f"Partner Center refused the consent for customer {who} (HTTP {exc.status}{detail}).",
        action="Retry; if it persists, consent the sync app in the customer's Enterprise applications instead.",
    )


def _pc_description(body: Any) -> str:
    if isinstance(body, dict):
        text = body.get("description") or body.get("message")
        if isinstance(text, str) and text:
            return f": {text[:200]}"
    return ""


async def _record(rt: Runtime, integration: Integration, tenant_id: str, **kwargs: Any) -> CustomerTenant | None:
    def change(current: CustomerTenant) -> CustomerTenant | None:
        return rediagnosed(current, integration, None, **kwargs)

    return await unless_contended(rt.tenants.update(integration.id, tenant_id, change))


def _partner_center(rt: Runtime, token: SecretStr) -> PartnerCenterClient:
    async def bearer(fresh: bool) -> str:
        return token.get_secret_value()

    api = ApiClient(rt.http, service="partnerCenter", token=bearer, budget=Budget(CONSENT_BUDGET_SECONDS),
                    stats=CallStats())
    return PartnerCenterClient(rt.settings.partner_center_url, api)


async def consent_tenant(
    rt: Runtime, integration_id: str, tenant_id: str, *, token: SecretStr | None = None,
    integration: Integration | None = None,
) -> ConsentResult:
    """Consent in one customer. Raises `Conflict` (sign in first, or again), or `ConsentFailed` (Partner
    Center refused, or could not be reached) after recording the failure on the tenant."""
    integration = integration or await load_integration(rt, integration_id)
    tid = tenant_id.lower()
    tenant = await rt.tenants.get_tenant(integration.id, tid)
    if tenant is None:
        raise NotFound("tenant of this integration", "tenantId",
                        f"List the integration's tenants with GET /api/integrations/{integration.id}/tenants.")
    if token is None:
        token = await delegated_partner_token(rt, integration)
    before = current_access(tenant)
    partner_center = _partner_center(rt, token)
    body = consent_body(integration)
    try:
        outcome = await partner_center.create_application_consent(tid, body)
        status = "consented" if outcome == "created" else "alreadyConsented"
        if outcome == "exists" and before is not None and before.verdict == PERMISSION_MISSING:
            # The existing consent lacks permissions: replace it (Partner Center has no update).
            await partner_center.delete_application_consent(tid, integration.sync_app_id)
            await partner_center.create_application_consent(tid, body)
            status = "reconsented"
    except (FatalApiError, RetriableApiError) as exc:
        error = partner_center_error(exc, tenant)
        error = dataclasses.replace(error, action=error.action.replace("{id}", integration.id))
        log.warning("integration %s: consent in %s failed: %s", integration.id, tid, error.code)
        await _record(rt, integration, tid,
                      consent=ConsentFacts(status="failed", at=utcnow(), error=ErrorModel.of(error)))
        raise ConsentFailed(error, "tenantId", retriable=isinstance(exc, RetriableApiError)) from None
    probe = await probe_token(rt, integration, tid)
    recorded = await _record(rt, integration, tid, probe=probe if probe.source == "probe" else None,
                             consent=ConsentFacts(status="granted", at=utcnow()))
    queued = await enqueue_tenants(rt, integration, "manual", [tid])
    log.info("integration %s: sync app %s in %s; %d sync job queued", integration.id, status, tid, queued)
    return ConsentResult(tid, status, queued, recorded or await rt.tenants.get_tenant(integration.id, tid))


def needs_consent(tenant: CustomerTenant) -> bool:
    if tenant.status == TenantStatus.EXCLUDED:
        return False
    access = current_access(tenant)
    return access is not None and access.verdict in CONSENTABLE


async def consent_all(rt: Runtime, integration_id: str, *, token: SecretStr | None = None) -> list[ConsentResult]:
    """Consent in every tenant whose verdict is consentMissing or permissionMissing; one result each."""
    integration = await load_integration(rt, integration_id)
    if token is None:
        token = await delegated_partner_token(rt, integration)
    targets = [t for t in await rt.tenants.list_tenants(integration.id) if needs_consent(t)]
    slots = asyncio.Semaphore(CONSENTS_IN_FLIGHT)

    async def one(tenant: CustomerTenant) -> ConsentResult:
        async with slots:
            try:
                return await consent_tenant(rt, integration.id, tenant.tenant_id, token=token,
                                            integration=integration)
            except DomainError as refused:
                first = refused.problems[0] if refused.problems else None
                error = ErrorInfo(first.code if first else ErrorCode.CONSENT_FAILED, refused.message,
                                  first.action if first else "")
                latest = await rt.tenants.get_tenant(integration.id, tenant.tenant_id)
                return ConsentResult(tenant.tenant_id, "failed", tenant=latest, error=error)

    results = list(await asyncio.gather(*(one(t) for t in targets)))
    log.info("integration %s: consent for %d tenant(s): %d failed", integration.id, len(results),
             sum(1 for r in results if r.status == "failed"))
    return results


async def auto_consent_new(rt: Runtime, integration: Integration, tenants: list[CustomerTenant]) -> int:
    """With autoConsent, during the fan-out: consent in tenants that need it and were never tried (a
    failed consent is not retried every run; POST .../consent retries it). Returns how many succeeded."""
    targets = [t for t in tenants if needs_consent(t) and t.access is not None and t.access.consent is None]
    if not targets:
        return 0
    try:
        token = await delegated_partner_token(rt, integration)
    except DomainError as refused:
        log.warning("integration %s: automatic consent skipped: %s", integration.id, refused.message)
        return 0
    done = 0
    for tenant in targets:
        try:
            await consent_tenant(rt, integration.id, tenant.tenant_id, token=token, integration=integration)
            done += 1
        except DomainError:
            continue  # recorded on the tenant
    return done


__all__ = ["consent_all", "consent_body", "consent_tenant"]
