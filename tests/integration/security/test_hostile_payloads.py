"""Hostile Graph and Defender payloads from the simulator: wrong types, missing or unusable ids,
10,000-character names, control characters, markup, duplicate ids within one listing.

The tenant still syncs: every valid record is stored as Microsoft sent it (display text bounded, see
shared/mapping/text.py), every unusable one is left out and counted in the run record's `skipped`, and
nothing valid is lost or marked removed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from shared.http import CallStats
from shared.models import Integration
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import SyncResult, sync_tenant
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


@pytest.fixture(scope="module")
async def integration(module_runtime, scenario) -> Integration:
    """The demo MSP, stored once for the module, its tenants recorded."""
    integration = await store_integration(module_runtime, scenario["registrations"][0])
    await record_tenants(module_runtime, integration,
                         await discover_customers(module_runtime, integration, CallStats()))
    return integration


@pytest.fixture(scope="module")
async def tailspin(module_runtime, scenario, integration) -> str:
    """Tailspin's tenant id, synced once: the tests that read its stored copy before they sync need one."""
    tid = _tenant(scenario, "tailspin")
    result = await sync_tenant(module_runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    return tid


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
    # A 10,000-character name is bounded for display, visibly: 1,023 characters and "…".
    assert stored[odd_devices[0]]["deviceName"] == LONG[:1023] + "…"
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


@dataclass(frozen=True)
class DuplicateListing:
    """A contoso sync during which three devices of the listing's first page were deleted and re-enrolled
    while the second page waited: they are listed twice."""

    tenant_id: str
    result: SyncResult
    seq: int  # the simulator's request log before that sync
    moved: list[dict[str, Any]]


@pytest.fixture(scope="module")
async def duplicate_listing(stack, scenario, module_runtime, integration) -> DuplicateListing:
    runtime = module_runtime
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
    return DuplicateListing(tenant_id=tid, result=result, seq=seq, moved=moved)


async def test_duplicate_ids_within_one_listing(stack, runtime, integration, duplicate_listing, request):
    """A device deleted and re-enrolled between two pages of one listing is listed twice (the listing's
    position moves on): it is stored once, and nothing is lost or marked removed."""
    tid, result = duplicate_listing.tenant_id, duplicate_listing.result
    seq, moved = duplicate_listing.seq, duplicate_listing.moved
    assert result.outcome == "ok" and result.run is not None
    listed = [e for e in requests_since(stack, seq, tid) if e["path"].endswith("managedDevices")]
    assert len(listed) == 2 and "skiptoken" in listed[1]["query"], "the listing was not split as planned"
    assert result.run.devices.removed == 0 and result.run.devices.added == 0
    tenant_truth = truth(stack, tid)
    assert_devices_match_truth(await all_devices(runtime, integration.id, tid, top=1000), tenant_truth,
                               include_defender=True)
    assert await all_devices(runtime, integration.id, tid, removed=True, top=1000) == {}
    figure(request, "duplicatesSent", len(moved))


def test_duplicate_ids_are_counted_as_skipped(duplicate_listing):
    run = duplicate_listing.result.run
    assert run is not None, "the sync of the duplicate listing recorded no run"
    assert run.devices.skipped == 3, run.devices


def _patch_raw(stack, path: str, body: dict[str, Any]) -> None:
    """PATCH the simulator with JSON as Microsoft would send it: ASCII, lone surrogates as escapes."""
    sim_call(stack, "PATCH", path, content=json.dumps(body).encode(),
             headers={"Content-Type": "application/json"})


async def test_present_but_unreadable_records_keep_their_stored_copy_and_are_never_removed(
        stack, scenario, runtime, integration):
    """A known device or title whose listing carries one field memsync cannot read is still in Intune:
    its stored copy stays, it is not marked removed, and the tenant says how many were skipped and why."""
    tid = _tenant(scenario, "tailspin")
    first = await sync_tenant(runtime, job(integration, tid))
    assert first.outcome == "ok", first.reason
    before = await all_devices(runtime, integration.id, tid, top=1000)
    apps_before = await all_software(runtime, integration.id, tid, top=1000)
    devices = sorted(before)[:4]
    app = sorted(apps_before)[0]
    breakage = [{"isEncrypted": "true"}, {"totalStorageSpaceInBytes": "256GB"}, {"deviceName": 12345},
                {"imei": "9" * 40_000}]  # over Table Storage's 32K-character property limit
    for device_id, fields in zip(devices, breakage, strict=True):
        _patch_raw(stack, f"/tenants/{tid}/managedDevices/{device_id}", fields)
    _patch_raw(stack, f"/tenants/{tid}/detectedApps/{app}", {"version": 10})

    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    assert result.run is not None
    assert result.run.devices.removed == 0 and result.run.software.removed == 0
    assert result.run.devices.skipped == 4 and result.run.software.skipped == 1
    after = await all_devices(runtime, integration.id, tid, top=1000)
    assert set(after) == set(before)
    for device_id in devices:
        assert after[device_id] == before[device_id] | {"lastSeenAt": after[device_id]["lastSeenAt"]}
    assert await all_devices(runtime, integration.id, tid, removed=True, top=1000) == {}
    assert (await all_software(runtime, integration.id, tid, top=1000))[app] == apps_before[app]

    status = await runtime.tenants.get_tenant(integration.id, tid)
    assert status is not None and status.status.value == "ok"
    assert status.counts.skipped == 5
    assert status.counts.devices == len(before) and status.counts.software == len(apps_before)
    notes = {n["code"]: n for n in result.run.notes}
    assert "recordsSkipped" in notes, result.run.notes
    assert "4 devices and 1 software titles" in notes["recordsSkipped"]["message"]
    assert "isEncrypted is str" in notes["recordsSkipped"]["message"]
    with stack.api() as api:
        served = api.get(f"/integrations/{integration.id}/tenants").json()["value"]
        assert next(t for t in served if t["tenantId"] == tid)["counts"]["skipped"] == 5

    # Once Intune sends readable values again, they are stored and nothing is skipped.
    for device_id in devices:
        _patch_raw(stack, f"/tenants/{tid}/managedDevices/{device_id}",
                   {"isEncrypted": True, "totalStorageSpaceInBytes": 256, "deviceName": "fixed", "imei": None})
    _patch_raw(stack, f"/tenants/{tid}/detectedApps/{app}", {"version": "10"})
    healed = await sync_tenant(runtime, job(integration, tid))
    assert healed.run is not None and healed.run.devices.skipped == 0 and healed.run.devices.changed == 4
    assert "recordsSkipped" not in {n["code"] for n in healed.run.notes}


async def test_lone_surrogates_and_huge_names_are_made_storable(stack, runtime, integration, tailspin):
    """A lone UTF-16 surrogate (sent as a JSON escape) in a device name or the organization's name, or a
    100,000-character organization name, cannot wedge the tenant: the text is made storable."""
    tid = tailspin
    device_id = sorted(await all_devices(runtime, integration.id, tid, top=1000))[0]
    _patch_raw(stack, f"/tenants/{tid}/managedDevices/{device_id}", {"deviceName": "PC-\ud800-01"})
    _patch_raw(stack, f"/tenants/{tid}", {"displayName": "\udc00Tailspin"})
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    stored = await all_devices(runtime, integration.id, tid, top=1000)
    assert stored[device_id]["deviceName"] == "PC-\ufffd-01"
    status = await runtime.tenants.get_tenant(integration.id, tid)
    assert status is not None and status.display_name == "\ufffdTailspin"

    _patch_raw(stack, f"/tenants/{tid}", {"displayName": "T" * 100_000})
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok", result.reason
    status = await runtime.tenants.get_tenant(integration.id, tid)
    assert status is not None and status.display_name == "T" * 1023 + "…"
    _patch_raw(stack, f"/tenants/{tid}", {"displayName": "Tailspin Toys"})


@pytest.mark.parametrize("link", ["https://attacker.invalid/graph/v1.0/deviceManagement/managedDevices?$skiptoken=2",
                                  "http://{host}/graph/v1.0/deviceManagement/managedDevices?$skiptoken=2"])
async def test_a_foreign_next_link_is_never_followed_and_nothing_is_removed(stack, runtime, integration, tailspin,
                                                                            link):
    """The simulator's `nextLink` fault puts a foreign or plain-http continuation link on the first page
    of the device listing: memsync sends nothing there, marks nothing removed, and says why."""
    tid = tailspin
    # Settle first: earlier tests renamed the tenant, and a rename rewrites its rows (tenantDisplayName).
    assert (await sync_tenant(runtime, job(integration, tid))).outcome == "ok"
    before = await all_devices(runtime, integration.id, tid, top=1000)
    faults = FaultInjector(stack)
    faults.add({"service": "graph", "tenantId": tid, "kind": "nextLink", "link": link,
                "pathContains": "managedDevices", "count": 1})
    seq = requests_since(stack, 0)[-1]["seq"]
    try:
        result = await sync_tenant(runtime, job(integration, tid))
    finally:
        faults.clear()
    assert result.outcome == "error" and result.error is not None
    assert "not followed" in result.error.message
    listed = [e for e in requests_since(stack, seq, tid) if e["path"].endswith("managedDevices")]
    assert len(listed) == 1, listed  # the first page only; the link was never requested
    assert await all_devices(runtime, integration.id, tid, top=1000) == before
    assert await all_devices(runtime, integration.id, tid, removed=True, top=1000) == {}
