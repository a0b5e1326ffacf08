"""Defender vulnerabilities, licences and the device's joins, synced through the simulator and compared
with its ground truth: every vulnerability and licence field by field, each device's Autopilot identity,
Entra ID device and vulnerability summary derived independently from the truth, the tenant's facts, the
per-device vulnerability route, and a tenant consented before vulnerabilities were read."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from shared.errors import ErrorCode
from shared.models import TenantStatus
from tests.integration.support import ZERO_GUID, all_assets, all_devices, instant, shown, sync_tenants, truth

pytestmark = pytest.mark.integration
SCENARIO = "demo"
SEVERITIES = ("Critical", "High", "Medium", "Low")
PLACEHOLDERS = {"", "DEFAULT STRING", "TO BE FILLED BY O.E.M.", "TO BE FILLED BY OEM", "SYSTEM SERIAL NUMBER",
                "SERIAL NUMBER", "CHASSIS SERIAL NUMBER", "NONE", "N/A", "NA", "NULL", "0", "123456789"}


@pytest.fixture(scope="module")
async def synced(scenario, module_runtime) -> dict[str, Any]:
    keys = {t["key"]: t["tenantId"] for t in scenario["tenants"]}
    integration, (contoso, northwind) = await sync_tenants(
        module_runtime, scenario["registrations"][0], [keys["contoso"], keys["northwind"]])
    return {"integration": integration, "tenants": keys, "results": {"contoso": contoso, "northwind": northwind}}


def _placeholder(serial: str | None) -> bool:
    """Written out independently of shared.mapping.devices: empty, an OEM default, or one character repeated."""
    core = "".join(c for c in (serial or "").strip().upper() if c.isalnum())
    return (serial or "").strip().upper() in PLACEHOLDERS or not core or len(set(core)) == 1


def _expected_joins(tenant: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per Intune device id: the Autopilot id, Entra object id and vulnerability counts the truth implies."""
    machines: dict[str, dict[str, Any]] = {}
    for m in tenant["machines"]:
        aad = (m.get("aadDeviceId") or "").lower()
        if aad and aad != ZERO_GUID and (aad not in machines or m["lastSeen"] > machines[aad]["lastSeen"]):
            machines[aad] = m
    by_machine: dict[str, list[dict[str, Any]]] = {}
    seen_ids: set[str] = set()
    for v in tenant["machinesVulnerabilities"]:
        if v["id"] not in seen_ids:
            seen_ids.add(v["id"])
            by_machine.setdefault(v["machineId"].lower(), []).append(v)
    autopilot_by_device = {(a.get("managedDeviceId") or "").lower(): a
                           for a in tenant["windowsAutopilotDeviceIdentities"]
                           if (a.get("managedDeviceId") or ZERO_GUID) != ZERO_GUID}
    serials: dict[str, list[dict[str, Any]]] = {}
    for a in tenant["windowsAutopilotDeviceIdentities"]:
        if not _placeholder(a.get("serialNumber")):
            serials.setdefault(a["serialNumber"].strip().upper(), []).append(a)
    entra = {(e.get("deviceId") or "").lower(): e for e in tenant["entraDevices"]}
    out = {}
    for d in tenant["managedDevices"]:
        aad = (d.get("azureADDeviceId") or "").lower()
        machine = machines.get(aad)
        vulns = by_machine.get(machine["id"].lower(), []) if machine else []
        autopilot = autopilot_by_device.get(d["id"].lower())
        matched_by = "managedDeviceId" if autopilot else None
        serial = (d.get("serialNumber") or "").strip().upper()
        if autopilot is None and not _placeholder(serial) and len(serials.get(serial, [])) == 1:
            autopilot, matched_by = serials[serial][0], "serialNumber"
        out[d["id"]] = {
            "autopilot": (autopilot["id"], matched_by) if autopilot else None,
            "entraDevice": entra[aad]["id"] if aad and aad != ZERO_GUID and aad in entra else None,
            "vulnerabilities": {s.lower(): sum(1 for v in vulns if (v.get("severity") or "").lower() == s.lower())
                                for s in SEVERITIES} | {"total": len(vulns)} if vulns else None,
        }
    return out


async def test_every_vulnerability_is_stored_as_defender_lists_it(stack, synced, module_runtime):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    assert synced["results"]["contoso"].outcome == "ok"
    expected = {v["id"]: v for v in truth(stack, tid)["machinesVulnerabilities"]}
    stored = await all_assets(module_runtime, "vulnerabilities", integration.id, tid, top=25)
    assert set(stored) == set(expected) and len(stored) > 20
    for ident, raw in expected.items():
        got = stored[ident]
        assert got["machineId"] == raw["machineId"].lower()
        assert got["severity"] == raw["severity"] and got["severity"] in SEVERITIES
        for name in ("cveId", "productVersion", "fixingKbId"):
            assert got[name] == raw.get(name), (ident, name)
        for name in ("productName", "productVendor"):
            assert got[name] == shown(raw.get(name)), (ident, name)
    critical = await all_assets(module_runtime, "vulnerabilities", integration.id, tid, top=50, severity="Critical")
    assert set(critical) == {i for i, v in expected.items() if v["severity"] == "Critical"}


async def test_each_device_carries_what_joins_it(stack, synced, module_runtime):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    tenant = truth(stack, tid)
    expected = _expected_joins(tenant)
    devices = await all_devices(module_runtime, integration.id, tid, top=50)
    assert set(devices) == set(expected)
    autopilot = {a["id"]: a for a in tenant["windowsAutopilotDeviceIdentities"]}
    for device_id, want in expected.items():
        got = devices[device_id]
        if want["autopilot"] is None:
            assert got["autopilot"] is None, device_id
        else:
            ident, matched_by = want["autopilot"]
            assert (got["autopilot"]["id"], got["autopilot"]["matchedBy"]) == (ident, matched_by), device_id
            assert got["autopilot"]["groupTag"] == autopilot[ident].get("groupTag")
            assert instant(got["autopilot"]["lastContactedDateTime"]) == instant(
                autopilot[ident].get("lastContactedDateTime"))
        assert (got["entraDevice"] or {}).get("id") == want["entraDevice"], device_id
        summary = got["vulnerabilities"]
        if want["vulnerabilities"] is None:
            assert summary is None, device_id
        else:
            assert {k: summary[k] for k in want["vulnerabilities"]} == want["vulnerabilities"], device_id
            assert 1 <= len(summary["topCves"]) <= 5
    assert any(w["autopilot"] for w in expected.values()) and any(w["vulnerabilities"] for w in expected.values())
    assert any(w["autopilot"] and w["autopilot"][1] == "serialNumber" for w in expected.values())
    # Placeholder serials never join: no device with one got its identity by serial.
    for device_id, got in devices.items():
        if got["serialPlaceholder"] and got["autopilot"]:
            assert got["autopilot"]["matchedBy"] == "managedDeviceId", device_id


async def test_licences_and_the_tenant_facts_match_the_truth(stack, synced, module_runtime):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    tenant = truth(stack, tid)
    skus = {s["id"]: s for s in tenant["subscribedSkus"]}
    stored = await all_assets(module_runtime, "licences", integration.id, tid, top=2)
    assert set(stored) == set(skus) and stored
    for ident, raw in skus.items():
        got = stored[ident]
        for name in ("skuId", "skuPartNumber", "capabilityStatus", "appliesTo", "consumedUnits"):
            assert got[name] == raw.get(name), (ident, name)
        assert got["prepaidUnits"] == {k: raw["prepaidUnits"].get(k) or 0
                                       for k in ("enabled", "suspended", "warning", "lockedOut")}
    status = await module_runtime.tenants.get_tenant(integration.id, tid)
    facts = status.counts.facts
    assert facts["licences"] == {"enabled": sum(s["prepaidUnits"]["enabled"] for s in skus.values()),
                                 "consumed": sum(s["consumedUnits"] for s in skus.values()),
                                 "overConsumed": sum(1 for s in skus.values()
                                                     if s["consumedUnits"] > s["prepaidUnits"]["enabled"])}
    vulns = {v["id"]: v for v in tenant["machinesVulnerabilities"]}.values()
    assert facts["vulnerabilities"] == {s.lower(): sum(1 for v in vulns if v["severity"] == s) for s in SEVERITIES}
    assert facts["entraDevices"] == {"unmanaged": sum(1 for e in tenant["entraDevices"] if not e.get("isManaged"))}
    assert facts["autopilotDevices"]["unenrolled"] == sum(
        1 for a in tenant["windowsAutopilotDeviceIdentities"]
        if not (a.get("enrollmentState") == "enrolled" and (a.get("managedDeviceId") or ZERO_GUID) != ZERO_GUID))
    assert status.counts.entities["vulnerabilities"] == len(vulns)
    assert status.counts.entities["licences"] == len(skus)


async def test_a_tenant_consented_before_vulnerabilities_syncs_the_rest_and_says_so(synced, module_runtime):
    tid, integration = synced["tenants"]["northwind"], synced["integration"]
    result = synced["results"]["northwind"]
    assert result.outcome == "ok"
    tenant = await module_runtime.tenants.get_tenant(integration.id, tid)
    assert tenant.status == TenantStatus.OK and "vulnerabilities" not in tenant.counts.entities
    notes = [n for n in result.run.notes if n["message"].startswith("vulnerabilities not collected")]
    assert [n["code"] for n in notes] == [ErrorCode.PERMISSION_MISSING.value]
    assert "Vulnerability.Read.All" in notes[0]["message"] + notes[0]["action"]
    assert f"/api/integrations/{integration.id}/tenants/{tid}/consent" in notes[0]["action"]  # memsync can do it
    assert await all_assets(module_runtime, "vulnerabilities", integration.id, tid) == {}
    devices = await all_devices(module_runtime, integration.id, tid, top=50)
    assert devices and all(d["vulnerabilities"] is None for d in devices.values())
    assert any(d["defender"] for d in devices.values())  # Defender's machines were still read


def test_the_device_vulnerability_route_pages_what_defender_lists_for_its_machine(stack, synced):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    tenant = truth(stack, tid)
    by_machine: dict[str, set[str]] = {}
    for v in tenant["machinesVulnerabilities"]:
        by_machine.setdefault(v["machineId"].lower(), set()).add(v["id"])
    base = f"/integrations/{integration.id}/tenants/{tid}/devices"
    with stack.api() as api:
        devices = api.get(base, params={"top": 1000}).json()["value"]
        target = max((d for d in devices if d["defender"]), key=lambda d: (d["vulnerabilities"] or {}).get("total", 0))
        got: list[str] = []
        url: str | None = f"{base}/{target['id']}/vulnerabilities?top=2"
        while url:
            page = api.get(url)
            assert page.status_code == 200, page.text
            got += [v["id"] for v in page.json()["value"]]
            url = page.json().get("nextLink")
        assert len(got) == len(set(got)) and set(got) == by_machine[target["defender"]["machineId"].lower()]
        assert len(got) == target["vulnerabilities"]["total"] > 2
        plain = next(d for d in devices if not d["defender"])
        empty = api.get(f"{base}/{plain['id']}/vulnerabilities")
        assert empty.status_code == 200 and empty.json() == {"value": []}
        missing = api.get(f"{base}/00000000-0000-4000-8000-00000000dead/vulnerabilities")
        assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "deviceId"


def test_licences_and_vulnerabilities_are_listed_with_csv(stack, synced):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    with stack.api() as api:
        for kind, column in (("licences", "prepaidUnits.enabled"), ("vulnerabilities", "cveId")):
            answer = api.get(f"/integrations/{integration.id}/tenants/{tid}/{kind}", params={"format": "csv"})
            assert answer.status_code == 200, answer.text
            assert answer.content.startswith(b"\xef\xbb\xbf")
            rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
            assert rows and column in rows[0]
        assert api.get(f"/integrations/{integration.id}/tenants/{tid}/vulnerabilities",
                       params={"severity": "Severe"}).status_code == 400
