"""Sync jobs for tenants memsync already knows: which of them may be queued, and queueing them as one run.

The fan-out (`shared.services.fanout`) queues every tenant it has just discovered; a consent or a manual
sync queues named tenants. Both end here, so a tenant is queued by one rule: not excluded, admitted by the
integration's `tenantFilter`, still listed by discovery (unless named), and not being synced right now.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from shared.models import CustomerTenant, Integration, IntegrationStatus, TenantStatus
from shared.services.tenant_sync import lease_expires, lease_live
from shared.stores.queues import SyncJob, Trigger
from shared.stores.tables import utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)


# A job queued for a tenant whose lease is held becomes visible this long after the lease lapses.
LEASE_GRACE_SECONDS = 5


def queueable(tenant: CustomerTenant, integration: Integration, *, named: bool, defer: bool = False) -> bool:
    """Whether a job may be queued for the tenant now. A tenant being synced right now (lease not
    expired) is skipped, unless `defer`: then it gets a job that waits for the lease to lapse (`delay`)."""
    if tenant.status == TenantStatus.EXCLUDED or not integration.tenant_filter.admits(tenant.tenant_id):
        return False
    if tenant.missing_since is not None and not named:
        return False
    return defer or not lease_live(tenant)


def delay(tenant: CustomerTenant, now: datetime) -> int:
    """Seconds a job for the tenant stays invisible in the queue: 0, or until its live lease lapses.

    A person who asks for a sync of a tenant whose lease is held does not know whether that sync is
    running or died with its worker (whose message reappears only when the host's hold on it ends). The
    job queued now waits for the lease: if the sync finished meanwhile it runs once more, as asked; if
    the sync died, it takes the tenant over (`tenant_sync.claimed`) without waiting for the redelivery.
    """
    if not lease_live(tenant):
        return 0
    lapses = lease_expires(tenant)
    assert lapses is not None
    return max(0, math.ceil((lapses - now).total_seconds())) + LEASE_GRACE_SECONDS


async def queue_run(rt: Runtime, integration: Integration, targets: list[CustomerTenant], trigger: Trigger) -> int:
    """One sync job per tenant in `targets`, all under one new run id; returns how many were queued. A
    tenant whose lease is held gets its job when the lease lapses (`delay`)."""
    run_id = str(uuid.uuid4())
    now = utcnow()
    jobs = [
        SyncJob.model_validate({"integrationId": integration.id, "tenantId": t.tenant_id.lower(),
                                "runId": run_id, "trigger": trigger})
        for t in targets
    ]
    delays = {t.tenant_id.lower(): delay(t, now) for t in targets}
    queued = await rt.queue.enqueue(jobs, delays={k: v for k, v in delays.items() if v}) if jobs else 0
    log.info("integration %s: %d sync job(s) queued (run %s, %s; %d wait for a lease)", integration.id, queued,
             run_id, trigger, sum(1 for v in delays.values() if v))
    return queued


async def enqueue_tenants(rt: Runtime, integration: Integration, trigger: Trigger, tenant_ids: list[str]) -> int:
    """Queue the known tenants named (unknown ones are skipped); returns how many were queued."""
    if integration.status == IntegrationStatus.DISABLED:
        return 0
    wanted = {t.lower() for t in tenant_ids}
    known = await rt.tenants.list_tenants(integration.id)
    targets = [t for t in known
               if t.tenant_id.lower() in wanted and queueable(t, integration, named=True, defer=True)]
    return await queue_run(rt, integration, targets, trigger)


__all__ = ["delay", "enqueue_tenants", "queue_run", "queueable"]
