"""Microsoft Entra ID devices: the generated data and its joins to Intune devices and Autopilot
identities, and ``/v1.0/devices`` driven through the simulator's own dispatcher (aiohttp's mocked
requests, no socket), with tokens carrying exactly the roles the scenario consented."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.cloudsim.generate import ZERO_GUID
from devstack.cloudsim.model import GRAPH, TenantState
from devstack.cloudsim.scenario import Simulation, build_simulation, load_spec

from .test_autopilot import Graph

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOST = "127.0.0.1:8443"
DEVICES = "/graph/v1.0/devices"
MANAGED = "/graph/v1.0/deviceManagement/managedDevices"
# The v1.0 device properties (https://learn.microsoft.com/graph/api/resources/device?view=graph-rest-1.0)
# that msgraph-sdk's v1.0 Device model parses; isManagementRestricted only when $selected.
V1_LISTED = {
    "id",
    "deletedDateTime",
    "accountEnabled",
    "alternativeSecurityIds",
    "approximateLastSignInDateTime",
    "complianceExpirationDateTime",
    "deviceCategory",
    "deviceId",
    "deviceMetadata",
    "deviceOwnership",
    "deviceVersion",
    "displayName",
    "enrollmentProfileName",
    "enrollmentType",
    "isCompliant",
    "isManaged",
    "isRooted",
    "managementType",
    "manufacturer",
    "mdmAppId",
    "model",
    "onPremisesLastSyncDateTime",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "operatingSystem",
    "operatingSystemVersion",
    "physicalIds",
    "profileType",
    "registrationDateTime",
    "systemLabels",
    "trustType",
}
TRUST_TYPES = {"Workplace", "AzureAd", "ServerAd"}
DENIED = {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}


# ------------------------------------------------------------------ generated data


def _tenants(sim: Simulation) -> Iterator[TenantState]:
    return (sim.tenants[tid] for tid in sim.reported_tenants)


@pytest.fixture(scope="module")
def large() -> Simulation:
    return build_simulation(load_spec("large"), now=NOW)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _assert_joins(tenant: TenantState, now: datetime = NOW) -> None:
    entra = tenant.entra_devices.values()
    assert len({d["id"] for d in entra}) == len(entra)
    assert [d["id"] for d in entra] == sorted(d["id"] for d in entra)
    by_device_id = {d["deviceId"]: d for d in entra}
    assert len(by_device_id) == len(entra)  # one object per deviceId
    for device in entra:
        assert set(device) == V1_LISTED | {"isManagementRestricted"}
        assert device["trustType"] in TRUST_TYPES
        assert device["id"] != device["deviceId"]
    registered = [d for d in tenant.devices.values() if d["azureADDeviceId"] != ZERO_GUID]
    for managed in registered:
        mine = by_device_id[managed["azureADDeviceId"]]  # every registered Intune device is in Entra
        assert mine["isManaged"] is True and mine["mdmAppId"] == "0000000a-0000-0000-c000-000000000000"
        assert mine["isCompliant"] == {"compliant": True, "noncompliant": False}.get(managed["complianceState"])
        assert (mine["operatingSystem"], mine["operatingSystemVersion"]) == (
            managed["operatingSystem"],
            managed["osVersion"],
        )
        assert mine["displayName"] == managed["deviceName"] and mine["model"] == managed["model"]
        if managed["operatingSystem"] != "Windows" or managed["managedDeviceOwnerType"] == "personal":
            assert mine["trustType"] == "Workplace"
        else:
            assert mine["trustType"] in ("AzureAd", "ServerAd")
        assert _when(mine["registrationDateTime"]) < _when(managed["enrolledDateTime"])
    unmanaged = [d for d in entra if not d["isManaged"]]
    assert len(entra) == len(registered) + len(unmanaged)
    assert all(d["isCompliant"] is None and d["mdmAppId"] is None for d in unmanaged)
    # What an MSP acts on: devices Intune does not manage, some disabled, some long without a sign-in.
    assert {d["trustType"] for d in unmanaged} == TRUST_TYPES
    assert any(not d["accountEnabled"] for d in unmanaged)
    stale = now - timedelta(days=90)
    assert any(d["approximateLastSignInDateTime"] and _when(d["approximateLastSignInDateTime"]) < stale
               for d in unmanaged)
    # Autopilot identities that never enrolled have the Entra object their import created.
    never = [i for i in tenant.autopilot.values() if i["managedDeviceId"] == ZERO_GUID]
    for identity in never:
        mine = by_device_id[identity["azureActiveDirectoryDeviceId"]]
        assert mine["isManaged"] is False and mine["displayName"] == (identity["serialNumber"] or "Autopilot device")
    assert len(unmanaged) - len(never) == max(4, round(0.12 * len(tenant.devices)))


@pytest.mark.parametrize("name", ["demo", "edge"])
def test_every_registered_intune_device_has_its_entra_device_and_more_are_unmanaged(name: str) -> None:
    sim = build_simulation(load_spec(name), now=NOW)
    for tenant in _tenants(sim):
        if len(tenant.devices):
            _assert_joins(tenant)
        else:
            assert len(tenant.entra_devices) == 0


def test_large_has_an_entra_device_for_each_registered_intune_device(large: Simulation) -> None:
    tenant = next(t for t in large.tenants.values() if t.key == "relecloud")
    _assert_joins(tenant)
    entra = tenant.entra_devices.values()
    assert len(entra) > 55_000 and sum(1 for d in entra if not d["isManaged"]) > 9_000


def _entra_dump(spec: dict[str, Any]) -> str:
    sim = build_simulation(spec, now=NOW)
    return json.dumps({t.key: t.entra_devices.values() for t in sim.tenants.values()}, sort_keys=True)


def test_generation_is_deterministic_and_leaves_the_other_data_as_it_was() -> None:
    assert _entra_dump(load_spec("demo")) == _entra_dump(load_spec("demo"))
    assert _entra_dump(load_spec("edge")) == _entra_dump(load_spec("edge"))
    fewer = load_spec("demo")
    for tenant_spec in fewer["tenants"]:
        tenant_spec["entraUnmanaged"] = 0
    plain = build_simulation(fewer, now=NOW)
    full = build_simulation(load_spec("demo"), now=NOW)
    for tid, tenant in full.tenants.items():
        other = plain.tenants[tid]
        # Without extra unmanaged devices, only the Autopilot imports are left unmanaged.
        never = sum(1 for i in other.autopilot.values() if i["managedDeviceId"] == ZERO_GUID)
        assert sum(1 for d in other.entra_devices.values() if not d["isManaged"]) == never
        managed = [d for d in tenant.entra_devices.values() if d["isManaged"]]
        assert [d for d in other.entra_devices.values() if d["isManaged"]] == managed
        assert tenant.devices.values() == other.devices.values()
        assert tenant.detected_apps.values() == other.detected_apps.values()
        assert tenant.machines.values() == other.machines.values()
        assert tenant.autopilot.values() == other.autopilot.values()


def test_demo_tailspin_cannot_read_entra_devices_but_keeps_its_other_reads() -> None:
    sim = build_simulation(load_spec("demo"), now=NOW)
    sync_app = sim.app_keys["sync-app"]
    implying = {"Device.Read.All", "Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
    readers = {
        t.key: bool(implying & (t.granted_roles(sync_app, GRAPH) or set()))
        for t in _tenants(sim)
        if sync_app in t.consents
    }
    assert readers == {"contoso": True, "northwind": True, "tailspin": False}
    tailspin = next(t for t in _tenants(sim) if t.key == "tailspin")
    assert "Organization.Read.All" in (tailspin.granted_roles(sync_app, GRAPH) or set())
    assert tailspin.expected == {"status": "ok", "errorCode": "defenderUnavailable"}
    assert len(tailspin.entra_devices) > 0


# ------------------------------------------------------------------ the Graph route


async def test_list_pages_by_100_with_next_link_up_to_999() -> None:
    spec = load_spec("demo")
    contoso = next(t for t in spec["tenants"] if t["key"] == "contoso")
    contoso["entraUnmanaged"] = 1_100
    graph = Graph(spec)
    truth = graph.tenant("contoso").entra_devices.values()
    count = len(truth)
    assert count > 1_100
    first = (await graph.get(DEVICES)).json()
    assert first["@odata.context"] == f"https://{HOST}/graph/v1.0/$metadata#devices"
    assert list(first) == ["@odata.context", "@odata.nextLink", "value"]
    assert first["@odata.nextLink"].startswith(f"https://{HOST}{DEVICES}?$skiptoken=")
    items, sizes = await graph.list_all(DEVICES)
    assert items == [{k: v for k, v in d.items() if k != "isManagementRestricted"} for d in truth]
    assert sizes == [100] * (count // 100) + ([count % 100] if count % 100 else [])
    _, sizes = await graph.list_all(f"{DEVICES}?$top=999")
    assert sizes == [999, count - 999]
    for too_many in ("1000", "0"):
        refused = await graph.get(f"{DEVICES}?$top={too_many}")
        assert refused.status == 400 and refused.json()["error"]["code"] == "Request_UnsupportedQuery"
        assert refused.json()["error"]["message"] == (
            f"Invalid page size specified: '{too_many}'. Must be between 1 and 999 inclusive."
        )


async def test_select_projects_returns_select_only_properties_and_refuses_unknown_ones() -> None:
    graph = Graph()
    truth = graph.tenant("contoso").entra_devices.values()
    url = f"{DEVICES}?$select=id,deviceId,isManaged,isManagementRestricted&$top=7"
    page = (await graph.get(url)).json()
    assert page["@odata.context"].endswith("#devices(id,deviceId,isManaged,isManagementRestricted)")
    assert page["value"] == [
        {k: d[k] for k in ("id", "deviceId", "isManaged", "isManagementRestricted")} for d in truth[:7]
    ]
    assert "$select=id,deviceId,isManaged,isManagementRestricted" in page["@odata.nextLink"]
    plain = (await graph.get(f"{DEVICES}?$top=1")).json()["value"][0]
    assert "isManagementRestricted" not in plain and set(plain) == V1_LISTED
    for unknown in ("hostnames", "extensionAttributes", "azureADDeviceId"):
        refused = await graph.get(f"{DEVICES}?$select=id,{unknown}")
        assert refused.status == 400
        assert refused.json()["error"]["code"] == "Request_BadRequest"
        assert refused.json()["error"]["message"] == (
            f"Could not find a property named '{unknown}' on type 'microsoft.graph.device'."
        )


async def test_filter_eq_on_strings() -> None:
    graph = Graph()
    truth = graph.tenant("contoso").entra_devices.values()
    some = truth[3]
    found = (await graph.get(f"{DEVICES}?$filter=deviceId eq '{some['deviceId']}'")).json()["value"]
    assert [d["id"] for d in found] == [some["id"]]
    workplace = (await graph.get(f"{DEVICES}?$filter=trustType eq 'Workplace'&$top=999")).json()["value"]
    assert [d["id"] for d in workplace] == [d["id"] for d in truth if d["trustType"] == "Workplace"]


async def test_get_one_by_object_id_or_device_id() -> None:
    graph = Graph()
    device = graph.tenant("contoso").entra_devices.values()[0]
    listed = {k: v for k, v in device.items() if k != "isManagementRestricted"}
    for path in (
        f"{DEVICES}/{device['id']}",
        f"{DEVICES}('{device['id']}')",
        f"{DEVICES}(deviceId='{device['deviceId']}')",
    ):
        one = (await graph.get(path)).json()
        assert one.pop("@odata.context") == f"https://{HOST}/graph/v1.0/$metadata#devices/$entity"
        assert one == listed
    projected = (await graph.get(f"{DEVICES}/{device['id']}?$select=displayName,isManagementRestricted")).json()
    assert projected["displayName"] == device["displayName"] and projected["isManagementRestricted"] is False
    missing = await graph.get(f"{DEVICES}/{device['deviceId']}")  # the deviceId is not the object id
    assert missing.status == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


async def test_missing_permission_is_the_directory_403() -> None:
    graph = Graph()
    tailspin = graph.tenant("tailspin")
    for path in (DEVICES, f"{DEVICES}/{tailspin.entra_devices.ids()[0]}"):
        forbidden = await graph.get(path, tenant="tailspin")
        assert forbidden.status == 403
        error = forbidden.json()["error"]
        assert {k: error[k] for k in ("code", "message")} == DENIED
    # The same shape /organization answers without its permission.
    organization = (await graph.get("/graph/v1.0/organization", roles=["Device.Read.All"])).json()["error"]
    assert {k: organization[k] for k in ("code", "message")} == DENIED
    assert (await graph.get("/graph/v1.0/organization", tenant="tailspin")).status == 200
    assert (await graph.get(MANAGED, tenant="tailspin")).status == 200
    for role in ("Device.Read.All", "Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"):
        assert (await graph.get(DEVICES, roles=[role])).status == 200, role
    # No Intune licence check: Entra knows devices of a tenant without Intune.
    graph.tenant("contoso").intune_licensed = False
    assert (await graph.get(DEVICES)).status == 200


async def test_ground_truth_and_control_api() -> None:
    graph = Graph()
    tenant = graph.tenant("contoso")
    truth = (await graph.call("GET", f"/_sim/tenants/{tenant.tenant_id}/truth")).json()
    assert truth["entraDevices"] == tenant.entra_devices.values()
    assert truth["tenant"]["entraDeviceCount"] == len(tenant.entra_devices)
    scenario = (await graph.call("GET", "/_sim/scenario")).json()
    counts = {t["key"]: t["entraDeviceCount"] for t in scenario["tenants"]}
    assert counts["contoso"] == len(tenant.entra_devices) and counts["tailspin"] > 0
    before = len(tenant.entra_devices)
    collection = f"/_sim/tenants/{tenant.tenant_id}/entraDevices"
    assert (await graph.call("GET", collection)).json()["value"] == tenant.entra_devices.values()
    managed = (await graph.call("POST", f"/_sim/tenants/{tenant.tenant_id}/managedDevices", body={"count": 1}))
    device_id = managed.json()["ids"][0]
    created = await graph.call(
        "POST", collection, body={"forDevices": [device_id], "count": 1, "devices": [{"accountEnabled": False}]}
    )
    assert created.status == 201
    joined, disabled, other = (tenant.entra_devices.get(i) or {} for i in created.json()["ids"])
    assert joined["deviceId"] == (tenant.devices.get(device_id) or {})["azureADDeviceId"] and joined["isManaged"]
    assert disabled["accountEnabled"] is False and not disabled["isManaged"] and not other["isManaged"]
    assert len(tenant.entra_devices) == before + 3
    assert (await graph.get(f"{DEVICES}/{joined['id']}")).json()["deviceId"] == joined["deviceId"]
    patched = await graph.call("PATCH", f"{collection}/{other['id']}", body={"accountEnabled": False})
    assert patched.json()["accountEnabled"] is False
    assert (await graph.get(f"{DEVICES}/{other['id']}?$select=accountEnabled")).json()["accountEnabled"] is False
    gone = await graph.call("DELETE", f"{collection}/{disabled['id']}")
    assert gone.status == 204 and len(tenant.entra_devices) == before + 2
    assert (await graph.call("POST", "/_sim/reset")).status == 200
    assert len(graph.tenant("contoso").entra_devices) == before
