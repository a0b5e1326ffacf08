"""Sync jobs for tenants memsync already knows: which of them may be queued, and queueing them as one run.

The fan-out (`shared.services.fanout`) queues every tenant it has just discovered; a consent or a manual
sync queues named tenants. Both end here, so a tenant is queued by one rule: not excluded, admitted by the
integration's `tenantFilter`, still listed by discovery (unless named), and not being synced right now.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from shared.models import CustomerTenant, Integration, IntegrationStatus, TenantStatus
from shared.services.tenant_sync import lease_live
from shared.stores.queues import SyncJob, Trigger

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)


def queueable(tenant: CustomerTenant, integration: Integration, *, named: bool) -> bool:
    if tenant.status == TenantStatus.EXCLUDED or not integration.tenant_filter.admits(tenant.tenant_id):
        return False
    if tenant.missing_since is not None and not named:
        return False
    # A sync still running (lease not expired) is not queued again.
    return not lease_live(tenant)


async def queue_run(rt: Runtime, integration: Integration, targets: list[CustomerTenant], trigger: Trigger) -> int:
    """One sync job per tenant in `targets`, all under one new run id; returns how many were queued."""
    run_id = str(uuid.uuid4())
    jobs = [
        SyncJob.model_validate({"integrationId": integration.id, "tenantId": t.tenant_id.lower(),
                                "runId": run_id, "trigger": trigger})
        for t in targets
    ]
    queued = await rt.queue.enqueue(jobs) if jobs else 0
    log.info("integration %s: %d sync job(s) queued (run %s, %s)", integration.id, queued, run_id, trigger)
    return queued


async def enqueue_tenants(rt: Runtime, integration: Integration, trigger: Trigger, tenant_ids: list[str]) -> int:
    """Queue the known tenants named (unknown ones are skipped); returns how many were queued."""
    if integration.status == IntegrationStatus.DISABLED:
        return 0
    wanted = {t.lower() for t in tenant_ids}
    known = await rt.tenants.list_tenants(integration.id)
    targets = [t for t in known if t.tenant_id.lower() in wanted and queueable(t, integration, named=True)]
    return await queue_run(rt, integration, targets, trigger)


__all__ = ["enqueue_tenants", "queue_run", "queueable"]
