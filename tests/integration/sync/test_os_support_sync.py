"""OS end of support through a whole sync of the demo tenants: each device's `osSupport` against the lifecycle
verdict on the simulator's ground truth for the day of the sync, the tenant's facts, and the API (JSON, CSV,
the tenant status, the OpenAPI document) giving the same."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date
from typing import Any

import pytest

from shared.mapping.lifecycle import os_support
from tests.integration.support import all_devices, sync_tenants, truth

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@pytest.fixture(scope="module")
async def synced(scenario, module_runtime) -> dict[str, Any]:
    keys = {t["key"]: t["tenantId"] for t in scenario["tenants"]}
    integration, (contoso, northwind) = await sync_tenants(
        module_runtime, scenario["registrations"][0], [keys["contoso"], keys["northwind"]])
    return {"integration": integration, "tenants": keys, "results": {"contoso": contoso, "northwind": northwind}}


def _sync_day(result: Any) -> date:
    """The UTC day the sync judged its devices on (it starts, and stamps its devices, at `started_at`)."""
    assert result.outcome == "ok", result
    return result.run.started_at.date()


@pytest.mark.parametrize("key", ["contoso", "northwind"])
async def test_each_device_carries_the_verdict_for_its_release_on_the_day_of_the_sync(stack, synced, module_runtime,
                                                                                       key):
    tid, integration = synced["tenants"][key], synced["integration"]
    today = _sync_day(synced["results"][key])
    raw = {d["id"]: d for d in truth(stack, tid)["managedDevices"]}
    devices = await all_devices(module_runtime, integration.id, tid, top=50)
    assert set(devices) == set(raw)
    for device_id, device in raw.items():
        want = os_support(device.get("operatingSystem"), device.get("osVersion"), today=today)
        assert devices[device_id]["osSupport"] == want, (device_id, device.get("osVersion"))
    statuses = Counter(d["osSupport"]["status"] for d in devices.values())
    # The demo holds Windows 10 22H2 (ended for every edition on 2025-10-14) and phones and Macs, which have no
    # published dates: both kinds are there whatever the day.
    assert statuses["ended"] > 0 and statuses["unknown"] > 0
    for device in devices.values():
        support = device["osSupport"]
        if support["status"] == "unknown":
            assert support == {"status": "unknown", "endsOn": None, "release": None, "source": None}
        else:
            assert support["source"].startswith("https://learn.microsoft.com/lifecycle/products/")
            assert support["release"].startswith(("Windows 10 ", "Windows 11 "))  # the demo has no servers
    windows_10 = [d for d in devices.values() if (d["osVersion"] or "").startswith("10.0.19045.")]
    assert windows_10 and all(d["osSupport"]["release"] == "Windows 10 22H2" and d["osSupport"]["endsOn"] ==
                              "2025-10-14" for d in windows_10)


async def test_the_tenant_counts_its_devices_past_and_near_the_end_of_support(stack, synced, module_runtime):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    today = _sync_day(synced["results"]["contoso"])
    statuses = Counter(os_support(d.get("operatingSystem"), d.get("osVersion"), today=today)["status"]
                       for d in truth(stack, tid)["managedDevices"])
    status = await module_runtime.tenants.get_tenant(integration.id, tid)
    assert status.counts.facts["devices"] == {"osEnded": statuses["ended"], "osEndingSoon": statuses["endingSoon"]}
    with stack.api() as api:
        answer = api.get(f"/integrations/{integration.id}/tenants")
        assert answer.status_code == 200, answer.text
        tenant = next(t for t in answer.json()["value"] if t["tenantId"] == tid)
        assert tenant["counts"]["facts"]["devices"] == status.counts.facts["devices"]


async def test_the_api_lists_and_exports_os_support(stack, synced, module_runtime):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    stored = await all_devices(module_runtime, integration.id, tid, top=50)
    base = f"/integrations/{integration.id}/tenants/{tid}/devices"
    with stack.api() as api:
        listed = {d["id"]: d for d in api.get(base, params={"top": 1000}).json()["value"]}
        assert {k: d["osSupport"] for k, d in listed.items()} == {k: d["osSupport"] for k, d in stored.items()}
        answer = api.get(base, params={"format": "csv"})
        assert answer.status_code == 200, answer.text
        rows = {r["id"]: r for r in csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig")))}
        assert set(rows) == set(stored)
        for device_id, device in stored.items():
            for member in ("status", "endsOn", "release", "source"):
                assert rows[device_id][f"osSupport.{member}"] == (device["osSupport"][member] or ""), device_id
        schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert "osSupport" in schemas["DeviceOut"]["properties"]
    assert schemas["OsSupportOut"]["properties"]["status"]["enum"] == ["supported", "endingSoon", "ended", "unknown"]
    assert schemas["OsSupportOut"]["properties"]["endsOn"]["anyOf"][0]["format"] == "date"


async def test_the_device_list_filters_by_os_support(stack, synced, module_runtime):
    """`?osSupport=ended`: the machines to replace or upgrade, filtered by the storage service."""
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    stored = await all_devices(module_runtime, integration.id, tid, top=50)
    base = f"/integrations/{integration.id}/tenants/{tid}/devices"
    by_status = Counter(d["osSupport"]["status"] for d in stored.values())
    assert len(by_status) > 1  # the demo holds more than one verdict, so the filter has something to split
    with stack.api() as api:
        for status in ("supported", "endingSoon", "ended", "unknown"):
            page = api.get(base, params={"osSupport": status, "top": 1000})
            assert page.status_code == 200, page.text
            got = {d["id"] for d in page.json()["value"]}
            assert got == {k for k, d in stored.items() if d["osSupport"]["status"] == status}, status
        refused = api.get(base, params={"osSupport": "dead"})
        assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "osSupport"
