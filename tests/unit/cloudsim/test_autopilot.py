"""Windows Autopilot device identities: the generated data and its joins to Intune devices, and
``/deviceManagement/windowsAutopilotDeviceIdentities`` driven through the simulator's own dispatcher
(aiohttp's mocked requests, no socket), with tokens carrying exactly the roles the scenario consented."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from devstack.cloudsim.generate import PLACEHOLDER_SERIALS, ZERO_GUID
from devstack.cloudsim.model import GRAPH, TenantState
from devstack.cloudsim.scenario import Simulation, build_simulation, load_spec
from devstack.cloudsim.server import build_app, dispatch

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOST = "127.0.0.1:8443"
AUTOPILOT = "/graph/v1.0/deviceManagement/windowsAutopilotDeviceIdentities"
DEVICES = "/graph/v1.0/deviceManagement/managedDevices"
SERVICE_CONFIG_READ = "DeviceManagementServiceConfig.Read.All"
# The properties of windowsAutopilotDeviceIdentity in Graph v1.0, as the resource page lists them
# (https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity?view=graph-rest-1.0).
V1_PROPERTIES = {
    "id",
    "groupTag",
    "purchaseOrderIdentifier",
    "serialNumber",
    "productKey",
    "manufacturer",
    "model",
    "enrollmentState",
    "lastContactedDateTime",
    "addressableUserName",
    "userPrincipalName",
    "resourceName",
    "skuNumber",
    "systemFamily",
    "azureActiveDirectoryDeviceId",
    "managedDeviceId",
    "displayName",
}
V1_ENROLLMENT_STATES = {"unknown", "enrolled", "pendingReset", "failed", "notContacted"}
_TLS = ssl.create_default_context()  # any SSL context makes the mocked request https


# ------------------------------------------------------------------ generated data


def _tenants(sim: Simulation) -> Iterator[TenantState]:
    return (sim.tenants[tid] for tid in sim.reported_tenants)


@pytest.fixture(scope="module")
def large() -> Simulation:
    return build_simulation(load_spec("large"), now=NOW)


def _assert_joins(tenant: TenantState) -> None:
    identities = tenant.autopilot.values()
    assert len({i["id"] for i in identities}) == len(identities)
    assert [i["serialNumber"] for i in identities] == sorted(i["serialNumber"] for i in identities)
    for identity in identities:
        assert set(identity) == V1_PROPERTIES | {"@odata.type"}
        assert identity["@odata.type"] == "#microsoft.graph.windowsAutopilotDeviceIdentity"
        assert identity["enrollmentState"] in V1_ENROLLMENT_STATES
    enrolled = [i for i in identities if i["enrollmentState"] == "enrolled"]
    for identity in enrolled:
        device = tenant.devices.get(identity["managedDeviceId"])
        assert device is not None and device["operatingSystem"] == "Windows"
        for mine, theirs in (
            ("serialNumber", "serialNumber"),
            ("manufacturer", "manufacturer"),
            ("model", "model"),
            ("azureActiveDirectoryDeviceId", "azureADDeviceId"),
        ):
            assert identity[mine] == device[theirs]
    assert len({i["managedDeviceId"] for i in enrolled}) == len(enrolled)  # one identity per device
    unenrolled = [i for i in identities if i["enrollmentState"] != "enrolled"]
    assert {i["enrollmentState"] for i in unenrolled} <= {"notContacted", "failed"}
    assert all(i["managedDeviceId"] == ZERO_GUID for i in unenrolled)
    never = [i for i in unenrolled if i["enrollmentState"] == "notContacted"]
    assert never and all(i["lastContactedDateTime"] == "0001-01-01T00:00:00Z" for i in never)
    aad_ids = {d["azureADDeviceId"] for d in tenant.devices.values()}
    assert all(i["azureActiveDirectoryDeviceId"] not in aad_ids | {ZERO_GUID} for i in unenrolled)
    assert any(i["serialNumber"] in PLACEHOLDER_SERIALS for i in identities)
    # Most Windows devices joined to Entra have their Autopilot identity.
    eligible = [
        d for d in tenant.devices.values() if d["operatingSystem"] == "Windows" and d["azureADDeviceId"] != ZERO_GUID
    ]
    assert len(enrolled) == round(0.85 * len(eligible))


@pytest.mark.parametrize("name", ["demo", "edge"])
def test_every_tenant_with_devices_has_joined_identities(name: str) -> None:
    sim = build_simulation(load_spec(name), now=NOW)
    for tenant in _tenants(sim):
        if len(tenant.devices):
            _assert_joins(tenant)
        else:
            assert len(tenant.autopilot) == 0


def test_large_has_identities_for_most_windows_devices(large: Simulation) -> None:
    tenant = next(t for t in large.tenants.values() if t.key == "relecloud")
    _assert_joins(tenant)
    states = [i["enrollmentState"] for i in tenant.autopilot.values()]
    assert states.count("enrolled") > 20_000
    assert states.count("notContacted") > 1_000 and states.count("failed") > 100


def _autopilot_dump(spec: dict[str, Any]) -> str:
    sim = build_simulation(spec, now=NOW)
    return json.dumps({t.key: t.autopilot.values() for t in sim.tenants.values()}, sort_keys=True)


def test_generation_is_deterministic_and_leaves_the_other_data_as_it_was() -> None:
    assert _autopilot_dump(load_spec("demo")) == _autopilot_dump(load_spec("demo"))
    assert _autopilot_dump(load_spec("edge")) == _autopilot_dump(load_spec("edge"))
    without = load_spec("demo")
    for tenant_spec in without["tenants"]:
        tenant_spec.update(autopilotCoverage=0, autopilotUnenrolled=0)
    plain = build_simulation(without, now=NOW)
    full = build_simulation(load_spec("demo"), now=NOW)
    for tid, tenant in full.tenants.items():
        other = plain.tenants[tid]
        assert len(other.autopilot) == 0
        assert tenant.devices.values() == other.devices.values()
        assert tenant.detected_apps.values() == other.detected_apps.values()
        assert tenant.machines.values() == other.machines.values()


def test_demo_has_a_tenant_whose_sync_app_cannot_read_autopilot() -> None:
    sim = build_simulation(load_spec("demo"), now=NOW)
    sync_app = sim.app_keys["sync-app"]
    readers = {
        t.key: SERVICE_CONFIG_READ in (t.granted_roles(sync_app, GRAPH) or set())
        for t in _tenants(sim)
        if sync_app in t.consents
    }
    assert readers == {"contoso": True, "northwind": True, "tailspin": False}
    tailspin = next(t for t in _tenants(sim) if t.key == "tailspin")
    assert tailspin.expected == {"status": "ok", "errorCode": "defenderUnavailable"}  # devices still sync
    assert len(tailspin.autopilot) > 0  # the data is there; the permission is not


# ------------------------------------------------------------------ the Graph route


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class Graph:
    """A scenario behind the real dispatcher; tokens carry the roles the tenant consented to the sync app."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.app = build_app(copy.deepcopy(spec) if spec is not None else load_spec("demo"))
        self.server = self.app["cloudsim"]
        self.sync_app = self.server.sim.app_keys["sync-app"]

    def tenant(self, key: str) -> TenantState:
        sim: Simulation = self.server.sim
        return sim.tenants[sim.tenant_keys[key]]

    async def get(self, path: str, *, tenant: str = "contoso", roles: list[str] | None = None) -> Answer:
        state = self.tenant(tenant)
        if roles is None:
            roles = sorted(state.granted_roles(self.sync_app, GRAPH) or ())
        token = self.server.tokens.issue(
            tenant_id=state.tenant_id, app_id=self.sync_app, audience=GRAPH, roles=roles, lifetime_s=3600
        )
        return await self.call("GET", path, headers={"Authorization": f"Bearer {token}"})

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None) -> Answer:
        headers = {"Host": HOST, **(headers or {})}
        extra: dict[str, Any] = {}
        if body is not None:
            payload = StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
            payload.feed_data(json.dumps(body).encode())
            payload.feed_eof()
            headers["Content-Type"] = "application/json"
            extra["payload"] = payload
        request = make_mocked_request(method, path, headers=headers, app=self.app, sslcontext=_TLS, **extra)
        response = await dispatch(request)
        assert isinstance(response, web.Response)
        assert response.body is None or isinstance(response.body, bytes)
        return Answer(response.status, response.body or b"", dict(response.headers))

    async def list_all(self, path: str, **kwargs: Any) -> tuple[list[dict[str, Any]], list[int]]:
        items: list[dict[str, Any]] = []
        sizes: list[int] = []
        url: str | None = path
        while url:
            page = await self.get(url, **kwargs)
            assert page.status == 200, page.body
            body = page.json()
            items += body["value"]
            sizes.append(len(body["value"]))
            link = body.get("@odata.nextLink")
            url = None if link is None else urlsplit(link).path + "?" + urlsplit(link).query
        return items, sizes


async def test_list_pages_with_next_link_in_listing_order() -> None:
    graph = Graph()
    truth = graph.tenant("contoso").autopilot.values()
    first = (await graph.get(f"{AUTOPILOT}?$top=7")).json()
    assert (
        first["@odata.context"]
        == f"https://{HOST}/graph/v1.0/$metadata#deviceManagement/windowsAutopilotDeviceIdentities"
    )
    assert list(first) == ["@odata.context", "@odata.nextLink", "value"]
    assert first["@odata.nextLink"].startswith(f"https://{HOST}{AUTOPILOT}?$top=7&$skiptoken=")
    items, sizes = await graph.list_all(f"{AUTOPILOT}?$top=7")
    assert items == truth
    assert sizes[:-1] == [7] * (len(sizes) - 1) and 1 <= sizes[-1] <= 7
    whole = (await graph.get(AUTOPILOT)).json()
    assert "@odata.nextLink" not in whole and whole["value"] == truth


async def test_default_and_maximum_page_size_is_1000() -> None:
    spec = load_spec("demo")
    contoso = next(t for t in spec["tenants"] if t["key"] == "contoso")
    contoso["autopilotUnenrolled"] = 1_500
    graph = Graph(spec)
    count = len(graph.tenant("contoso").autopilot)
    assert count > 1_500
    _, sizes = await graph.list_all(AUTOPILOT)
    assert sizes == [1_000, count - 1_000]
    _, sizes = await graph.list_all(f"{AUTOPILOT}?$top=5000")
    assert sizes == [1_000, count - 1_000]


async def test_select_projects_and_rejects_beta_only_properties() -> None:
    graph = Graph()
    page = (await graph.get(f"{AUTOPILOT}?$select=id,serialNumber,managedDeviceId&$top=3")).json()
    context = "#deviceManagement/windowsAutopilotDeviceIdentities(id,serialNumber,managedDeviceId)"
    assert page["@odata.context"].endswith(context)
    assert all(list(i) == ["@odata.type", "id", "serialNumber", "managedDeviceId"] for i in page["value"])
    assert "$select=id,serialNumber,managedDeviceId" in page["@odata.nextLink"]
    for beta_only in ("azureAdDeviceId", "deploymentProfileAssignmentStatus"):
        refused = await graph.get(f"{AUTOPILOT}?$select=id,{beta_only}")
        assert refused.status == 400
        assert refused.json()["error"]["message"] == (
            f"Could not find a property named '{beta_only}' on type 'microsoft.graph.windowsAutopilotDeviceIdentity'."
        )


async def test_get_one_by_id_with_select_and_unknown_id() -> None:
    graph = Graph()
    identity = graph.tenant("contoso").autopilot.values()[0]
    for path in (f"{AUTOPILOT}/{identity['id']}", f"{AUTOPILOT}('{identity['id']}')"):
        one = (await graph.get(path)).json()
        assert one.pop("@odata.context").endswith("#deviceManagement/windowsAutopilotDeviceIdentities/$entity")
        assert one == identity
    projected = (await graph.get(f"{AUTOPILOT}/{identity['id']}?$select=serialNumber")).json()
    assert projected["serialNumber"] == identity["serialNumber"] and "model" not in projected
    missing = await graph.get(f"{AUTOPILOT}/00000000-0000-0000-0000-000000000001")
    assert missing.status == 404 and missing.json()["error"]["code"] == "ResourceNotFound"


async def test_filter_takes_contains_but_not_eq() -> None:
    graph = Graph()
    identities = graph.tenant("contoso").autopilot.values()
    serial = next(i["serialNumber"] for i in identities if len(i["serialNumber"]) > 6)
    found = (await graph.get(f"{AUTOPILOT}?$filter=contains(serialNumber,'{serial[1:-1].lower()}')")).json()
    assert serial in {i["serialNumber"] for i in found["value"]}
    assert all(serial[1:-1].lower() in i["serialNumber"].lower() for i in found["value"])
    both = (await graph.get(f"{AUTOPILOT}?$filter=contains(serialNumber,'{serial}') and contains(model,'')")).json()
    assert serial in {i["serialNumber"] for i in both["value"]}
    refused = await graph.get(f"{AUTOPILOT}?$filter=serialNumber eq '{serial}'")
    assert refused.status == 400 and refused.json()["error"]["code"] == "BadRequest"
    assert refused.json()["error"]["message"].startswith("An error has occurred - Operation ID (for customer support)")


async def test_missing_permission_is_intunes_403_as_for_managed_devices() -> None:
    graph = Graph()
    for path in (AUTOPILOT, f"{AUTOPILOT}/{graph.tenant('tailspin').autopilot.ids()[0]}"):
        forbidden = await graph.get(path, tenant="tailspin")
        assert forbidden.status == 403
        error = forbidden.json()["error"]
        assert error["code"] == "Forbidden"
        inner = json.loads(error["message"])
        assert inner["Message"].startswith(
            "Application is not authorized to perform this operation. Application must have one of the following "
            "scopes: DeviceManagementServiceConfig.Read.All, DeviceManagementServiceConfig.ReadWrite.All - "
        )
    assert (await graph.get(DEVICES, tenant="tailspin")).status == 200  # devices still readable there
    # The same shape a token without the managedDevices role gets.
    devices = (await graph.get(DEVICES, roles=[SERVICE_CONFIG_READ])).json()["error"]
    assert devices["code"] == "Forbidden" and set(json.loads(devices["message"])) == set(inner)
    # ReadWrite is enough, and so is an Intune licence check after the permission.
    assert (await graph.get(AUTOPILOT, roles=["DeviceManagementServiceConfig.ReadWrite.All"])).status == 200
    graph.tenant("contoso").intune_licensed = False
    unlicensed = await graph.get(AUTOPILOT)
    assert unlicensed.status == 400 and "Request not applicable to target tenant" in unlicensed.body.decode()


async def test_ground_truth_and_control_api() -> None:
    graph = Graph()
    tenant = graph.tenant("contoso")
    truth = (await graph.call("GET", f"/_sim/tenants/{tenant.tenant_id}/truth")).json()
    assert truth["windowsAutopilotDeviceIdentities"] == tenant.autopilot.values()
    assert truth["tenant"]["autopilotDeviceCount"] == len(tenant.autopilot)
    scenario = (await graph.call("GET", "/_sim/scenario")).json()
    counts = {t["key"]: t["autopilotDeviceCount"] for t in scenario["tenants"]}
    assert counts["contoso"] == len(tenant.autopilot) and counts["woodgrove"] > 0
    before = len(tenant.autopilot)
    collection = f"/_sim/tenants/{tenant.tenant_id}/windowsAutopilotDeviceIdentities"
    listed = (await graph.call("GET", collection)).json()["value"]
    assert listed == tenant.autopilot.values()
    device = next(d for d in tenant.devices.values() if d["operatingSystem"] == "Windows")
    created = await graph.call("POST", collection, body={"forDevices": [device["id"]], "count": 2})
    assert created.status == 201
    enrolled, *unenrolled = (tenant.autopilot.get(i) or {} for i in created.json()["ids"])
    assert len(tenant.autopilot) == before + 3
    assert enrolled["managedDeviceId"] == device["id"] and enrolled["serialNumber"] == device["serialNumber"]
    assert [i["managedDeviceId"] for i in unenrolled] == [ZERO_GUID, ZERO_GUID]
    assert (await graph.get(f"{AUTOPILOT}/{enrolled['id']}")).json()["managedDeviceId"] == device["id"]
    gone = await graph.call("DELETE", f"{collection}/{unenrolled[0]['id']}")
    assert gone.status == 204 and len(tenant.autopilot) == before + 2
    assert (await graph.call("POST", "/_sim/reset")).status == 200
    assert len(graph.tenant("contoso").autopilot) == before
