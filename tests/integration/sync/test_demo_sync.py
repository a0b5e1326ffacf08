"""The sync against the simulator's `demo` scenario: fan-out through the queue to the local Functions
host's worker, then service-level runs (`sync_tenant(rt, job)`) after the simulator changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from shared.http import CallStats
from shared.models import CustomerTenant, Integration, TenantStatus
from shared.services.fanout import discover_customers, enqueue_integration, record_tenants
from shared.services.tenant_sync import sync_tenant
from shared.stores.assets import AssetStore
from shared.stores.runs import RunStore

from .support import (
    all_devices,
    all_software,
    assert_devices_match_truth,
    assert_software_matches_truth,
    job,
    last_seq,
    requests_since,
    sim_call,
    store_integration,
    truth,
    wait_for,
)

pytestmark = pytest.mark.integration
SCENARIO = "demo"


def _by_key(scenario: dict[str, Any], key: str) -> dict[str, Any]:
    return next(t for t in scenario["tenants"] if t["key"] == key)


@dataclass(frozen=True)
class FirstSync:
    """A tenant's assets as its first sync stored them, and the simulator's truth then."""

    devices: dict[str, dict[str, Any]]
    software: dict[str, dict[str, Any]]
    truth: dict[str, Any]


@dataclass(frozen=True)
class FannedOut:
    """The demo MSP stored once for the module and fanned out through the queue to the host's worker,
    read as soon as every tenant had settled (later tests change the simulator and sync again)."""

    integration: Integration
    queued: int
    tenants: dict[str, CustomerTenant]
    first_syncs: dict[str, FirstSync]  # the tenants that synced ok


@pytest.fixture(scope="module")
async def fanned_out(stack, scenario, module_runtime) -> FannedOut:
    runtime = module_runtime
    integration = await store_integration(runtime, scenario["registrations"][0])
    queued = await enqueue_integration(runtime, integration, "registration")
    expected = {t["tenantId"]: t for t in scenario["tenants"]}

    async def finished():
        tenants = await runtime.tenants.list_tenants(integration.id)
        done = [t for t in tenants if t.status in (TenantStatus.OK, TenantStatus.ERROR)]
        return tenants if len(done) == len(expected) else None

    tenants = {t.tenant_id: t for t in await wait_for(finished, seconds=180)}
    first_syncs = {
        tid: FirstSync(devices=await all_devices(runtime, integration.id, tid),
                       software=await all_software(runtime, integration.id, tid), truth=truth(stack, tid))
        for tid, tenant in tenants.items() if tenant.status == TenantStatus.OK
    }
    return FannedOut(integration=integration, queued=queued, tenants=tenants, first_syncs=first_syncs)


@pytest.fixture
async def own_integration(runtime, scenario) -> Integration:
    """An integration of its own, contoso synced, for the test that deletes every asset of one."""
    integration = await store_integration(runtime, scenario["registrations"][0])
    await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
    result = await sync_tenant(runtime, job(integration, _by_key(scenario, "contoso")["tenantId"]))
    assert result.outcome == "ok", result.reason
    return integration


def test_fanout_queues_every_tenant_and_the_worker_syncs_them(scenario, fanned_out):
    integration = fanned_out.integration
    expected = {t["tenantId"]: t for t in scenario["tenants"]}
    assert fanned_out.queued == len(expected)
    tenants = fanned_out.tenants
    assert set(tenants) == set(expected)
    for tid, tenant in tenants.items():
        want = expected[tid]["expected"]
        assert tenant.status.value == want["status"], (expected[tid]["key"], tenant.error)
        assert (tenant.error.code if tenant.error else None) == want["errorCode"], expected[tid]["key"]
        assert tenant.display_name == expected[tid]["displayName"]
        assert tenant.default_domain_name == expected[tid]["defaultDomainName"]
        assert tenant.discovered_by and tenant.last_run_id
        if tenant.status == TenantStatus.OK:
            assert tenant.last_success_at is not None
            assert tenant.counts.devices == expected[tid]["deviceCount"]
            assert tenant.counts.software == expected[tid]["appCount"]
            assert tenant.counts.defender_machines == expected[tid]["matchedDefenderDevices"]
            first = fanned_out.first_syncs[tid]
            assert_devices_match_truth(first.devices, first.truth, include_defender=integration.include_defender)
            assert_software_matches_truth(first.software, first.truth)
        else:
            assert tenant.error is not None and tenant.error.action


async def test_second_sync_reflects_exactly_what_changed(stack, scenario, runtime, fanned_out):
    integration = fanned_out.integration
    contoso = _by_key(scenario, "contoso")
    tid = contoso["tenantId"]
    before = truth(stack, tid)
    devices = before["managedDevices"]
    removed_id, changed_id = devices[0]["id"], devices[1]["id"]
    app_removed, app_changed = before["detectedApps"][0]["id"], before["detectedApps"][1]["id"]
    sim_call(stack, "DELETE", f"/tenants/{tid}/managedDevices/{removed_id}")
    sim_call(stack, "PATCH", f"/tenants/{tid}/managedDevices/{changed_id}",
             json={"deviceName": "RENAMED-PC", "complianceState": "noncompliant"})
    added = sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"count": 1200, "withDefender": True})
    sim_call(stack, "DELETE", f"/tenants/{tid}/detectedApps/{app_removed}")
    sim_call(stack, "PATCH", f"/tenants/{tid}/detectedApps/{app_changed}", json={"version": "99.1"})
    seq = last_seq(stack)

    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok"
    run = result.run
    assert run is not None
    after = truth(stack, tid)
    assert run.devices.added == len(added["ids"])
    assert run.devices.removed == 1
    assert run.devices.changed >= 1  # the renamed one (others may change through app counts)
    assert run.software.removed == 1 and run.software.changed >= 1

    current = await all_devices(runtime, integration.id, tid, top=500)
    assert_devices_match_truth(current, after, include_defender=True)
    assert current[changed_id]["deviceName"] == "RENAMED-PC"
    gone = await all_devices(runtime, integration.id, tid, removed=True)
    assert set(gone) == {removed_id} and gone[removed_id]["removedAt"] is not None
    assert_software_matches_truth(await all_software(runtime, integration.id, tid), after)

    # The request log: each page of the listings read once, with $select; no request twice.
    log = requests_since(stack, seq, tid)
    listings = [e for e in log if e["path"].endswith("/deviceManagement/managedDevices")]
    assert len(listings) >= 2  # 1200+ devices need more than one page of 1000
    queries = [e["query"] for e in listings]
    assert len(queries) == len(set(queries))
    assert "%24select=" in queries[0] or "$select=" in queries[0]
    assert all(e["status"] == 200 for e in listings)

    # A device that comes back clears removedAt.
    restored = next(d for d in before["managedDevices"] if d["id"] == removed_id)
    sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"devices": [restored]})
    result = await sync_tenant(runtime, job(integration, tid))
    back = await AssetStore(runtime.tables).get_asset("devices", integration.id, tid, removed_id)
    assert back is not None and back["removedAt"] is None
    assert result.run is not None and result.run.devices.removed == 0


async def test_a_job_delivered_twice_ends_in_the_same_state(stack, scenario, runtime, fanned_out):
    integration = fanned_out.integration
    tid = _by_key(scenario, "northwind")["tenantId"]
    twice = job(integration, tid, run_id=str(uuid.uuid4()))
    first = await sync_tenant(runtime, twice)
    snapshot = await all_devices(runtime, integration.id, tid, removed=None, top=1000)
    status = await runtime.tenants.get_tenant(integration.id, tid)
    second = await sync_tenant(runtime, twice)
    assert first.outcome == "ok" and second.outcome == "alreadyDone"
    assert await all_devices(runtime, integration.id, tid, removed=None, top=1000) == snapshot
    assert await runtime.tenants.get_tenant(integration.id, tid) == status

    # A new run over unchanged data rewrites nothing.
    third = await sync_tenant(runtime, job(integration, tid))
    assert third.run is not None
    assert (third.run.devices.added, third.run.devices.changed, third.run.devices.removed) == (0, 0, 0)
    assert third.run.devices.unchanged == status.counts.devices
    runs = await RunStore(runtime.tables).list_runs(integration.id, tid)
    assert runs[0]["runId"] == third.run.run_id and runs[0]["requests"] > 0


async def test_two_workers_never_sync_one_tenant_at_once(stack, scenario, runtime, fanned_out):
    import asyncio

    integration = fanned_out.integration
    tid = _by_key(scenario, "tailspin")["tenantId"]
    results = await asyncio.gather(*(sync_tenant(runtime, job(integration, tid)) for _ in range(3)))
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count("ok") == 1 and outcomes.count("busy") == 2


async def test_foreign_and_unknown_jobs_are_ignored(stack, scenario, runtime, fanned_out):
    integration = fanned_out.integration
    other = str(uuid.uuid4())
    assert (await sync_tenant(runtime, job(integration, other))).outcome == "ignored"
    ghost = integration.model_copy(update={"id": str(uuid.uuid4())})
    result = await sync_tenant(runtime, job(ghost, scenario["tenants"][0]["tenantId"]))
    assert result.outcome == "ignored"


async def test_read_api_filters_pages_and_deletes(stack, scenario, runtime, own_integration):
    from shared.stores.assets import InvalidQuery

    integration = own_integration
    tid = _by_key(scenario, "contoso")["tenantId"]
    store = AssetStore(runtime.tables)
    devices = await all_devices(runtime, integration.id, tid, top=1000)
    some = next(iter(devices.values()))
    needle = some["deviceName"][2:6].lower()
    found, _ = await store.list_assets("devices", integration.id, tid, top=1000, search=needle.upper())
    assert some["id"] in {d["id"] for d in found}
    assert all(needle in (d["deviceName"] or "").lower() or needle in (d["serialNumber"] or "").lower()
               for d in found)
    compliant, _ = await store.list_assets("devices", integration.id, tid, top=1000,
                                         filters={"complianceState": "compliant"})
    assert compliant and all(d["complianceState"] == "compliant" for d in compliant)
    with pytest.raises(InvalidQuery):
        await store.list_assets("devices", integration.id, tid, filters={"complianceState": "compliant' or true"})
    with pytest.raises(InvalidQuery):
        await store.list_assets("devices", integration.id, tid, continuation="not-a-token")
    assert await store.get_asset("devices", integration.id, tid, some["id"]) == devices[some["id"]]

    assert await store.delete_assets(integration.id) > 0
    assert await all_devices(runtime, integration.id, tid) == {}
    assert await RunStore(runtime.tables).list_runs(integration.id, tid) == []
