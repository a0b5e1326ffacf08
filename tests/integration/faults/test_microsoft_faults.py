"""Faults of the Microsoft APIs during one tenant's sync (the worker's code, `sync_tenant`, in this
process): throttling storms with and without `Retry-After`, 5xx bursts, connection resets, a page failing
in the middle of a listing, a response slower than the client's timeout, Key Vault briefly unavailable.

After each: the sync ends `ok`, the stored devices and software equal the simulator's ground truth field
by field (nothing lost, nothing duplicated, nothing wrongly marked removed) and the run record counts the
retries and throttling it met.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from shared.http import CallStats
from shared.models import Integration
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import TransientSyncError, sync_tenant
from shared.stores.runs import RunStore
from tests.integration.support import (
    all_devices,
    all_software,
    assert_devices_match_truth,
    assert_software_matches_truth,
    expire_leases,
    figure,
    job,
    sim_call,
    store_integration,
    truth,
    wait_for,
)

pytestmark = pytest.mark.integration
SCENARIO = "demo"


def _tenant(scenario: dict[str, Any], key: str) -> str:
    return str(next(t["tenantId"] for t in scenario["tenants"] if t["key"] == key))


async def _recorded_integration(runtime, scenario) -> Integration:
    """A multi-tenant integration, its tenants recorded (the fan-out's first half)."""
    integration = await store_integration(runtime, scenario["registrations"][0])
    discovery = await discover_customers(runtime, integration, CallStats())
    assert discovery.complete
    await record_tenants(runtime, integration, discovery)
    return integration


@pytest.fixture(scope="module")
async def integration(module_runtime, scenario) -> Integration:
    """One multi-tenant integration for the module."""
    return await _recorded_integration(module_runtime, scenario)


@pytest.fixture
async def own_integration(runtime, scenario) -> Integration:
    """An integration of its own, for a test whose devices end up marked removed: the module's integration
    must show none (`_assert_matches_truth`)."""
    return await _recorded_integration(runtime, scenario)


async def _assert_matches_truth(stack, runtime, integration, tenant_id: str) -> None:
    tenant_truth = truth(stack, tenant_id)
    devices = await all_devices(runtime, integration.id, tenant_id, top=1000)
    assert_devices_match_truth(devices, tenant_truth, include_defender=integration.include_defender)
    assert await all_devices(runtime, integration.id, tenant_id, removed=True, top=1000) == {}, \
        "a device was wrongly marked removed"
    assert_software_matches_truth(await all_software(runtime, integration.id, tenant_id, top=1000), tenant_truth)


def _faults(scenario, key: str, service: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"service": service, "tenantId": _tenant(scenario, key), "kind": kind, **extra}


# (id, tenant, rule, what the run record must show)
CASES = [
    ("graph-429-retry-after", "northwind", ("graph", "throttle", {"retryAfter": "0.5", "count": 4}), "throttled"),
    ("graph-429-no-retry-after", "northwind", ("graph", "throttle", {"count": 2}), "throttled"),
    ("defender-429-retry-after", "northwind", ("defender", "throttle", {"retryAfter": "0.5", "count": 3}),
     "throttled"),
    ("defender-429-no-retry-after", "northwind", ("defender", "throttle", {"count": 2}), "throttled"),
    ("graph-500-burst", "northwind", ("graph", "status", {"status": 500, "count": 3}), "retries"),
    ("graph-503-burst", "tailspin", ("graph", "status", {"status": 503, "count": 3, "retryAfter": "0.3"}),
     "retries"),
    ("defender-503-burst", "northwind", ("defender", "status", {"status": 503, "count": 2}), "retries"),
    ("graph-resets", "northwind", ("graph", "reset", {"count": 2}), "retries"),
    ("defender-reset", "northwind", ("defender", "reset", {"count": 1}), "retries"),
    # Entra's token endpoint and Key Vault: azure-identity's and the Key Vault SDK's own retry policies.
    ("entra-429-retry-after", "northwind", ("entra", "throttle", {"retryAfter": "0.5", "count": 2}), None),
    ("entra-429-no-retry-after", "northwind", ("entra", "throttle", {"count": 2}), None),
    ("entra-503-burst", "northwind", ("entra", "status", {"status": 503, "count": 2}), None),
    ("entra-reset", "northwind", ("entra", "reset", {"count": 1}), None),
]


@pytest.mark.parametrize(("tenant_key", "rule", "shows"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_a_fault_burst_is_survived(stack, scenario, runtime, integration, faults, request,
                                         tenant_key, rule, shows):
    service, kind, extra = rule
    tid = _tenant(scenario, tenant_key)
    faults.add(_faults(scenario, tenant_key, service, kind, **extra))
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    assert faults.fired() >= 1, "the fault never fired: the case proves nothing"
    run = (await RunStore(runtime.tables).list_runs(integration.id, tid))[0]
    assert run["status"] == "ok" and run["runId"] == result.run.run_id
    if shows == "throttled":
        assert run["throttled"] >= 1 and run["retries"] >= 1, run
    elif shows == "retries":
        assert run["retries"] >= 1, run
    await _assert_matches_truth(stack, runtime, integration, tid)
    figure(request, "faultCases", 1)


async def test_429_storms_on_every_microsoft_api_at_once(stack, scenario, runtime, integration, faults, request):
    """A third of every Graph, Defender and Entra request of the tenant throttled, with and without
    Retry-After, for the whole sync."""
    tid = _tenant(scenario, "contoso")
    faults.add(
        {"service": "graph", "tenantId": tid, "kind": "throttle", "retryAfter": "0.25", "rate": 0.3, "count": 8},
        {"service": "defender", "tenantId": tid, "kind": "throttle", "rate": 0.5, "count": 2},
        {"service": "entra", "tenantId": tid, "kind": "throttle", "retryAfter": "0.25", "count": 1},
    )
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    assert faults.fired() >= 3
    assert result.run is not None and result.run.calls["throttled"] >= 2
    await _assert_matches_truth(stack, runtime, integration, tid)
    figure(request, "faultCases", 1)


async def test_key_vault_briefly_unavailable(stack, scenario, runtime, integration, faults, request):
    """The sync app's secret is read from Key Vault at the start of every job: 503s, a reset and a 429
    there are retried by the Key Vault client."""
    tid = _tenant(scenario, "tailspin")
    faults.add(
        {"service": "vault", "kind": "status", "status": 503, "pathContains": integration.id, "count": 2},
        {"service": "vault", "kind": "reset", "pathContains": integration.id, "count": 1},
        {"service": "vault", "kind": "throttle", "retryAfter": "0.3", "pathContains": integration.id, "count": 1},
    )
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    assert faults.fired() == 4
    await _assert_matches_truth(stack, runtime, integration, tid)
    figure(request, "faultCases", 1)


async def test_key_vault_down_for_longer_is_transient_and_the_retry_succeeds(
        stack, scenario, runtime, integration, faults, request):
    tid = _tenant(scenario, "tailspin")
    faults.add({"service": "vault", "kind": "status", "status": 503, "pathContains": integration.id})
    with pytest.raises(TransientSyncError) as raised:
        await sync_tenant(runtime, job(integration, tid))
    assert raised.value.error.code.value == "unreachable"
    stored = await runtime.tenants.get_tenant(integration.id, tid)
    assert stored.status.value == "error" and stored.error.code == "unreachable" and stored.error.action
    faults.clear()
    result = await sync_tenant(runtime, job(integration, tid))  # what the host's redelivery does
    assert result.outcome == "ok"
    await _assert_matches_truth(stack, runtime, integration, tid)
    figure(request, "faultCases", 1)


async def test_a_page_failing_in_the_middle_of_a_listing(stack, scenario, runtime, own_integration, faults, request):
    """The second page of managedDevices keeps failing: what was read is stored, nothing is marked removed,
    the job is retried; the retry completes the listing and the stored assets equal the ground truth."""
    integration = own_integration
    tid = _tenant(scenario, "contoso")
    sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"count": 1100, "withDefender": True})
    first = await sync_tenant(runtime, job(integration, tid))  # a baseline: every device stored once
    assert first.outcome == "ok"
    # Some devices go, some come: a failed listing must neither remove the first nor lose the second.
    before = truth(stack, tid)["managedDevices"]
    for device in before[1000:1003]:
        sim_call(stack, "DELETE", f"/tenants/{tid}/managedDevices/{device['id']}")
    sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"count": 5, "withDefender": True})

    faults.add({"service": "graph", "tenantId": tid, "kind": "status", "status": 503,
                "pathContains": "skiptoken", "count": 50})
    with pytest.raises(TransientSyncError):  # a short budget: the retries would otherwise take ~30 s
        await sync_tenant(runtime, job(integration, tid), budget_seconds=3)
    stored = await all_devices(runtime, integration.id, tid, removed=None, top=1000)
    assert all(d["removedAt"] is None for d in stored.values()), "a failed listing marked devices removed"
    failed_run = (await RunStore(runtime.tables).list_runs(integration.id, tid))[0]
    assert failed_run["status"] == "error" and failed_run["error"]["code"] == "unreachable"
    assert failed_run["counts"]["devices"]["removed"] == 0
    faults.clear()

    # A short burst on the same page is absorbed within one run.
    faults.add({"service": "graph", "tenantId": tid, "kind": "status", "status": 503,
                "pathContains": "skiptoken", "count": 2})
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok" and result.run is not None
    assert result.run.devices.removed == 3 and result.run.devices.added == 5
    tenant_truth = truth(stack, tid)
    assert_devices_match_truth(await all_devices(runtime, integration.id, tid, top=1000), tenant_truth,
                               include_defender=True)
    gone = await all_devices(runtime, integration.id, tid, removed=True, top=1000)
    assert set(gone) == {d["id"] for d in before[1000:1003]}
    figure(request, "faultCases", 1)


async def test_partner_discovery_survives_throttling_and_5xx(stack, scenario, runtime, integration, faults,
                                                             request):
    faults.add(
        {"service": "partnercenter", "kind": "throttle", "retryAfter": "0.3", "count": 2},
        {"service": "partnercenter", "kind": "status", "status": 503, "count": 1},
        {"service": "graph", "kind": "throttle", "pathContains": "contracts", "count": 1},
        {"service": "graph", "kind": "reset", "pathContains": "delegatedAdminCustomers", "count": 1},
    )
    discovery = await discover_customers(runtime, integration, CallStats())
    assert discovery.complete, [e.info for e in discovery.errors]
    assert set(discovery.tenants) == {t["tenantId"] for t in scenario["tenants"]}
    assert faults.fired() == 5
    figure(request, "faultCases", 1)


@pytest.mark.parametrize("kind", ["throttle", "status"])
async def test_entra_down_for_longer_is_transient_not_a_tenant_error(stack, scenario, runtime, integration, faults,
                                                                     request, kind):
    """Entra answering 429 or 503 past azure-identity's retries is an outage to retry, not a refusal that
    a person must fix: the job is redelivered (TransientSyncError), and the retry succeeds."""
    tid = _tenant(scenario, "tailspin")
    faults.add({"service": "entra", "tenantId": tid, "kind": kind, "status": 503 if kind == "status" else 429,
                "retryAfter": "0.2"})
    with pytest.raises(TransientSyncError) as raised:
        await sync_tenant(runtime, job(integration, tid))
    assert raised.value.error.code.value in ("unreachable", "throttled")
    faults.clear()
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok"
    await _assert_matches_truth(stack, runtime, integration, tid)
    figure(request, "faultCases", 1)


@pytest.mark.slow
async def test_a_response_slower_than_the_client_timeout(stack, scenario, runtime, integration, faults, request):
    """One Graph page does not answer within the HTTP client's 30 s read timeout: it is asked again."""
    tid = _tenant(scenario, "tailspin")
    faults.add({"service": "graph", "tenantId": tid, "kind": "slow", "latencyMs": 35_000,
                "pathContains": "managedDevices", "count": 1})
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok"
    assert result.run is not None and result.run.calls["retries"] >= 1
    await _assert_matches_truth(stack, runtime, integration, tid)
    figure(request, "faultCases", 1)


async def _wait_claimed(runtime, integration, tid: str, run_id: str):
    async def claimed() -> Any:
        tenant = await runtime.tenants.get_tenant(integration.id, tid)
        ok = tenant.status.value == "syncing" and tenant.last_run_id == run_id and tenant.lease_id
        return tenant if ok else None

    return await wait_for(claimed, seconds=10, interval=0.05)


async def test_a_job_redelivered_after_its_attempt_died_is_run(stack, scenario, runtime, integration, faults):
    """The host redelivers a message (dequeue count 2) after the attempt that held it died mid-sync; the
    redelivery must sync the tenant, not drop the job as 'busy' behind the dead attempt's lease."""
    tid = _tenant(scenario, "northwind")
    faults.add({"service": "graph", "tenantId": tid, "kind": "latency", "latencyMs": 3000,
                "pathContains": "managedDevices", "count": 1})
    the_job = job(integration, tid)
    attempt = asyncio.create_task(sync_tenant(runtime, the_job, attempt=1))
    try:
        held = await _wait_claimed(runtime, integration, tid, the_job.run_id)
        attempt.cancel()  # the worker dies; its lease stays behind
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        faults.clear()
        result = await sync_tenant(runtime, the_job, attempt=2)
        assert result.outcome == "ok", result.reason
        assert result.run is not None and result.run.attempt == 2
        tenant = await runtime.tenants.get_tenant(integration.id, tid)
        assert tenant.status.value == "ok" and tenant.last_run_id == the_job.run_id
        assert tenant.lease_id is None and tenant.lease_until is None, "the lease was not released"
        assert tenant.last_sync_started_at > held.last_sync_started_at  # the redelivery's own start
        await _assert_matches_truth(stack, runtime, integration, tid)
    finally:
        await expire_leases(runtime, integration.id)  # whatever happened, later tests find the tenant free


async def test_a_second_copy_of_a_running_job_is_busy(stack, scenario, runtime, integration, faults):
    """A message the queue delivered twice: while the first copy syncs, the second (also a first
    delivery) is 'busy' and sends no request; only one run record is written."""
    tid = _tenant(scenario, "northwind")
    faults.add({"service": "graph", "tenantId": tid, "kind": "latency", "latencyMs": 2000,
                "pathContains": "managedDevices", "count": 1})
    the_job = job(integration, tid)
    first = asyncio.create_task(sync_tenant(runtime, the_job, attempt=1))
    try:
        await _wait_claimed(runtime, integration, tid, the_job.run_id)
        copy = await sync_tenant(runtime, the_job, attempt=1)
        assert copy.outcome == "busy", copy
        assert "this job" in copy.reason
        result = await first
        assert result.outcome == "ok", result.reason
        again = await sync_tenant(runtime, the_job, attempt=1)  # a late copy finds the run done
        assert again.outcome == "alreadyDone", again
        runs = await RunStore(runtime.tables).list_runs(integration.id, tid, top=100)
        assert [r["attempt"] for r in runs if r["runId"] == the_job.run_id] == [1]
    finally:
        faults.clear()
        await expire_leases(runtime, integration.id)


async def test_an_attempt_whose_lease_was_taken_over_writes_no_status(stack, scenario, runtime, integration,
                                                                      faults):
    """The attempt the host gave up on was not dead after all (a host cut off from storage, say): the
    redelivery takes the lease over and ends the sync; when the old attempt finishes later it must not
    overwrite the tenant's status, because its lease token is no longer the tenant's."""
    tid = _tenant(scenario, "northwind")
    faults.add({"service": "graph", "tenantId": tid, "kind": "latency", "latencyMs": 4000,
                "pathContains": "managedDevices", "count": 1})
    the_job = job(integration, tid)
    old = asyncio.create_task(sync_tenant(runtime, the_job, attempt=1))
    try:
        held = await _wait_claimed(runtime, integration, tid, the_job.run_id)
        # The fault fired for the old attempt's first page (count 1): the redelivery reads at full speed.
        await wait_for(lambda: _fired(faults), seconds=10, interval=0.05)
        redelivered = await sync_tenant(runtime, the_job, attempt=2)
        assert redelivered.outcome == "ok", redelivered.reason
        assert not old.done(), "the old attempt finished first; the case did not happen"
        after = await runtime.tenants.get_tenant(integration.id, tid)
        assert after.lease_id is None and after.lease_id != held.lease_id
        late = await old
        assert late.outcome == "ok"  # its reads and idempotent writes were fine; only the status is not its
        final = await runtime.tenants.get_tenant(integration.id, tid)
        assert final.last_sync_finished_at == after.last_sync_finished_at, "the old attempt wrote the status"
        assert final.last_sync_started_at == after.last_sync_started_at
        await _assert_matches_truth(stack, runtime, integration, tid)
    finally:
        faults.clear()
        if not old.done():
            old.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old
        await expire_leases(runtime, integration.id)


async def _fired(faults) -> bool:
    return faults.fired() >= 1
