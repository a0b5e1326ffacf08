"""Per-device software through the local host's routes, against the simulator's truth (`appDevices`).

The demo MSP is synced at service level (`sync_tenant`), which reads the inventory from one
AppInvRawData export job; the routes must then answer, for every device and every app, exactly the
pairs the simulator holds. The fallback (export refused, export never completing) is checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from shared.http import CallStats
from shared.models import Integration
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import sync_tenant
from shared.stores.runs import RunStore
from tests.integration.sync.support import job, last_seq, requests_since, sim_call, store_integration, truth

pytestmark = pytest.mark.integration
SCENARIO = "demo"


def _pairs_from_truth(tenant_truth: dict[str, Any]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    devices = {d["id"] for d in tenant_truth["managedDevices"]}
    by_app = {app: {d for d in holders if d in devices} for app, holders in tenant_truth["appDevices"].items()}
    by_device: dict[str, set[str]] = {}
    for app, holders in by_app.items():
        for device in holders:
            by_device.setdefault(device, set()).add(app)
    return by_device, {a: h for a, h in by_app.items() if h}


def _all(api, url: str, top: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] | None = {"top": top}
    while url:
        response = api.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        url, params = body.get("nextLink"), None
    return items


@dataclass(frozen=True)
class Recorded:
    integration: Integration  # the demo MSP, its tenants recorded
    tenant: dict[str, Any]  # contoso, as the scenario describes it


@pytest.fixture(scope="module")
async def recorded(module_runtime, scenario) -> Recorded:
    integration = await store_integration(module_runtime, scenario["registrations"][0])
    await record_tenants(module_runtime, integration,
                         await discover_customers(module_runtime, integration, CallStats()))
    return Recorded(integration=integration, tenant=next(t for t in scenario["tenants"] if t["key"] == "contoso"))


def _check_routes(stack, integration, tid: str, tenant_truth: dict[str, Any]) -> None:
    by_device, by_app = _pairs_from_truth(tenant_truth)
    base = f"/integrations/{integration.id}/tenants/{tid}"
    with stack.api() as api:
        for device in tenant_truth["managedDevices"]:
            got = _all(api, f"{base}/devices/{device['id']}/software", top=7)
            assert [s["id"] for s in got] == sorted(by_device.get(device["id"], set())), device["id"]
            assert all(s["tenantId"] == tid and "displayName" in s for s in got)
        for app in tenant_truth["detectedApps"]:
            got = _all(api, f"{base}/software/{app['id']}/devices", top=5)
            assert {d["id"] for d in got} == by_app.get(app["id"], set()), app["id"]
            assert all("deviceName" in d for d in got)


async def test_export_job_inventory_matches_the_truth(stack, recorded, runtime):
    integration, tenant = recorded.integration, recorded.tenant
    tid = tenant["tenantId"]
    seq = last_seq(stack)
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    log = requests_since(stack, seq, tid)
    assert sum(1 for e in log if e["path"].endswith("/reports/exportJobs") and e["method"] == "POST") == 1
    assert not [e for e in log if e["path"].endswith("/managedDevices") and "detectedApps" in e["path"]]
    runs = await RunStore(runtime.tables).list_runs(integration.id, tid, top=1)
    assert runs[0]["calls"]["inventory"]["source"] == "export"
    _check_routes(stack, integration, tid, truth(stack, tid))


async def test_unchanged_inventory_is_not_rewritten(stack, recorded, runtime):
    integration, tenant = recorded.integration, recorded.tenant
    tid = tenant["tenantId"]
    await sync_tenant(runtime, job(integration, tid))
    result = await sync_tenant(runtime, job(integration, tid))
    inventory = result.run.calls["inventory"]
    assert inventory["source"] == "export" and inventory["written"] == 0 and inventory["deleted"] == 0
    assert inventory["unchanged"] > 0


async def test_refused_export_falls_back_to_per_app_listing(stack, recorded, runtime):
    integration, tenant = recorded.integration, recorded.tenant
    tid = tenant["tenantId"]
    sim_call(stack, "POST", "/faults", json={"rules": [
        {"service": "graph", "tenantId": tid, "pathContains": "exportJobs", "kind": "status", "status": 403}]})
    # The truth changes too, so the fallback's rows must replace the export's.
    device = truth(stack, tid)["managedDevices"][0]["id"]
    try:
        sim_call(stack, "POST", f"/tenants/{tid}/detectedApps", json={"apps": [
            {"displayName": "Fallback Tool", "version": "1.0", "deviceIds": [device]}]})
        seq = last_seq(stack)
        result = await sync_tenant(runtime, job(integration, tid))
    finally:
        sim_call(stack, "DELETE", "/faults")
    assert result.outcome == "ok"
    assert result.run.calls["inventory"]["source"] == "perApp"
    log = requests_since(stack, seq, tid)
    per_app = [e for e in log if "detectedApps" in e["path"] and e["path"].endswith("/managedDevices")]
    assert len(per_app) >= len(truth(stack, tid)["detectedApps"])  # every app, the new one too
    _check_routes(stack, integration, tid, truth(stack, tid))


async def test_export_that_never_completes_falls_back_in_bounded_time(stack, recorded, runtime):
    integration, tenant = recorded.integration, recorded.tenant
    tid = tenant["tenantId"]
    # The simulator completes a job on its Nth poll; a job that needs a million polls never does.
    sim_call(stack, "PATCH", "/options", json={"exportJobPolls": 1_000_000})
    try:
        result = await sync_tenant(runtime, job(integration, tid), export_max_wait=1.0)
    finally:
        sim_call(stack, "PATCH", "/options", json={"exportJobPolls": 2})
    inventory = result.run.calls["inventory"]
    assert result.outcome == "ok" and inventory["source"] == "perApp"
    assert "did not complete" in inventory["exportProblem"]
    _check_routes(stack, integration, tid, truth(stack, tid))


async def test_failed_export_falls_back(stack, recorded, runtime):
    integration, tenant = recorded.integration, recorded.tenant
    tid = tenant["tenantId"]
    sim_call(stack, "PATCH", "/options", json={"exportJobOutcome": "failed"})
    try:
        result = await sync_tenant(runtime, job(integration, tid))
    finally:
        sim_call(stack, "PATCH", "/options", json={"exportJobOutcome": "completed"})
    inventory = result.run.calls["inventory"]
    assert result.outcome == "ok" and inventory["source"] == "perApp"
    assert "failed" in inventory["exportProblem"]
    _check_routes(stack, integration, tid, truth(stack, tid))


def test_routes_answer_problems_for_unknown_ids(stack, recorded):
    integration = recorded.integration
    tid = recorded.tenant["tenantId"]
    base = f"/integrations/{integration.id}/tenants/{tid}"
    with stack.api() as api:
        missing = api.get(f"{base}/devices/00000000-0000-0000-0000-000000000001/software")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["errors"][0]["field"] == "deviceId"
        assert api.get(f"{base}/software/no-such-app/devices").status_code == 404
        bad = api.get(f"{base}/devices/not-a-guid/software")
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "deviceId"
        assert api.get(f"{base}/software/x/devices", params={"top": 0}).status_code == 400
        assert api.get(f"{base}/software/x/devices", params={"continuation": "zzz"}).status_code == 400
    with stack.api() as api:
        api.headers.pop("x-functions-key")
        assert api.get(f"{base}/software/x/devices").status_code == 401
