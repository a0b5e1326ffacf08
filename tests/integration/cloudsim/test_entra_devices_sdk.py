"""Microsoft Entra ID devices through the real msgraph-sdk GraphServiceClient: the simulator's pages,
properties and their types are what Microsoft's own v1.0 models parse."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from .conftest import Sim
from .test_autopilot_sdk import _client

pytestmark = pytest.mark.integration

ZERO_GUID = "00000000-0000-0000-0000-000000000000"


def test_sdk_pages_and_parses_entra_devices(fresh: Sim) -> None:
    from msgraph.generated.devices.devices_request_builder import DevicesRequestBuilder as Builder

    tenant = fresh.tenant("healthy-gdap")
    client = _client(fresh, tenant["tenantId"])

    async def collect():
        config = Builder.DevicesRequestBuilderGetRequestConfiguration(
            query_parameters=Builder.DevicesRequestBuilderGetQueryParameters(top=5)
        )
        page = await client.devices.get(request_configuration=config)
        devices, pages = [], 0
        while page is not None:
            pages += 1
            devices += page.value or []
            if not page.odata_next_link:
                break
            page = await client.devices.with_url(page.odata_next_link).get()
        selected = await client.devices.get(
            request_configuration=Builder.DevicesRequestBuilderGetRequestConfiguration(
                query_parameters=Builder.DevicesRequestBuilderGetQueryParameters(
                    select=["id", "deviceId", "isManagementRestricted"], top=2
                )
            )
        )
        one = await client.devices.by_device_id(devices[0].id).get()
        return devices, pages, selected, one

    devices, pages, selected, one = asyncio.run(collect())
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    expected = truth["entraDevices"]
    assert tenant["entraDeviceCount"] == len(expected) > 5
    assert pages == -(-len(expected) // 5)
    assert [d.id for d in devices] == [d["id"] for d in expected]
    managed = {d["azureADDeviceId"]: d for d in truth["managedDevices"]}
    for parsed, raw in zip(devices, expected, strict=True):
        assert parsed.additional_data == {}  # every property is one the v1.0 model knows
        assert parsed.device_id == raw["deviceId"] and parsed.trust_type in ("Workplace", "AzureAd", "ServerAd")
        assert isinstance(parsed.registration_date_time, datetime)
        assert parsed.approximate_last_sign_in_date_time is None or isinstance(
            parsed.approximate_last_sign_in_date_time, datetime
        )
        assert parsed.is_management_restricted is None  # returned only on $select
        if parsed.is_managed:
            intune = managed[parsed.device_id]
            assert parsed.operating_system_version == intune["osVersion"]
            assert parsed.is_compliant == {"compliant": True, "noncompliant": False}.get(intune["complianceState"])
        else:
            assert parsed.device_id not in managed
    registered = {d["azureADDeviceId"] for d in truth["managedDevices"]} - {ZERO_GUID}
    assert registered <= {d.device_id for d in devices if d.is_managed}
    assert any(not d.is_managed for d in devices) and any(not d.account_enabled for d in devices)
    assert selected is not None and selected.value and selected.value[0].is_management_restricted is False
    assert selected.value[0].display_name is None
    assert one is not None and one.id == devices[0].id and one.device_id == devices[0].device_id


def test_sdk_raises_the_directory_403_without_device_read(fresh: Sim) -> None:
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    tenant = fresh.tenant("healthy-gdap")
    sync_app = fresh.scenario()["registrations"][0]["syncAppId"]
    consent = fresh.http.put(
        f"{fresh.url}/tenants/{tenant['tenantId']}/consents/{sync_app}",
        json={"roles": {"graph": ["DeviceManagementManagedDevices.Read.All", "Organization.Read.All"]}},
    )
    assert consent.status_code == 200
    client = _client(fresh, tenant["tenantId"])
    with pytest.raises(ODataError) as caught:
        asyncio.run(client.devices.get())
    assert caught.value.response_status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "Authorization_RequestDenied"
    assert caught.value.error.message == "Insufficient privileges to complete the operation."
