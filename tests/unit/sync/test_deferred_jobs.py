"""A manual sync of a tenant whose lease is held: queued to run when the lease lapses, not dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from shared.models import CustomerTenant, Integration, IntegrationKind, TenantStatus
from shared.services.jobs import LEASE_GRACE_SECONDS, delay, enqueue_tenants, queueable
from shared.stores.queues import SyncJob, SyncQueue
from shared.stores.tables import utcnow

pytestmark = pytest.mark.unit
INTEGRATION = Integration(id="a0000000-0000-4000-8000-000000000001", kind=IntegrationKind.MULTI_TENANT,
                          display_name="MSP", partner_tenant_id="c0000000-0000-4000-8000-00000000000c",
                          sync_app_id="b0000000-0000-4000-8000-0000000000b1",
                          created_at=datetime(2026, 1, 1, tzinfo=UTC))


def _tenant(n: int, *, lease_seconds: float | None = None) -> CustomerTenant:
    tenant = CustomerTenant(integration_id=INTEGRATION.id, tenant_id=f"d0000000-0000-4000-8000-00000000000{n}")
    if lease_seconds is None:
        return tenant
    now = utcnow()
    return tenant.model_copy(update={"status": TenantStatus.SYNCING, "last_sync_started_at": now,
                                     "lease_id": "held", "lease_until": now + timedelta(seconds=lease_seconds)})


def test_a_held_lease_skips_the_schedule_but_defers_a_manual_sync():
    held = _tenant(1, lease_seconds=120)
    assert not queueable(held, INTEGRATION, named=False)
    assert queueable(held, INTEGRATION, named=True, defer=True)
    now = utcnow()
    assert delay(held, now) == pytest.approx(120 + LEASE_GRACE_SECONDS, abs=2)
    assert delay(_tenant(2), now) == 0
    assert delay(_tenant(3, lease_seconds=-5), now) == 0  # a lapsed lease is free now


class FakeQueueClient:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    async def create_queue(self) -> None:
        return None

    async def send_message(self, content: bytes, *, visibility_timeout: Any = None) -> None:
        self.sent.append((content, visibility_timeout))


class FakeTenants:
    def __init__(self, tenants: list[CustomerTenant]) -> None:
        self.tenants = tenants

    async def list_tenants(self, integration_id: str) -> list[CustomerTenant]:
        return self.tenants


async def test_the_deferred_job_is_sent_invisible_until_the_lease_lapses():
    client = FakeQueueClient()
    held, free = _tenant(1, lease_seconds=300), _tenant(2)
    rt = SimpleNamespace(queue=SyncQueue(client), tenants=FakeTenants([held, free]))  # type: ignore[arg-type]

    queued = await enqueue_tenants(rt, INTEGRATION, "manual", [held.tenant_id, free.tenant_id])  # type: ignore[arg-type]

    assert queued == 2
    waits = {SyncJob.model_validate_json(body).tenant_id: wait for body, wait in client.sent}
    assert waits[free.tenant_id] is None
    assert 300 <= waits[held.tenant_id] <= 300 + LEASE_GRACE_SECONDS + 1
