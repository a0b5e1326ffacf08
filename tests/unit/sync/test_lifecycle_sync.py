"""OS support through `TenantSync` (httpx.MockTransport, in-memory Table Storage, as test_tenant_sync.py): each
device is judged on the sync's day, stored in its own columns, counted in the listing's facts, and rewritten
once when its status moves on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.mapping.lifecycle import os_support
from shared.stores.assets import AssetStore
from shared.stores.tables import DEVICES_TABLE
from tests.unit.sync.test_tenant_sync import INTEGRATION, TENANT, Harness, Microsoft, _estate

pytestmark = pytest.mark.unit
# 25H2 (Home/Pro until 2027-10-12), 24H2 (Home/Pro until 2026-10-13), Server 2025 on the same build, a phone.
SYSTEMS = [("Windows", "10.0.26200.6899"), ("Windows", "10.0.26100.2033"), ("Windows Server", "10.0.26100.2033"),
           ("iOS", "17.5.1"), ("Windows", "10.0.26200.7019")]


def _harness() -> Harness:
    devices, apps = _estate(len(SYSTEMS), 1)
    for device, (operating_system, version) in zip(devices, SYSTEMS, strict=True):
        device.update(operatingSystem=operating_system, osVersion=version)
    return Harness(Microsoft(devices, apps))


async def _devices(harness: Harness) -> dict[str, dict[str, Any]]:
    page, _ = await AssetStore(harness.tables).list_assets("devices", INTEGRATION.id, TENANT, top=100)
    return {d["id"]: d for d in page}


async def test_each_device_is_judged_on_the_day_of_the_sync_and_stored_in_its_own_columns():
    harness = _harness()
    at = datetime(2027, 3, 1, 23, 59, tzinfo=UTC)
    _, (listed, _) = await harness.sync(at)
    devices = await _devices(harness)
    for raw in harness.microsoft.devices:
        want = os_support(raw["operatingSystem"], raw["osVersion"], today=at.date())
        assert devices[raw["id"]]["osSupport"] == want, raw["osVersion"]
    statuses = [devices[d["id"]]["osSupport"]["status"] for d in harness.microsoft.devices]
    assert statuses == ["supported", "ended", "supported", "unknown", "supported"]
    assert listed.facts == {"osEnded": 1, "osEndingSoon": 0}
    row = harness.rows(DEVICES_TABLE)[harness.microsoft.devices[2]["id"]]
    assert (row["osSupportStatus"], row["osSupportEndsOn"], row["osSupportRelease"]) == (
        "supported", "2034-11-14", "Windows Server 2025")
    assert row["osSupportSource"] == "https://learn.microsoft.com/lifecycle/products/windows-server-2025"
    phone = harness.rows(DEVICES_TABLE)[harness.microsoft.devices[3]["id"]]
    assert phone["osSupportStatus"] == "unknown" and "osSupportEndsOn" not in phone


async def test_a_status_that_moves_on_rewrites_the_device_once():
    harness = _harness()
    await harness.sync(datetime(2027, 3, 1, tzinfo=UTC))
    # 180 days before 25H2's end: both 25H2 devices are ending soon, written again once.
    _, (listed, _) = await harness.sync(datetime(2027, 4, 15, tzinfo=UTC))
    assert listed.diff.counts.changed == 2
    assert listed.facts == {"osEnded": 1, "osEndingSoon": 2}
    _, (listed, _) = await harness.sync(datetime(2027, 4, 16, tzinfo=UTC))
    assert listed.diff.counts.changed == 0
    _, (listed, _) = await harness.sync(datetime(2027, 10, 12, 23, 0, tzinfo=UTC))  # the last day of servicing
    assert listed.diff.counts.changed == 0
    _, (listed, _) = await harness.sync(datetime(2027, 10, 13, tzinfo=UTC))
    assert listed.diff.counts.changed == 2
    assert listed.facts == {"osEnded": 3, "osEndingSoon": 0}
    devices = await _devices(harness)
    assert devices[harness.microsoft.devices[0]["id"]]["osSupport"]["status"] == "ended"
