"""Windows Autopilot device identities through the real msgraph-sdk GraphServiceClient: the simulator's
pages, properties and enum values are what Microsoft's own v1.0 models parse."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from azure.identity import ClientSecretCredential

from .conftest import Sim

pytestmark = pytest.mark.integration

ZERO_GUID = "00000000-0000-0000-0000-000000000000"


def _client(sim: Sim, tenant_id: str):
    from msgraph import GraphServiceClient

    registration = sim.scenario()["registrations"][0]
    credential = ClientSecretCredential(
        tenant_id,
        registration["syncAppId"],
        registration["syncAppSecret"],
        authority=sim.authority,
        disable_instance_discovery=True,
    )
    client = GraphServiceClient(credentials=credential, scopes=["https://graph.microsoft.com/.default"])
    client.request_adapter.base_url = f"{sim.graph}/v1.0"
    return client


def test_sdk_pages_and_parses_autopilot_identities(fresh: Sim) -> None:
    from msgraph.generated.device_management.windows_autopilot_device_identities.windows_autopilot_device_identities_request_builder import (  # noqa: E501
        WindowsAutopilotDeviceIdentitiesRequestBuilder as Builder,
    )
    from msgraph.generated.models.enrollment_state import EnrollmentState

    tenant = fresh.tenant("healthy-gdap")
    client = _client(fresh, tenant["tenantId"])

    async def collect():
        config = Builder.WindowsAutopilotDeviceIdentitiesRequestBuilderGetRequestConfiguration(
            query_parameters=Builder.WindowsAutopilotDeviceIdentitiesRequestBuilderGetQueryParameters(top=3)
        )
        endpoint = client.device_management.windows_autopilot_device_identities
        page = await endpoint.get(request_configuration=config)
        identities, pages = [], 0
        while page is not None:
            pages += 1
            identities += page.value or []
            if not page.odata_next_link:
                break
            page = await endpoint.with_url(page.odata_next_link).get()
        one = await endpoint.by_windows_autopilot_device_identity_id(identities[0].id).get()
        return identities, pages, one

    identities, pages, one = asyncio.run(collect())
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    expected = truth["windowsAutopilotDeviceIdentities"]
    assert tenant["autopilotDeviceCount"] == len(expected) > 3
    assert pages == -(-len(expected) // 3)
    assert [i.id for i in identities] == [i["id"] for i in expected]
    devices = {d["id"]: d for d in truth["managedDevices"]}
    for parsed, raw in zip(identities, expected, strict=True):
        assert parsed.additional_data == {}  # every property is one the v1.0 model knows
        assert parsed.enrollment_state == EnrollmentState(raw["enrollmentState"])
        assert isinstance(parsed.last_contacted_date_time, datetime)
        assert parsed.serial_number == raw["serialNumber"] and parsed.system_family == raw["systemFamily"]
        if parsed.enrollment_state == EnrollmentState.Enrolled:
            device = devices[parsed.managed_device_id]
            assert parsed.serial_number == device["serialNumber"]
            assert parsed.azure_active_directory_device_id == device["azureADDeviceId"]
        else:
            assert parsed.managed_device_id == ZERO_GUID
    assert {i.enrollment_state for i in identities} >= {EnrollmentState.Enrolled, EnrollmentState.NotContacted}
    assert one is not None and one.id == identities[0].id and one.serial_number == identities[0].serial_number


def test_sdk_raises_forbidden_without_the_service_config_permission(fresh: Sim) -> None:
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    tenant = fresh.tenant("permission-missing")
    client = _client(fresh, tenant["tenantId"])
    with pytest.raises(ODataError) as caught:
        asyncio.run(client.device_management.windows_autopilot_device_identities.get())
    assert caught.value.response_status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "Forbidden"
    assert "DeviceManagementServiceConfig.Read.All" in str(caught.value.error.message)
