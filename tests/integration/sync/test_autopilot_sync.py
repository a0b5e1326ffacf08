"""Windows Autopilot device identities, synced through the simulator and compared field by field with
its ground truth; a tenant whose consent lacks the permission still syncs everything else and says what
is missing; the list route filters never-enrolled hardware and serves CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from shared.errors import ErrorCode
from shared.mapping.devices import is_placeholder_serial, join_key
from shared.models import TenantStatus
from tests.integration.support import all_assets, instant, sync_tenants, truth

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@pytest.fixture(scope="module")
async def synced(scenario, module_runtime) -> dict[str, Any]:
    """The demo MSP stored (not through the API), its tenants recorded, contoso and tailspin synced."""
    keys = {t["key"]: t["tenantId"] for t in scenario["tenants"]}
    integration, (contoso, tailspin) = await sync_tenants(
        module_runtime, scenario["registrations"][0], [keys["contoso"], keys["tailspin"]])
    return {"integration": integration, "tenants": keys, "results": {"contoso": contoso, "tailspin": tailspin}}


async def _stored(runtime: Any, integration_id: str, tenant_id: str, **filters: Any) -> dict[str, dict[str, Any]]:
    return await all_assets(runtime, "autopilotDevices", integration_id, tenant_id, **filters)


async def test_every_identity_is_stored_as_the_simulator_holds_it(stack, synced, module_runtime):
    tid = synced["tenants"]["contoso"]
    assert synced["results"]["contoso"].outcome == "ok"
    expected = {i["id"]: i for i in truth(stack, tid)["windowsAutopilotDeviceIdentities"]}
    stored = await _stored(module_runtime, synced["integration"].id, tid)

    assert set(stored) == set(expected) and len(stored) > 0
    for ident, raw in expected.items():
        got = stored[ident]
        serial = (raw.get("serialNumber") or "").strip().upper() or None
        assert got["serialNumber"] == serial
        assert got["serialPlaceholder"] is is_placeholder_serial(serial)
        for name in ("manufacturer", "model", "groupTag", "purchaseOrderIdentifier", "enrollmentState",
                     "displayName", "userPrincipalName", "skuNumber", "systemFamily"):
            assert got.get(name) == raw.get(name), (ident, name)
        assert instant(got["lastContactedDateTime"]) == instant(raw.get("lastContactedDateTime")), ident
        assert got["managedDeviceId"] == join_key(raw.get("managedDeviceId"))
        assert got["azureActiveDirectoryDeviceId"] == join_key(raw.get("azureActiveDirectoryDeviceId"))
        enrolled = raw["enrollmentState"] == "enrolled" and join_key(raw["managedDeviceId"]) is not None
        assert got["enrolled"] is enrolled

    tenant = await module_runtime.tenants.get_tenant(synced["integration"].id, tid)
    assert tenant.counts.entities["autopilotDevices"] == len(expected)
    never = await _stored(module_runtime, synced["integration"].id, tid, enrolled=False)
    assert set(never) == {i for i, raw in expected.items() if not stored[i]["enrolled"]} and never


async def test_a_tenant_without_the_permission_syncs_the_rest_and_names_what_is_missing(synced, module_runtime):
    tid = synced["tenants"]["tailspin"]
    result = synced["results"]["tailspin"]
    assert result.outcome == "ok"
    tenant = await module_runtime.tenants.get_tenant(synced["integration"].id, tid)
    assert tenant.status == TenantStatus.OK and tenant.counts.devices > 0
    assert "autopilotDevices" not in tenant.counts.entities
    notes = [n for n in result.run.notes if n["message"].startswith("autopilotDevices not collected")]
    assert [n["code"] for n in notes] == [ErrorCode.PERMISSION_MISSING.value]
    assert "DeviceManagementServiceConfig.Read.All" in notes[0]["message"] + notes[0]["action"]
    # The tenant's one `error` slot shows its first note (Defender's, here); the run record holds them all.
    assert tenant.error is not None


def test_the_list_route_filters_and_exports_csv(stack, synced):
    tid = synced["tenants"]["contoso"]
    with stack.api() as api:
        url = f"/integrations/{synced['integration'].id}/tenants/{tid}/autopilotDevices"
        page = api.get(url, params={"enrolled": "false", "top": 100})
        assert page.status_code == 200, page.text
        assert page.json()["value"] and all(not d["enrolled"] for d in page.json()["value"])
        assert api.get(url, params={"enrolled": "maybe"}).status_code == 400
        exported = api.get(url, params={"format": "csv"})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
        assert {"serialNumber", "enrolled", "managedDeviceId"} <= set(rows[0])
        assert len(rows) == len(truth(stack, tid)["windowsAutopilotDeviceIdentities"])
