"""Subscribed SKUs: the generated licences of each tenant and ``/v1.0/subscribedSkus`` driven through the
simulator's own dispatcher (aiohttp's mocked requests, no socket), with tokens carrying exactly the roles
the scenario consented."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devstack.cloudsim.generate import SKUS
from devstack.cloudsim.model import TenantState
from devstack.cloudsim.scenario import Simulation, build_simulation, load_spec

from .test_autopilot import Graph

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOST = "127.0.0.1:8443"
SKUS_PATH = "/graph/v1.0/subscribedSkus"
# subscribedSku's properties (https://learn.microsoft.com/graph/api/resources/subscribedsku?view=graph-rest-1.0).
PROPERTIES = {
    "id",
    "accountId",
    "accountName",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
}
STATUSES = {"Enabled", "Warning", "Suspended", "Deleted", "LockedOut"}
# The well-known SKUs' ids (Microsoft's "Product names and service plan identifiers for licensing").
KNOWN = {
    "SPE_E3": "05e9a617-0261-4cee-bb44-138d3ef5d965",
    "ENTERPRISEPACK": "6fd2c87f-b296-42f0-b197-1e91e994b900",
    "O365_BUSINESS_PREMIUM": "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
    "EMS": "efccb6f7-5641-4e0e-bd10-b4976e1bf68e",
    "INTUNE_A": "061f9ace-7d42-4136-88ac-31dc755f143f",
    "WIN_DEF_ATP": "111046dd-295b-4d6d-9724-d52ac90bd1f2",
    "FLOW_FREE": "f30db892-07e9-47e9-837c-80727f46fd3d",
}
DENIED = {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}


def _tenants(sim: Simulation) -> Iterator[TenantState]:
    return (sim.tenants[tid] for tid in sim.reported_tenants)


def _assert_well_formed(tenant: TenantState) -> None:
    skus = tenant.subscribed_skus.values()
    assert 2 <= len(skus) <= 6
    assert len({s["skuId"] for s in skus}) == len(skus)
    for sku in skus:
        assert set(sku) == PROPERTIES
        assert sku["id"] == f"{tenant.tenant_id}_{sku['skuId']}" and sku["accountId"] == tenant.tenant_id
        assert sku["capabilityStatus"] in STATUSES and sku["appliesTo"] in ("User", "Company")
        assert set(sku["prepaidUnits"]) == {"enabled", "lockedOut", "suspended", "warning"}
        assert all(isinstance(n, int) and n >= 0 for n in sku["prepaidUnits"].values())
        assert isinstance(sku["consumedUnits"], int) and sku["consumedUnits"] >= 0
        assert str(uuid.UUID(sku["skuId"])) == sku["skuId"]
        assert SKUS[sku["skuPartNumber"]].sku_id == sku["skuId"]
        assert KNOWN.get(sku["skuPartNumber"], sku["skuId"]) == sku["skuId"]
        for plan in sku["servicePlans"]:
            assert set(plan) == {"servicePlanId", "servicePlanName", "provisioningStatus", "appliesTo"}
            assert str(uuid.UUID(plan["servicePlanId"])) == plan["servicePlanId"]
        if sku["capabilityStatus"] == "Deleted":
            assert sku["subscriptionIds"] == [] and not any(sku["prepaidUnits"].values())
        else:
            assert len(sku["subscriptionIds"]) == 1
    # Licences match what the tenant has: Intune and Defender plans where it is licensed for them.
    enabled_plans = {
        p["servicePlanName"] for s in skus if s["capabilityStatus"] in ("Enabled", "Warning") for p in s["servicePlans"]
    }
    assert ("INTUNE_A" in enabled_plans) == tenant.intune_licensed
    assert ("WINDEFATP" in enabled_plans) == tenant.defender_licensed


@pytest.mark.parametrize("name", ["demo", "edge", "gdap"])
def test_every_tenant_has_a_few_licences_that_match_its_services(name: str) -> None:
    sim = build_simulation(load_spec(name), now=NOW)
    for tenant in _tenants(sim):
        _assert_well_formed(tenant)


def test_demo_and_edge_hold_over_consumed_warning_suspended_deleted_and_zero_values() -> None:
    demo = {t.key: t.subscribed_skus.values() for t in _tenants(build_simulation(load_spec("demo"), now=NOW))}
    demo_skus = [s for skus in demo.values() for s in skus]
    assert any(s["consumedUnits"] > s["prepaidUnits"]["enabled"] and s["capabilityStatus"] == "Enabled"
               for s in demo["northwind"])
    assert {s["capabilityStatus"] for s in demo_skus} == {"Enabled", "Warning", "Suspended"}
    assert sum(s["consumedUnits"] <= s["prepaidUnits"]["enabled"] for s in demo_skus) > len(demo_skus) * 0.7
    tailspin = {s["skuPartNumber"]: s for s in demo["tailspin"]}
    assert tailspin["WIN_DEF_ATP"]["capabilityStatus"] == "Suspended"  # its Defender lapsed
    assert tailspin["WIN_DEF_ATP"]["prepaidUnits"] == {"enabled": 0, "lockedOut": 0, "suspended": 25, "warning": 0}
    edge = {t.key: t.subscribed_skus.values() for t in _tenants(build_simulation(load_spec("edge"), now=NOW))}
    edge_skus = [s for skus in edge.values() for s in skus]
    assert {"Deleted", "LockedOut"} <= {s["capabilityStatus"] for s in edge_skus}
    odd = {s["skuPartNumber"]: s for s in edge["healthy-gdap"]}
    assert odd["FLOW_FREE"]["consumedUnits"] == 0
    assert odd["POWER_BI_STANDARD"]["capabilityStatus"] == "Enabled"
    assert not any(odd["POWER_BI_STANDARD"]["prepaidUnits"].values())
    assert odd["EMS"]["capabilityStatus"] == "Deleted" and odd["EMS"]["subscriptionIds"] == []
    assert odd["WINDOWS_STORE"]["appliesTo"] == "Company"
    assert {p["appliesTo"] for p in odd["WINDOWS_STORE"]["servicePlans"]} == {"Company"}


def _dump(name: str) -> str:
    sim = build_simulation(load_spec(name), now=NOW)
    return json.dumps({t.key: t.subscribed_skus.values() for t in sim.tenants.values()}, sort_keys=True)


def test_generation_is_deterministic_and_leaves_the_other_data_as_it_was() -> None:
    assert _dump("demo") == _dump("demo") and _dump("edge") == _dump("edge")
    without = load_spec("demo")
    for tenant_spec in without["tenants"]:
        tenant_spec["subscribedSkus"] = []
    plain = build_simulation(without, now=NOW)
    full = build_simulation(load_spec("demo"), now=NOW)
    for tid, tenant in full.tenants.items():
        other = plain.tenants[tid]
        assert tenant.devices.values() == other.devices.values()
        assert tenant.machines.values() == other.machines.values()
        assert tenant.vulnerabilities.values() == other.vulnerabilities.values()


def test_an_unknown_sku_in_a_scenario_is_refused() -> None:
    spec = load_spec("demo")
    spec["tenants"][0]["subscribedSkus"] = [{"sku": "NOT_A_SKU", "enabled": 1}]
    with pytest.raises(ValueError, match="unknown SKU 'NOT_A_SKU'"):
        build_simulation(spec, now=NOW)


# ------------------------------------------------------------------ the Graph route


async def test_lists_every_sku_in_one_page() -> None:
    graph = Graph()
    truth = graph.tenant("contoso").subscribed_skus.values()
    answer = await graph.get(SKUS_PATH)
    assert answer.status == 200
    body = answer.json()
    assert list(body) == ["@odata.context", "value"]  # one page, no next link
    assert body["@odata.context"] == f"https://{HOST}/graph/v1.0/$metadata#subscribedSkus"
    assert body["value"] == truth
    one = (await graph.get(f"{SKUS_PATH}/{truth[0]['id']}")).json()
    assert one.pop("@odata.context").endswith("#subscribedSkus/$entity") and one == truth[0]
    assert (await graph.get(f"{SKUS_PATH}('{truth[1]['id']}')")).json()["skuId"] == truth[1]["skuId"]
    missing = await graph.get(f"{SKUS_PATH}/{graph.tenant('contoso').tenant_id}_00000000-0000-0000-0000-000000000000")
    assert missing.status == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


async def test_select_projects_and_other_query_options_are_refused() -> None:
    graph = Graph()
    truth = graph.tenant("contoso").subscribed_skus.values()
    page = (await graph.get(f"{SKUS_PATH}?$select=skuPartNumber,prepaidUnits,consumedUnits")).json()
    assert page["@odata.context"].endswith("#subscribedSkus(skuPartNumber,prepaidUnits,consumedUnits)")
    assert page["value"] == [
        {"skuPartNumber": s["skuPartNumber"], "prepaidUnits": s["prepaidUnits"], "consumedUnits": s["consumedUnits"]}
        for s in truth
    ]
    unknown = await graph.get(f"{SKUS_PATH}?$select=skuId,licenseCount")
    assert unknown.status == 400
    assert unknown.json()["error"]["message"] == (
        "Could not find a property named 'licenseCount' on type 'microsoft.graph.subscribedSku'."
    )
    for option in ("$top=2", "$filter=capabilityStatus eq 'Enabled'", "$skip=1", "$orderby=skuPartNumber",
                   "$count=true"):
        refused = await graph.get(f"{SKUS_PATH}?{option}")
        assert refused.status == 400, option
        assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"


@pytest.mark.parametrize(
    "roles",
    [
        ["LicenseAssignment.Read.All"],
        ["Organization.Read.All"],
        ["Organization.ReadWrite.All"],
        ["Directory.Read.All"],
        ["Directory.ReadWrite.All"],
    ],
)
async def test_each_documented_permission_reads_the_skus(roles: list[str]) -> None:
    assert (await Graph().get(SKUS_PATH, roles=roles)).status == 200


async def test_without_a_documented_permission_the_directory_answers_403() -> None:
    graph = Graph()
    truth = graph.tenant("contoso").subscribed_skus.values()
    unrelated = ["DeviceManagementManagedDevices.Read.All", "Device.Read.All", "LicenseAssignment.ReadWrite.All"]
    for roles in ([], unrelated):
        for path in (SKUS_PATH, f"{SKUS_PATH}/{truth[0]['id']}"):
            denied = await graph.get(path, roles=roles)
            assert denied.status == 403
            error = denied.json()["error"]
            assert {k: error[k] for k in DENIED} == DENIED
    # tailspin consented Organization.Read.All, not Directory.Read.All: enough here.
    assert (await graph.get(SKUS_PATH, tenant="tailspin")).status == 200


async def test_ground_truth_summary_and_control_api() -> None:
    graph = Graph()
    tenant = graph.tenant("woodgrove")
    truth = (await graph.call("GET", f"/_sim/tenants/{tenant.tenant_id}/truth")).json()
    assert truth["subscribedSkus"] == tenant.subscribed_skus.values()
    assert truth["tenant"]["subscribedSkuCount"] == len(tenant.subscribed_skus) == 5
    scenario = (await graph.call("GET", "/_sim/scenario")).json()
    assert {t["key"]: t["subscribedSkuCount"] for t in scenario["tenants"]} == {
        "contoso": 4,
        "northwind": 3,
        "tailspin": 3,
        "woodgrove": 5,
    }
    collection = f"/_sim/tenants/{tenant.tenant_id}/subscribedSkus"
    ems = next(s for s in tenant.subscribed_skus.values() if s["skuPartNumber"] == "EMS")
    renewed = await graph.call(
        "PATCH",
        f"{collection}/{ems['id']}",
        body={
            "capabilityStatus": "Enabled",
            "prepaidUnits": {"enabled": 60, "lockedOut": 0, "suspended": 0, "warning": 0},
        },
    )
    assert renewed.status == 200
    sku_id = ems["id"]
    listed = (await graph.get(SKUS_PATH, tenant="woodgrove", roles=["Organization.Read.All"])).json()["value"]
    assert next(s for s in listed if s["id"] == sku_id)["capabilityStatus"] == "Enabled"
    added = await graph.call("POST", collection, body={"skus": [{"sku": "INTUNE_A", "enabled": 10, "consumed": 2}]})
    assert added.status == 201 and added.json()["ids"] == [f"{tenant.tenant_id}_{KNOWN['INTUNE_A']}"]
    assert (await graph.call("DELETE", f"{collection}/{sku_id}")).status == 204
    assert len(tenant.subscribed_skus) == 5
    assert (await graph.call("POST", collection, body={"skus": [{"sku": "NOPE"}]})).status == 400
    assert (await graph.call("POST", "/_sim/reset")).status == 200
    assert graph.tenant("woodgrove").subscribed_skus.values() == truth["subscribedSkus"]
