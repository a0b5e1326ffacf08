"""Hostile Graph and Defender payloads from the simulator: wrong types, missing or unusable ids,
10,000-character names, control characters, markup, duplicate ids within one listing.

The tenant still syncs: every valid record is stored exactly as Microsoft sent it, every unusable one
is left out and counted in the run record's `skipped`, and nothing valid is lost or marked removed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.http import CallStats
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import sync_tenant
from tests.integration.support import (
    FaultInjector,
    all_devices,
    all_software,
    assert_devices_match_truth,
    assert_software_matches_truth,
    figure,
    job,
    requests_since,
    sim_call,
    store_integration,
    truth,
)

pytestmark = pytest.mark.integration
SCENARIO = "demo"
STATE: dict[str, Any] = {}

LONG = "N" * 10_000
# Records memsync must refuse (SkippedRecord): unusable ids, fields of the wrong type.
INVALID_DEVICES = [
    {"id": None},
    {"id": ""},
    {"id": "a/b#c?d"},
    {"id": "bell\x07id"},
    {"id": "~marker-like"},
    {"id": "x" * 10_000},
    {"deviceName": 12345},
    {"isEncrypted": "yes"},
    {"totalStorageSpaceInBytes": "lots"},
    {"freeStorageSpaceInBytes": 1.5},
    {"serialNumber": ["A", "B"]},
    {"complianceState": {"nested": True}},
    {"enrolledDateTime": 20240101},
]
# Odd but valid: stored exactly as sent.
ODD_DEVICES = [
    {"deviceName": LONG},
    {"deviceName": "ctl\x01\x1b[31mred\x7f\u2028\u202eevil\ttab\nnewline"},
    {"userPrincipalName": "émoji-👩‍💻@contoso.com", "model": "'; DROP TABLE devices; --"},
    {"manufacturer": "<script>alert(1)</script>", "serialNumber": "  lower-case serial  "},
    {"imei": "", "wiFiMacAddress": None, "azureADDeviceId": "00000000-0000-0000-0000-000000000000"},
]
INVALID_APPS = [{"id": "a/b"}, {"id": "tab\tid"}, {"id": "y" * 10_000}, {"displayName": 12345},
                {"version": ["1"]}, {"publisher": {"x": 1}}]
ODD_APPS = [{"displayName": LONG}, {"displayName": "ctl\x01\x1b[0m\u202e", "publisher": "<b>bold</b>"}]


def _tenant(scenario: dict[str, Any], key: str) -> str:
    return str(next(t["tenantId"] for t in scenario["tenants"] if t["key"] == key))


@pytest.fixture
async def integration(runtime, scenario):
    if "integration" not in STATE:
        integration = await store_integration(runtime, scenario["registrations"][0])
        await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
        STATE["integration"] = integration
    return STATE["integration"]


def _valid_only(tenant_truth: dict[str, Any], bad_devices: set[str], bad_apps: set[str],
                machines_to_drop: set[Any]) -> dict[str, Any]:
    return {
        **tenant_truth,
        "managedDevices": [d for d in tenant_truth["managedDevices"] if str(d.get("id")) not in bad_devices],
        "detectedApps": [a for a in tenant_truth["detectedApps"] if str(a.get("id")) not in bad_apps],
        "machines": [m for m in tenant_truth["machines"] if m.get("id") not in machines_to_drop],
    }


async def test_a_tenant_with_hostile_records_syncs_what_is_valid(stack, scenario, runtime, integration, request):
    tid = _tenant(scenario, "northwind")
    bad_devices = {str(i) for i in sim_call(stack, "POST", f"/tenants/{tid}/managedDevices",
                                            json={"devices": INVALID_DEVICES})["ids"]}
    assert len(bad_devices) == len(INVALID_DEVICES)
    odd_devices = sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"devices": ODD_DEVICES})["ids"]
    bad_apps = {str(i) for i in sim_call(stack, "POST", f"/tenants/{tid}/detectedApps",
                                         json={"apps": INVALID_APPS})["ids"]}
    sim_call(stack, "POST", f"/tenants/{tid}/detectedApps", json={"apps": ODD_APPS})

    # Defender: for two fresh devices, a machine with wrong-typed fields and one without an id; and machines
    # that cannot be joined at all. Defender data is optional: none of them may fail the tenant.
    fresh = sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"count": 2})["ids"]
    raw = {d["id"]: d for d in truth(stack, tid)["managedDevices"] if d["id"] in fresh}
    typed_wrong = {"id": "hostile-machine-1", "aadDeviceId": raw[fresh[0]]["azureADDeviceId"],
                   "healthStatus": 12345, "riskScore": ["High"], "exposureLevel": None,
                   "onboardingStatus": "Onboarded", "lastSeen": {"when": "now"}, "computerDnsName": LONG}
    no_id = {"id": None, "aadDeviceId": raw[fresh[1]]["azureADDeviceId"], "healthStatus": "Active"}
    unjoinable = [{"id": "hostile-machine-3", "aadDeviceId": 12345},
                  {"id": "hostile-machine-4", "aadDeviceId": "\x00\x01"},
                  {"id": "hostile-machine-5", "aadDeviceId": None, "computerDnsName": "\x1b[2J"}]
    sim_call(stack, "POST", f"/tenants/{tid}/machines", json={"machines": [typed_wrong, no_id, *unjoinable]})

    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    run = result.run
    assert run is not None
    assert run.devices.skipped == len(INVALID_DEVICES), run.devices
    assert run.software.skipped == len(INVALID_APPS), run.software

    tenant_truth = truth(stack, tid)
    stored = await all_devices(runtime, integration.id, tid, top=1000)
    assert not bad_devices & set(stored)
    # The two devices joined to hostile machines: the wrong-typed fields are dropped, not stored.
    assert stored[fresh[0]]["defender"] == {
        "machineId": "hostile-machine-1", "healthStatus": None, "riskScore": None, "exposureLevel": None,
        "onboardingStatus": "Onboarded", "lastSeen": None}
    assert stored[fresh[1]]["defender"] is None
    expected = _valid_only(tenant_truth, bad_devices | set(fresh), bad_apps,
                           {"hostile-machine-1", None, "hostile-machine-3", "hostile-machine-4", "hostile-machine-5"})
    assert_devices_match_truth({k: v for k, v in stored.items() if k not in fresh}, expected, include_defender=True)
    assert stored[odd_devices[0]]["deviceName"] == LONG
    assert_software_matches_truth(await all_software(runtime, integration.id, tid, top=1000), expected)
    assert await all_devices(runtime, integration.id, tid, removed=True, top=1000) == {}

    # What the API serves of them is valid JSON with the same text.
    with stack.api() as api:
        response = api.get(f"/integrations/{integration.id}/tenants/{tid}/devices", params={"top": 1000})
        assert response.status_code == 200
        served = {d["id"]: d for d in response.json()["value"]}
        assert served[odd_devices[1]]["deviceName"] == ODD_DEVICES[1]["deviceName"]
        csv = api.get(f"/integrations/{integration.id}/tenants/{tid}/devices", params={"format": "csv"})
        assert csv.status_code == 200
    figure(request, "hostileRecordsSkipped", run.devices.skipped + run.software.skipped)
    figure(request, "hostileRecordsSent", len(INVALID_DEVICES) + len(INVALID_APPS) + len(ODD_DEVICES)
           + len(ODD_APPS) + 5)


async def test_duplicate_ids_within_one_listing(stack, scenario, runtime, integration, request):
    """A device deleted and re-enrolled between two pages of one listing is listed twice (the listing's
    position moves on): it is stored once, and nothing is lost or marked removed."""
    tid = _tenant(scenario, "contoso")
    sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"count": 1100})
    first = await sync_tenant(runtime, job(integration, tid))
    assert first.outcome == "ok"
    devices = truth(stack, tid)["managedDevices"]
    moved = devices[:3]
    faults = FaultInjector(stack)
    faults.add({"service": "graph", "tenantId": tid, "kind": "latency", "latencyMs": 1500,
                "pathContains": "skiptoken", "count": 1})
    seq = requests_since(stack, 0)[-1]["seq"]
    running = asyncio.create_task(sync_tenant(runtime, job(integration, tid)))
    try:
        # Page one has been answered; page two waits in the simulator: move three page-one devices.
        for _ in range(200):
            log = requests_since(stack, seq, tid)
            if any(e["path"].endswith("managedDevices") and "skiptoken" not in e["query"] for e in log):
                break
            await asyncio.sleep(0.02)
        for device in moved:
            sim_call(stack, "DELETE", f"/tenants/{tid}/managedDevices/{device['id']}")
        sim_call(stack, "POST", f"/tenants/{tid}/managedDevices", json={"devices": moved})
        result = await running
    finally:
        faults.clear()
    assert result.outcome == "ok" and result.run is not None
    listed = [e for e in requests_since(stack, seq, tid) if e["path"].endswith("managedDevices")]
    assert len(listed) == 2 and "skiptoken" in listed[1]["query"], "the listing was not split as planned"
    assert result.run.devices.removed == 0 and result.run.devices.added == 0
    tenant_truth = truth(stack, tid)
    assert_devices_match_truth(await all_devices(runtime, integration.id, tid, top=1000), tenant_truth,
                               include_defender=True)
    assert await all_devices(runtime, integration.id, tid, removed=True, top=1000) == {}
    figure(request, "duplicatesSent", len(moved))
    STATE["duplicate run"] = result.run


def test_duplicate_ids_are_counted_as_skipped():
    run = STATE.get("duplicate run")
    assert run is not None, "test_duplicate_ids_within_one_listing did not run"
    assert run.devices.skipped == 3, run.devices
