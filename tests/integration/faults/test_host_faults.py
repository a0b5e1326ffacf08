"""Faults of memsync's own platform, through the local Functions host and its queue: Azurite restarted
during a sync (persistent storage), the host SIGKILLed at random points of a sync and restarted, a job
delivered twice, two hosts consuming one queue.

After each: every tenant's stored devices and software equal the simulator's ground truth (no duplicate,
nothing lost, nothing wrongly marked removed), its run records say how its syncs ended, and the poison
queue is empty (every message here could succeed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from typing import Any

import pytest

from shared.models import TenantStatus
from shared.stores.runs import RunStore
from tests.integration.support import (
    POISON_QUEUE,
    SYNC_QUEUE,
    SecondHost,
    all_devices,
    all_software,
    api_client,
    assert_devices_match_truth,
    assert_software_matches_truth,
    expire_leases,
    figure,
    keep_logs,
    queue,
    queue_contents,
    queue_length,
    start_stack,
    truth,
    wait_for_tenant,
    wait_for_tenants,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCENARIO = "demo"


@pytest.fixture(scope="module")
def stack():
    """This module's own stack: Azurite keeps its data on disk, so it can be restarted mid-sync."""
    devstack = start_stack("test_host_faults", scenario=SCENARIO, persistent_storage=True)
    try:
        yield devstack
    finally:
        devstack.stop()
        keep_logs(devstack, [devstack.workdir / "host2.log"])
        devstack.azurite.cleanup()


@pytest.fixture(scope="module")
def api(stack, secret_scan):
    with api_client(stack, secret_scan.recorder) as client:
        yield client


@pytest.fixture(scope="module")
def expected(scenario) -> dict[str, dict[str, Any]]:
    return {t["tenantId"]: t for t in scenario["tenants"]}


@pytest.fixture(scope="module")
def integration_id(api, scenario) -> str:
    """The demo MSP, registered through the API once for the module, every tenant's first sync settled."""
    response = api.post("/integrations", json=scenario["registrations"][0])
    assert response.status_code == 201, response.text
    registered = str(response.json()["id"])
    wait_for_tenants(api, registered)
    return registered


async def _assert_every_tenant_matches_truth(stack, runtime, integration_id: str, expected) -> None:
    tenants = {t.tenant_id: t for t in await runtime.tenants.list_tenants(integration_id)}
    assert set(tenants) == set(expected)
    runs = RunStore(runtime.tables)
    for tid, want in expected.items():
        tenant = tenants[tid]
        assert tenant.status.value == want["expected"]["status"], (want["key"], tenant.status, tenant.error)
        records = await runs.list_runs(integration_id, tid, top=100)
        assert records, f"{want['key']}: no run record"
        assert all(r["status"] in ("ok", "error") and r["finishedAt"] for r in records)
        assert all(r["error"] and r["error"]["code"] for r in records if r["status"] == "error")
        assert records[0]["status"] == want["expected"]["status"], (want["key"], records[0])
        if tenant.status != TenantStatus.OK:
            assert tenant.error is not None and tenant.error.code == want["expected"]["errorCode"]
            continue
        tenant_truth = truth(stack, tid)
        devices = await all_devices(runtime, integration_id, tid, top=1000)  # fails on a duplicate
        assert_devices_match_truth(devices, tenant_truth, include_defender=True)
        assert await all_devices(runtime, integration_id, tid, removed=True, top=1000) == {}
        assert_software_matches_truth(await all_software(runtime, integration_id, tid, top=1000), tenant_truth)
        assert tenant.counts.devices == len(tenant_truth["managedDevices"])


def _poison_is_empty(stack) -> None:
    assert queue_contents(stack, POISON_QUEUE) == [], "a message that could succeed was poisoned"


def _settled_after(api, integration_id: str, since: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Every tenant settled with a sync that finished after `since`."""
    def done() -> list[dict[str, Any]] | None:
        tenants = api.get(f"/integrations/{integration_id}/tenants", params={"top": 1000}).json()["value"]
        ok = all(t["status"] in ("ok", "error") and (t["lastSyncFinishedAt"] or "") > since for t in tenants)
        return tenants if tenants and ok else None

    return wait_until(done, timeout, 0.3, "every tenant to finish a new sync")  # type: ignore[no-any-return]


def _dropped_as_busy(stack) -> int:
    text = stack.host_log.read_text(errors="replace") if stack.host_log.exists() else ""
    return text.count("busy the tenant is being synced by this job")


def _now_stamp() -> str:
    from shared.mapping.changes import stamp
    from shared.stores.tables import utcnow

    return stamp(utcnow())


async def test_host_killed_at_random_points_of_a_sync(stack, integration_id, runtime, api, expected, faults, request):
    """SIGKILL at a random moment of a manual sync of every tenant, three times; then the time the
    10-minute leases need is fast-forwarded and the sync runs again."""
    wait_for_tenants(api, integration_id)
    rng = random.Random(20240611)
    faults.add({"service": "graph", "kind": "latency", "latencyMs": 60, "pathContains": "deviceManagement"})
    for _ in range(3):
        assert api.post(f"/integrations/{integration_id}/sync").status_code == 202
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        stack.restart_host(kill=True)
        figure(request, "faultsInjected", 1)
        # Right after the crash: what is stored is a consistent subset of the truth.
        for tid, want in expected.items():
            if want["expected"]["status"] != "ok":
                continue
            stored = await all_devices(runtime, integration_id, tid, removed=None, top=1000)
            raw = {d["id"]: d for d in truth(stack, tid)["managedDevices"]}
            assert set(stored) <= set(raw), "a device that does not exist was stored"
            assert all(d["removedAt"] is None for d in stored.values()), "a crash marked devices removed"
    faults.clear()

    # Fast-forward: the killed host's messages stay invisible for the host's 10-minute message lease and
    # the tenants' leases last 10 minutes; after that the jobs run again. Both are emulated here.
    with queue(stack, SYNC_QUEUE, base64_messages=False) as client:
        client.clear_messages()
    await expire_leases(runtime, integration_id)
    since = _now_stamp()
    assert api.post(f"/integrations/{integration_id}/sync").status_code == 202
    _settled_after(api, integration_id, since)
    await _assert_every_tenant_matches_truth(stack, runtime, integration_id, expected)
    _poison_is_empty(stack)
    figure(request, "faultCases", 1)


def _message(integration_id: str, tenant_id: str, run_id: str) -> str:
    body = {"integrationId": integration_id, "tenantId": tenant_id, "runId": run_id, "trigger": "manual"}
    return base64.b64encode(json.dumps(body).encode()).decode()


async def test_a_job_delivered_twice(stack, integration_id, runtime, api, expected, request):
    wait_for_tenants(api, integration_id)
    tid = next(t for t, v in expected.items() if v["key"] == "contoso")
    run_id = str(uuid.uuid4())
    since = _now_stamp()
    with queue(stack, SYNC_QUEUE, base64_messages=False) as client:
        for _ in range(2):
            client.send_message(_message(integration_id, tid, run_id))
    wait_until(lambda: queue_length(stack, SYNC_QUEUE) == 0, 60, 0.2, "the queue to empty")
    wait_for_tenant(api, integration_id, tid, after=since)
    runs = await RunStore(runtime.tables).list_runs(integration_id, tid, top=100)
    ours = [r for r in runs if r["runId"] == run_id]
    assert len(ours) == 1 and ours[0]["status"] == "ok", ours
    await _assert_every_tenant_matches_truth(stack, runtime, integration_id, expected)
    _poison_is_empty(stack)
    figure(request, "faultsInjected", 1)
    figure(request, "faultCases", 1)


async def test_two_hosts_consume_one_queue(stack, integration_id, runtime, api, expected, request):
    wait_for_tenants(api, integration_id)
    second = SecondHost(stack)
    with second:
        since = _now_stamp()
        tenants = list(expected)
        run_ids = {tid: str(uuid.uuid4()) for tid in tenants}
        with queue(stack, SYNC_QUEUE, base64_messages=False) as client:
            # Every tenant's job three times (the same run id: one job delivered thrice), across two hosts.
            for _ in range(3):
                for tid in tenants:
                    client.send_message(_message(integration_id, tid, run_ids[tid]))
        wait_until(lambda: queue_length(stack, SYNC_QUEUE) == 0, 60, 0.2, "the queue to empty")
        _settled_after(api, integration_id, since)
        invocations = second.text().count("Executing 'Functions.sync_tenant'")
    assert invocations >= 1, "the second host never took a message"
    runs = RunStore(runtime.tables)
    for tid in tenants:
        ours = [r for r in await runs.list_runs(integration_id, tid, top=100) if r["runId"] == run_ids[tid]]
        if expected[tid]["expected"]["status"] == "ok":
            assert len(ours) == 1, (expected[tid]["key"], ours)  # the copies found it done (or busy)
        else:
            # A failed run is not "done": each delivery is another attempt (shared/stores/runs.py), and each
            # ends with the same error.
            assert ours and {r["error"]["code"] for r in ours} == {expected[tid]["expected"]["errorCode"]}
    await _assert_every_tenant_matches_truth(stack, runtime, integration_id, expected)
    _poison_is_empty(stack)
    figure(request, "faultsInjected", 2)
    figure(request, "faultCases", 1)


def _host_log_count(stack, text: str) -> int:
    log = stack.host_log.read_text(errors="replace") if stack.host_log.exists() else ""
    return log.count(text)


def _took_over(stack) -> int:
    return _host_log_count(stack, "takes over the lease its previous attempt left")


def _sync_invocations(stack) -> tuple[int, int]:
    """How many sync_tenant invocations the host log shows started and ended (a killed host's never end)."""
    return (_host_log_count(stack, "Executing 'Functions.sync_tenant'"),
            _host_log_count(stack, "Executed 'Functions.sync_tenant'"))


# Last in the module: it is the slowest, and a failure here would leave tenants 'syncing' for 10 minutes.
async def test_azurite_restarted_during_a_sync(stack, integration_id, runtime, api, expected, faults, request):
    """Storage goes away while every tenant's sync is reading Graph (slowed to 0.6 s a page), and stays
    away until every sync then running has ended: each met the outage and outlasted the storage SDK's
    connection retries (about 5 s), so it failed, holding its tenant's lease. Azurite then comes back
    with its data (persistent mode) while the host's own queue client is still retrying (7.5 s) to make
    the failed messages visible again. Each redelivery (dequeue count 2) must take over the lease its
    failed attempt left, not be dropped as 'busy' with the tenant stuck in 'syncing'.

    Waiting for the syncs to end, not for a fixed time, makes the case the same on every run: at least one
    attempt fails after its claim, and none rides the outage out on a lucky retry."""
    wait_for_tenants(api, integration_id)
    faults.add({"service": "graph", "kind": "latency", "latencyMs": 600, "pathContains": "deviceManagement"})
    since = _now_stamp()
    busy_before, took_over_before = _dropped_as_busy(stack), _took_over(stack)
    failed_before = _host_log_count(stack, "Executed 'Functions.sync_tenant' (Failed")
    started_before, ended_before = _sync_invocations(stack)

    def none_running() -> bool:
        started, ended = _sync_invocations(stack)
        return started - started_before == ended - ended_before

    assert api.post(f"/integrations/{integration_id}/sync").status_code == 202
    wait_until(lambda: any(t["status"] == "syncing" for t in api.get(
        f"/integrations/{integration_id}/tenants").json()["value"]), 30, 0.05, "a tenant to be syncing")
    stack.azurite.stop()
    try:
        wait_until(none_running, 30, 0.05, "the running syncs to fail")
    finally:
        stack.azurite.start()
    faults.clear()
    failed = _host_log_count(stack, "Executed 'Functions.sync_tenant' (Failed") - failed_before
    assert failed >= 1, "no sync met the outage"
    # A failed attempt is redelivered after host.json's visibilityTimeout (15 s).
    _settled_after(api, integration_id, since, timeout=90)
    assert _took_over(stack) > took_over_before, "no redelivery met its failed attempt's lease"
    assert _dropped_as_busy(stack) == busy_before, "a redelivery was dropped behind its dead attempt's lease"
    runs = RunStore(runtime.tables)
    redelivered = [r for tid in expected for r in await runs.list_runs(integration_id, tid, top=100)
                   if r["startedAt"] > since and r["attempt"] > 1]
    assert redelivered, "no run record of a redelivered attempt"
    await _assert_every_tenant_matches_truth(stack, runtime, integration_id, expected)
    _poison_is_empty(stack)
    figure(request, "faultsInjected", failed + 1)  # the restart itself and the attempts it failed
    figure(request, "faultCases", 1)
