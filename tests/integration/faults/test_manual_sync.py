"""A manual sync (`POST /api/integrations/{id}/sync`) that cannot reach Microsoft answers quickly: 503 with
Retry-After after `REQUEST_DISCOVERY_SECONDS`, nothing queued, instead of waiting out discovery's retries."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from shared.http import CallStats
from shared.models import CustomerTenant, TenantStatus
from shared.services.fanout import REQUEST_DISCOVERY_SECONDS, discover_customers, record_tenants
from shared.stores.tables import utcnow
from tests.integration.support import api_client, assert_problem, store_integration

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@pytest.fixture(scope="module")
def api(stack, secret_scan):
    with api_client(stack, secret_scan.recorder) as client:
        yield client


async def test_a_manual_sync_that_cannot_reach_microsoft_is_a_quick_503_and_queues_nothing(
    stack, scenario, runtime, faults, api
):
    integration = await store_integration(runtime, scenario["registrations"][0])
    await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
    partner = integration.home_tenant_id
    faults.add(
        {"service": "partnercenter", "kind": "status", "status": 503},
        {"service": "graph", "tenantId": partner, "kind": "status", "status": 503},
    )

    started = time.monotonic()
    response = api.post(f"/integrations/{integration.id}/sync")
    took = time.monotonic() - started

    doc = assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert doc["errors"][0]["code"] == "unreachable"
    assert took < REQUEST_DISCOVERY_SECONDS + 8, took  # the 120 s discovery budget would take 20-40 s
    await asyncio.sleep(1.0)  # a queued job would have been picked up by now
    tenants = await runtime.tenants.list_tenants(integration.id)
    assert tenants and all(t.last_sync_started_at is None for t in tenants)
    stored = await runtime.integrations.get_integration(integration.id)
    assert stored is not None and stored.error is not None and "Customer discovery failed" in stored.error.message


async def test_a_manual_sync_of_a_tenant_held_by_a_dead_sync_takes_over_when_the_lease_lapses(
    stack, scenario, runtime, api
):
    integration = await store_integration(runtime, scenario["registrations"][0])
    await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
    tid = next(t["tenantId"] for t in scenario["tenants"] if t["key"] == "contoso")
    lapses = utcnow() + timedelta(seconds=4)

    def held_by_a_dead_worker(tenant: CustomerTenant) -> CustomerTenant:
        return tenant.model_copy(update={"status": TenantStatus.SYNCING, "last_sync_started_at": utcnow(),
                                         "last_run_id": "dead-run", "lease_id": "dead", "lease_until": lapses})

    await runtime.tenants.update(integration.id, tid, held_by_a_dead_worker)
    listed = api.get(f"/integrations/{integration.id}/tenants", params={"top": 1000}).json()["value"]
    shown = next(t for t in listed if t["tenantId"] == tid)
    assert shown["status"] == "syncing"
    assert abs((datetime.fromisoformat(shown["leaseUntil"].replace("Z", "+00:00")) - lapses).total_seconds()) < 0.01

    response = api.post(f"/integrations/{integration.id}/sync", json={"tenantIds": [tid]})
    assert response.status_code == 202, response.text
    assert response.json()["queued"] == 1

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tenant = await runtime.tenants.get_tenant(integration.id, tid)
        assert tenant is not None
        if tenant.status == TenantStatus.OK:
            break
        await asyncio.sleep(0.5)
    assert tenant.status == TenantStatus.OK and tenant.last_run_id != "dead-run"
    assert tenant.last_sync_started_at is not None and tenant.last_sync_started_at >= lapses
