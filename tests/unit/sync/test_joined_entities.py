"""The entities a device joins (Autopilot identities, Entra ID devices, Defender vulnerabilities), licences,
the `collect` choice, and the row layout: `TenantSync` on `httpx.MockTransport` and in-memory Table Storage,
as in `test_tenant_sync.py`."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.cloudsim.generate import machine_for_device
from shared.errors import ErrorCode
from shared.mapping.changes import content_hash, stamp
from shared.stores.assets import LAYOUT, AssetStore, date_text, date_value
from shared.stores.tables import DEVICES_TABLE, LICENCES_TABLE, VULNERABILITIES_TABLE
from tests.unit.api.fakes import ALL_ROLES
from tests.unit.sync.test_tenant_sync import INTEGRATION, NOW, TENANT, Harness, Microsoft, _estate

pytestmark = pytest.mark.unit

EVERY_ROLE = [*ALL_ROLES, "DeviceManagementServiceConfig.Read.All", "Device.Read.All", "Vulnerability.Read.All"]
DEFENDER = "https://api.security.microsoft.com"


def _vulnerability(machine: str, cve: str, severity: str, product: str = "chrome") -> dict[str, Any]:
    return {"id": f"{machine}-_-{cve}-_-google-_-{product}-_-120.0-_-", "cveId": cve, "machineId": machine,
            "fixingKbId": None, "productName": product, "productVendor": "google", "productVersion": "120.0",
            "severity": severity}


@dataclass
class Estate(Microsoft):
    """Microsoft with the joined sources too; `refuse` names paths that answer 403."""

    autopilot: list[dict[str, Any]] = field(default_factory=list)
    entra: list[dict[str, Any]] = field(default_factory=list)
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)
    skus: list[dict[str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    defender_page: int = 3

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in self.refuse:
            self.requests.append(request)
            return httpx.Response(403, json={"error": {"code": "Forbidden", "message": "denied"}})
        if path == "/v1.0/deviceManagement/windowsAutopilotDeviceIdentities":
            self.requests.append(request)
            return self._page(request, self.autopilot, "/deviceManagement/windowsAutopilotDeviceIdentities")
        if path == "/v1.0/devices":
            self.requests.append(request)
            return self._page(request, self.entra, "/devices")
        if path == "/v1.0/subscribedSkus":
            self.requests.append(request)
            return httpx.Response(200, json={"value": self.skus})
        if path == "/api/vulnerabilities/machinesVulnerabilities":
            self.requests.append(request)
            top, skip = int(request.url.params["$top"]), int(request.url.params.get("$skip", "0"))
            size = min(top, self.defender_page)  # a service page smaller than $top comes with its next link
            body: dict[str, Any] = {"value": self.vulnerabilities[skip:skip + size]}
            if skip + size < len(self.vulnerabilities):
                body["@odata.nextLink"] = f"{DEFENDER}{path}?$top={top}&$skip={skip + size}"
            return httpx.Response(200, json=body)
        return super().__call__(request)


def _autopilot(device: dict[str, Any] | None, serial: str, n: int) -> dict[str, Any]:
    return {"id": f"ap-{n}", "serialNumber": serial, "groupTag": f"tag{n}", "enrollmentState":
            "enrolled" if device else "notContacted",
            "managedDeviceId": device["id"] if device else "00000000-0000-0000-0000-000000000000",
            "purchaseOrderIdentifier": f"PO-{n}", "lastContactedDateTime": "2026-10-01T00:00:00Z"}


def _estate_with_joins() -> Estate:
    devices, apps = _estate(5, 1)
    devices[3]["serialNumber"] = "To be filled by O.E.M."
    machines = [machine_for_device(random.Random(n), d, NOW) for n, d in enumerate(devices[:3])]
    worst = machines[0]["id"]
    return Estate(
        devices, apps, machines=machines, page_size=2,
        autopilot=[
            _autopilot(devices[0], devices[0]["serialNumber"], 0),  # by managed device id
            _autopilot(None, devices[1]["serialNumber"].lower(), 1),  # by serial (any case)
            _autopilot(None, "To be filled by O.E.M.", 3),  # a placeholder never joins devices[3]
            _autopilot(None, "0000000", 4),
        ],
        entra=[{"id": f"e-{n}", "deviceId": d["azureADDeviceId"], "displayName": d["deviceName"],
                "trustType": "AzureAd", "isManaged": True, "isCompliant": True, "accountEnabled": True,
                "approximateLastSignInDateTime": "2026-10-30T00:00:00Z"} for n, d in enumerate(devices[:2])]
        + [{"id": "e-byod", "deviceId": "9d6a3c1e-0000-4000-8000-00000000b70d", "displayName": "Phone",
            "isManaged": False}],
        vulnerabilities=[
            _vulnerability(worst, "CVE-2024-1111", "Low"), _vulnerability(worst, "CVE-2025-2222", "Critical"),
            _vulnerability(worst, "CVE-2023-3333", "High"), _vulnerability(worst, "CVE-2025-2222", "Critical",
                                                                          "edge"),
            _vulnerability(machines[1]["id"], "CVE-2024-4444", "medium"),
        ],
        skus=[{"id": f"{TENANT}_sku1", "skuId": "05e9a617-0261-4cee-bb44-138d3ef5d965", "skuPartNumber": "SPE_E3",
               "capabilityStatus": "Enabled", "appliesTo": "User", "consumedUnits": 12,
               "prepaidUnits": {"enabled": 10, "suspended": 0, "warning": 2, "lockedOut": 0}}],
    )


def _harness(estate: Estate, **update: Any) -> Harness:
    harness = Harness(estate, defender=True)
    harness.tokens.roles = list(EVERY_ROLE)
    harness.integration = harness.integration.model_copy(update=update)
    return harness


async def _devices(harness: Harness) -> dict[str, dict[str, Any]]:
    page, _ = await AssetStore(harness.tables).list_assets("devices", INTEGRATION.id, TENANT, top=100)
    return {d["id"]: d for d in page}


async def test_each_device_carries_its_autopilot_identity_entra_device_and_vulnerability_summary():
    estate = _estate_with_joins()
    harness = _harness(estate)

    sync, (listed, _) = await harness.sync()

    devices = await _devices(harness)
    d = estate.devices
    assert devices[d[0]["id"]]["autopilot"] == {
        "id": "ap-0", "groupTag": "tag0", "enrollmentState": "enrolled", "purchaseOrderIdentifier": "PO-0",
        "lastContactedDateTime": "2026-10-01T00:00:00Z", "matchedBy": "managedDeviceId"}
    assert devices[d[1]["id"]]["autopilot"]["matchedBy"] == "serialNumber"
    assert devices[d[3]["id"]]["autopilot"] is None  # placeholder serial: no identity
    assert [devices[x["id"]]["entraDevice"]["id"] if devices[x["id"]]["entraDevice"] else None for x in d] == [
        "e-0", "e-1", None, None, None]
    assert devices[d[0]["id"]]["vulnerabilities"] == {
        "total": 4, "critical": 2, "high": 1, "medium": 0, "low": 1,
        "topCves": ["CVE-2025-2222", "CVE-2023-3333", "CVE-2024-1111"]}
    assert devices[d[1]["id"]]["vulnerabilities"]["medium"] == 1  # "medium" read as Defender's "Medium"
    assert devices[d[2]["id"]]["vulnerabilities"] is None and devices[d[4]["id"]]["vulnerabilities"] is None
    # The tenant's facts, and each listing counted.
    assert sync.listings["vulnerabilities"].facts == {"critical": 2, "high": 1, "medium": 1, "low": 1}
    assert sync.listings["entraDevices"].facts == {"unmanaged": 1}
    assert sync.listings["autopilotDevices"].facts == {"unenrolled": 3}
    assert sync.listings["licences"].facts == {"enabled": 10, "consumed": 12, "overConsumed": 1}
    assert sync.entity_notes == []
    # Vulnerabilities asked for 10,000 at a time, Defender's next link followed, one row each.
    pages = [r for r in estate.requests if r.url.path.endswith("/machinesVulnerabilities")]
    assert [(r.url.params["$top"], r.url.params.get("$skip")) for r in pages] == [("10000", None), ("10000", "3")]
    assert len(harness.rows(VULNERABILITIES_TABLE)) == 5
    # Written once each, joined (the device listing waited for the joined listings).
    assert listed.diff.counts.added == 5 and listed.diff.counts.changed == 0


async def test_an_unchanged_resync_writes_nothing_and_a_changed_join_rewrites_only_its_device():
    estate = _estate_with_joins()
    harness = _harness(estate)
    await harness.sync()

    sync, (listed, _) = await harness.sync(datetime(2026, 11, 2, tzinfo=UTC))
    assert listed.diff.counts.changed == 0 and listed.diff.counts.unchanged == 5
    assert all(r.diff.counts.added + r.diff.counts.changed == 0 for r in sync.listings.values())

    estate.autopilot[0]["groupTag"] = "retired"
    _, (listed, _) = await harness.sync(datetime(2026, 11, 3, tzinfo=UTC))
    assert listed.diff.counts.changed == 1
    assert (await _devices(harness))[estate.devices[0]["id"]]["autopilot"]["groupTag"] == "retired"


async def test_two_identities_sharing_a_serial_join_neither_device():
    estate = _estate_with_joins()
    serial = estate.devices[1]["serialNumber"]
    estate.autopilot.append(_autopilot(None, serial, 9))
    harness = _harness(estate)

    await harness.sync()

    assert (await _devices(harness))[estate.devices[1]["id"]]["autopilot"] is None


async def test_a_joined_listing_refused_keeps_the_devices_summaries_and_is_a_note():
    estate = _estate_with_joins()
    harness = _harness(estate)
    await harness.sync()
    before = await _devices(harness)
    estate.refuse = {"/api/vulnerabilities/machinesVulnerabilities", "/v1.0/devices"}
    estate.autopilot[0]["groupTag"] = "moved"

    sync, _ = await harness.sync(datetime(2026, 11, 2, tzinfo=UTC))

    after = await _devices(harness)
    for device in estate.devices:
        assert after[device["id"]]["vulnerabilities"] == before[device["id"]]["vulnerabilities"]
        assert after[device["id"]]["entraDevice"] == before[device["id"]]["entraDevice"]
    assert after[estate.devices[0]["id"]]["autopilot"]["groupTag"] == "moved"
    assert sorted(n.message.split(" ")[0] for n in sync.entity_notes) == ["entraDevices", "vulnerabilities"]
    assert {n.code for n in sync.entity_notes} == {ErrorCode.PERMISSION_MISSING, ErrorCode.DEFENDER_UNAVAILABLE}
    assert all(not row.get("removedAt") for row in harness.rows(VULNERABILITIES_TABLE).values())


async def test_a_token_without_vulnerability_read_sends_no_vulnerability_request():
    estate = _estate_with_joins()
    harness = _harness(estate)
    harness.tokens.roles = [r for r in EVERY_ROLE if r != "Vulnerability.Read.All"]

    sync, _ = await harness.sync()

    [note] = sync.entity_notes
    assert note.code == ErrorCode.PERMISSION_MISSING and "Vulnerability.Read.All" in note.message + note.action
    assert not [r for r in estate.requests if "vulnerabilities" in r.url.path]
    assert all(d["vulnerabilities"] is None for d in (await _devices(harness)).values())


async def test_collect_reads_only_the_chosen_entities_and_clears_what_is_no_longer_collected():
    estate = _estate_with_joins()
    harness = _harness(estate)
    await harness.sync()
    harness.integration = harness.integration.model_copy(update={"collect": ["licences"]})
    before = len(estate.requests)

    sync, (listed, _) = await harness.sync(datetime(2026, 11, 2, tzinfo=UTC))

    assert set(sync.listings) == {"licences"} and sync.entity_notes == []
    later = [r for r in estate.requests[before:] if r.url.path.endswith(
        ("/windowsAutopilotDeviceIdentities", "/devices", "/machinesVulnerabilities"))]
    assert later == []
    devices = await _devices(harness)
    assert all(d["autopilot"] is None and d["entraDevice"] is None and d["vulnerabilities"] is None
               for d in devices.values())
    assert listed.diff.counts.changed == 2  # the two devices that had joins lost them

    no_defender = _harness(_estate_with_joins(), include_defender=False)
    sync, _ = await no_defender.sync()
    assert "vulnerabilities" not in sync.listings
    assert not [r for r in no_defender.microsoft.requests if r.url.host == "api.security.microsoft.com"]


async def test_licences_are_stored_as_flat_typed_columns_and_read_back_whole():
    estate = _estate_with_joins()
    harness = _harness(estate)
    await harness.sync()

    [row] = harness.rows(LICENCES_TABLE).values()
    assert (row["prepaidUnitsEnabled"], row["prepaidUnitsWarning"], row["consumedUnits"]) == (10, 2, 12)
    assert "prepaidUnits" not in row
    page, _ = await AssetStore(harness.tables).list_assets("licences", INTEGRATION.id, TENANT)
    assert page[0]["prepaidUnits"] == {"enabled": 10, "suspended": 0, "warning": 2, "lockedOut": 0}
    assert page[0]["skuPartNumber"] == "SPE_E3"


async def test_rows_of_the_first_layout_are_read_and_rewritten_by_the_first_sync():
    """Rows as the first layout wrote them (the Defender summary as JSON text, no `layout`) read as
    before; the next sync rewrites each one in today's layout, once."""
    estate = _estate_with_joins()
    harness = _harness(estate, collect=[])
    await harness.sync()
    table = harness.tables.client(DEVICES_TABLE)
    partition = f"{INTEGRATION.id}_{TENANT}"
    first = estate.devices[0]["id"]
    raw = {d["id"]: d for d in estate.devices}
    machines = {m["id"]: m for m in estate.machines}
    for row_key, row in harness.rows(DEVICES_TABLE).items():
        # The first layout, as its writer made rows: every date as text (Intune's own, memsync's stamps),
        # the Defender summary as JSON text, no join columns, no tenant name, no `layout`.
        old: dict[str, Any] = {}
        for k, v in row.items():
            if k.startswith(("defender", "autopilot", "entraDevice", "vulnerabilities")) or k in (
                    "layout", "tenantDisplayName"):
                continue
            if isinstance(v, datetime):
                v = stamp(v) if k in ("firstSeenAt", "lastSeenAt", "removedAt") else raw[row_key][k]
            old[k] = v
        machine = machines.get(row.get("defenderMachineId"))
        if machine is not None:
            old["defender"] = json.dumps({
                "machineId": machine["id"], "healthStatus": machine.get("healthStatus"),
                "riskScore": machine.get("riskScore"), "exposureLevel": machine.get("exposureLevel"),
                "onboardingStatus": machine.get("onboardingStatus"), "lastSeen": machine.get("lastSeen")},
                separators=(",", ":"))
        await table.upsert_entity({**old, "PartitionKey": partition, "RowKey": row_key}, mode="replace")
    legacy = harness.rows(DEVICES_TABLE)[first]
    assert "layout" not in legacy and legacy["defender"].startswith("{")

    assert all(isinstance(v, str) for k, v in legacy.items() if k.endswith(("At", "DateTime")))

    # Read as before, Defender summary and dates and all.
    device = (await _devices(harness))[first]
    assert device["defender"]["machineId"] == estate.machines[0]["id"]
    assert device["defender"]["lastSeen"] == estate.machines[0]["lastSeen"]
    assert device["enrolledDateTime"] == raw[first]["enrolledDateTime"]

    _, (listed, _) = await harness.sync(datetime(2026, 11, 2, tzinfo=UTC))
    assert listed.diff.counts.changed == 5
    rewritten = harness.rows(DEVICES_TABLE)[first]
    assert rewritten["layout"] == LAYOUT and "defender" not in rewritten
    assert rewritten["defenderMachineId"] == estate.machines[0]["id"]
    assert isinstance(rewritten["enrolledDateTime"], datetime) and isinstance(rewritten["firstSeenAt"], datetime)
    assert (await _devices(harness))[first]["firstSeenAt"] == device["firstSeenAt"]  # kept through the rewrite
    _, (listed, _) = await harness.sync(datetime(2026, 11, 3, tzinfo=UTC))
    assert listed.diff.counts.changed == 0  # once


def test_the_content_hash_sees_a_join_change():
    a = {"id": "d1", "autopilot": {"id": "ap", "groupTag": "x"}}
    assert content_hash(a) != content_hash({**a, "autopilot": {"id": "ap", "groupTag": "y"}})





async def test_every_asset_row_carries_the_tenant_name_and_a_rename_rewrites_each_row_once():
    estate = _estate_with_joins()
    harness = _harness(estate)
    await harness.sync()
    for table in (DEVICES_TABLE, LICENCES_TABLE, VULNERABILITIES_TABLE):
        assert {row["tenantDisplayName"] for row in harness.rows(table).values()} == {"Contoso Ltd"}
    assert "tenantDisplayName" not in (await _devices(harness))[estate.devices[0]["id"]]  # a column, not output

    renamed = estate.__class__.__call__

    def answer(self: Estate, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/organization":
            return httpx.Response(200, json={"value": [{"id": TENANT, "displayName": "Contoso Group",
                                                        "verifiedDomains": []}]})
        return renamed(self, request)

    estate.__class__ = type("Renamed", (Estate,), {"__call__": answer})
    sync, (listed, _) = await harness.sync(datetime(2026, 11, 2, tzinfo=UTC))
    assert listed.diff.counts.changed == 5 and sync.listings["licences"].diff.counts.changed == 1
    assert {row["tenantDisplayName"] for row in harness.rows(DEVICES_TABLE).values()} == {"Contoso Group"}
    _, (listed, _) = await harness.sync(datetime(2026, 11, 3, tzinfo=UTC))
    assert listed.diff.counts.changed == 0


@pytest.mark.parametrize(("text", "stored", "shown"), [
    ("2026-10-01T08:30:00Z", datetime(2026, 10, 1, 8, 30, tzinfo=UTC), "2026-10-01T08:30:00Z"),
    # Graph prints seven fraction digits; DateTime keeps microseconds.
    ("2026-10-01T08:30:00.1234567Z", datetime(2026, 10, 1, 8, 30, 0, 123456, tzinfo=UTC),
     "2026-10-01T08:30:00.123456Z"),
    ("2026-10-01T10:30:00+02:00", datetime(2026, 10, 1, 8, 30, tzinfo=UTC), "2026-10-01T08:30:00Z"),
    ("0001-01-01T00:00:00Z", None, None),  # Intune's "never": before Table Storage's earliest DateTime
    ("2026-10-01T08:30:00", "2026-10-01T08:30:00", "2026-10-01T08:30:00"),  # no zone: kept as text
    ("last Tuesday", "last Tuesday", "last Tuesday"),
])
def test_microsoft_dates_are_stored_as_datetime_and_shown_as_iso_utc(text, stored, shown):
    assert date_value(text) == stored
    assert date_text(date_value(text)) == shown
    assert date_text(datetime(2026, 11, 2, 6, 0, 0, 123000, tzinfo=UTC), stamp_form=True) == "2026-11-02T06:00:00.123Z"


LAYOUT1 = Path(__file__).parents[2] / "fixtures" / "layout1" / "contoso-sync.json"


async def test_rows_written_by_the_first_layouts_code_are_migrated_by_the_next_sync():
    """`tests/fixtures/layout1/contoso-sync.json` holds the device and software rows memsync's code at
    commit ee0d9d7 (the first layout) wrote for one sync of this estate, captured by running that code
    (Harness of that commit's tests/unit/sync/test_tenant_sync.py, MemoryTables). Loaded as they were,
    they read through today's store, and the next sync rewrites each listed row once in today's layout."""
    captured = json.loads(LAYOUT1.read_text())
    ms = captured["microsoft"]
    harness = Harness(Microsoft(ms["devices"], ms["apps"], machines=ms["machines"]), defender=True)
    for table, rows in captured["tables"].items():
        client = harness.tables.client(table)
        for row in rows.values():
            await client.upsert_entity({k: v["int64"] if isinstance(v, dict) else v for k, v in row.items()},
                                       mode="replace")
    old = captured["tables"][DEVICES_TABLE]
    with_defender = [k for k, row in old.items() if row.get("defender")]
    assert with_defender and all("layout" not in row for row in old.values())

    before = await _devices(harness)  # today's store reading the first layout
    for key in with_defender:
        assert before[key]["defender"] == json.loads(old[key]["defender"])
    assert all(before[k]["firstSeenAt"] == old[k]["firstSeenAt"] for k in before)

    _, (devices, software) = await harness.sync(datetime(2026, 11, 2, tzinfo=UTC))

    assert devices.diff.counts.changed == len(before) and devices.diff.counts.added == 0
    assert software.diff.counts.changed == len(captured["tables"]["memsyncSoftware"]) - 1  # less the marker
    rows = harness.rows(DEVICES_TABLE)
    for row in rows.values():
        assert row["layout"] == LAYOUT and "defender" not in row
        assert isinstance(row["firstSeenAt"], datetime) and isinstance(row["lastSyncDateTime"], datetime)
        assert row["tenantDisplayName"] == "Contoso Ltd"
    after = await _devices(harness)
    for key in with_defender:
        assert rows[key]["defenderMachineId"] == before[key]["defender"]["machineId"]
        assert after[key]["defender"]["riskScore"] == before[key]["defender"]["riskScore"]
    assert all(after[k]["firstSeenAt"] == before[k]["firstSeenAt"] for k in after)  # history kept
    _, (devices, software) = await harness.sync(datetime(2026, 11, 3, tzinfo=UTC))
    assert devices.diff.counts.changed == 0 and software.diff.counts.changed == 0  # once
