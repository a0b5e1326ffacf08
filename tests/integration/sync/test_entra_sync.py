"""Microsoft Entra ID devices, synced through the simulator and compared field by field with its ground
truth; every Intune device with an Entra device id is found there, the unmanaged ones are listable on their
own, and a tenant without the permission syncs the rest."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ErrorCode
from shared.mapping.devices import join_key
from shared.models import TenantStatus
from tests.integration.support import all_assets, all_devices, instant, sync_tenants, truth

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@pytest.fixture(scope="module")
async def synced(scenario, module_runtime) -> dict[str, Any]:
    keys = {t["key"]: t["tenantId"] for t in scenario["tenants"]}
    integration, (contoso, tailspin) = await sync_tenants(
        module_runtime, scenario["registrations"][0], [keys["contoso"], keys["tailspin"]])
    return {"integration": integration, "tenants": keys, "results": {"contoso": contoso, "tailspin": tailspin}}


async def _stored(runtime: Any, integration_id: str, tenant_id: str, **filters: Any) -> dict[str, dict[str, Any]]:
    return await all_assets(runtime, "entraDevices", integration_id, tenant_id, top=9, **filters)


async def test_every_entra_device_is_stored_as_the_simulator_holds_it(stack, synced, module_runtime):
    tid, integration = synced["tenants"]["contoso"], synced["integration"]
    assert synced["results"]["contoso"].outcome == "ok"
    expected = {d["id"]: d for d in truth(stack, tid)["entraDevices"]}
    stored = await _stored(module_runtime, integration.id, tid)

    assert set(stored) == set(expected) and stored
    for ident, raw in expected.items():
        got = stored[ident]
        assert got["deviceId"] == join_key(raw.get("deviceId"))
        assert got["isManaged"] is bool(raw.get("isManaged"))
        for name in ("displayName", "operatingSystem", "operatingSystemVersion", "trustType", "isCompliant",
                     "accountEnabled", "manufacturer", "model"):
            assert got.get(name) == raw.get(name), (ident, name)
        for name in ("approximateLastSignInDateTime", "registrationDateTime"):  # stored as DateTime
            assert instant(got.get(name)) == instant(raw.get(name)), (ident, name)

    intune = await all_devices(module_runtime, integration.id, tid)
    by_device_id = {d["deviceId"]: d for d in stored.values()}
    for device in intune.values():
        key = join_key(device.get("azureADDeviceId"))
        if key is not None:
            assert by_device_id[key]["isManaged"] is True, device["id"]
    unmanaged = await _stored(module_runtime, integration.id, tid, managed=False)
    assert unmanaged and set(unmanaged) == {i for i, d in stored.items() if not d["isManaged"]}
    tenant = await module_runtime.tenants.get_tenant(integration.id, tid)
    assert tenant.counts.entities["entraDevices"] == len(expected)


async def test_a_tenant_without_device_read_syncs_the_rest_and_says_so(synced, module_runtime):
    tid = synced["tenants"]["tailspin"]
    result = synced["results"]["tailspin"]
    assert result.outcome == "ok"
    tenant = await module_runtime.tenants.get_tenant(synced["integration"].id, tid)
    assert tenant.status == TenantStatus.OK and "entraDevices" not in tenant.counts.entities
    notes = [n for n in result.run.notes if n["message"].startswith("entraDevices not collected")]
    assert [n["code"] for n in notes] == [ErrorCode.PERMISSION_MISSING.value]
    assert "Device.Read.All" in notes[0]["message"] + notes[0]["action"]


def test_the_list_route_filters_unmanaged_devices(stack, synced):
    tid = synced["tenants"]["contoso"]
    with stack.api() as api:
        url = f"/integrations/{synced['integration'].id}/tenants/{tid}/entraDevices"
        page = api.get(url, params={"managed": "false", "top": 100})
        assert page.status_code == 200, page.text
        assert page.json()["value"] and all(d["isManaged"] is False for d in page.json()["value"])
        assert api.get(url, params={"managed": "perhaps"}).status_code == 400
