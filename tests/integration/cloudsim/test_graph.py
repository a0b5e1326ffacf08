"""Graph v1.0 through the real msgraph-sdk GraphServiceClient, and Graph's error shapes."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from azure.identity import ClientSecretCredential

from .conftest import Sim

pytestmark = pytest.mark.integration


def _graph_client(sim: Sim, tenant_id: str, app_id: str, secret: str):
    from msgraph import GraphServiceClient

    credential = ClientSecretCredential(
        tenant_id, app_id, secret, authority=sim.authority, disable_instance_discovery=True
    )
    client = GraphServiceClient(credentials=credential, scopes=["https://graph.microsoft.com/.default"])
    client.request_adapter.base_url = f"{sim.graph}/v1.0"
    return client


def test_sdk_lists_managed_devices_across_pages_and_organization(fresh: Sim) -> None:
    from msgraph.generated.device_management.managed_devices.managed_devices_request_builder import (
        ManagedDevicesRequestBuilder,
    )

    tenant = fresh.tenant("healthy-gdap")
    added = 250 - tenant["deviceCount"]
    assert (
        fresh.http.post(f"{fresh.url}/tenants/{tenant['tenantId']}/managedDevices", json={"count": added}).status_code
        == 201
    )
    registration = fresh.scenario()["registrations"][0]
    client = _graph_client(fresh, tenant["tenantId"], registration["syncAppId"], registration["syncAppSecret"])

    async def collect() -> tuple[list[str], int, str]:
        config = ManagedDevicesRequestBuilder.ManagedDevicesRequestBuilderGetRequestConfiguration(
            query_parameters=ManagedDevicesRequestBuilder.ManagedDevicesRequestBuilderGetQueryParameters(top=100)
        )
        page = await client.device_management.managed_devices.get(request_configuration=config)
        ids: list[str] = []
        pages = 0
        while page is not None:
            pages += 1
            ids += [d.id for d in page.value or []]
            if not page.odata_next_link:
                break
            page = await client.device_management.managed_devices.with_url(page.odata_next_link).get()
        org = await client.organization.get()
        return ids, pages, org.value[0].display_name

    ids, pages, org_name = asyncio.run(collect())
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    assert pages == 3
    assert ids == [d["id"] for d in truth["managedDevices"]]
    assert org_name == tenant["displayName"]


def _get(sim: Sim, token: str, path: str):
    return sim.http.get(f"{sim.graph}/v1.0/{path}", headers={"Authorization": f"Bearer {token}"})


def test_list_shape_filter_and_select(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-gdap")
    token = fresh.token(tenant["tenantId"], "sync-app", "https://graph.microsoft.com")
    page = _get(fresh, token, "deviceManagement/managedDevices").json()
    assert page["@odata.context"].endswith("$metadata#deviceManagement/managedDevices")
    assert all(d["physicalMemoryInBytes"] == 0 and d["ethernetMacAddress"] is None for d in page["value"])
    assert "managedDeviceOwnerType" in page["value"][0]
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()["managedDevices"]
    cutoff = sorted(d["lastSyncDateTime"] for d in truth)[len(truth) // 2]
    filtered = _get(
        fresh,
        token,
        f"deviceManagement/managedDevices?$filter=lastSyncDateTime gt {cutoff}&$select=id,lastSyncDateTime",
    ).json()
    expected = [
        d["id"] for d in truth if datetime.fromisoformat(d["lastSyncDateTime"]) > datetime.fromisoformat(cutoff)
    ]
    assert [d["id"] for d in filtered["value"]] == expected
    assert set(filtered["value"][0]) == {"@odata.type", "id", "lastSyncDateTime"}
    one = _get(
        fresh, token, f"deviceManagement/managedDevices/{truth[0]['id']}?$select=id,physicalMemoryInBytes"
    ).json()
    assert one["physicalMemoryInBytes"] == truth[0]["physicalMemoryInBytes"] > 0


def test_graph_error_shapes(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-gdap")
    token = fresh.token(tenant["tenantId"], "sync-app", "https://graph.microsoft.com")
    unauthenticated = fresh.http.get(
        f"{fresh.graph}/v1.0/deviceManagement/managedDevices", headers={"Authorization": "Bearer abc.def.ghi"}
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert unauthenticated.headers["request-id"]
    wrong_audience = fresh.token(tenant["tenantId"], "sync-app", "https://api.securitycenter.microsoft.com")
    assert _get(fresh, wrong_audience, "organization").status_code == 401
    bad_filter = _get(fresh, token, "deviceManagement/managedDevices?$filter=lastSyncDateTime gt")
    assert bad_filter.status_code == 400
    error = bad_filter.json()["error"]
    assert error["code"] == "BadRequest" and error["innerError"]["request-id"]
    unknown = _get(fresh, token, "deviceManagement/nothingHere")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "Resource not found for the segment 'nothingHere'."
    missing = _get(fresh, token, "deviceManagement/managedDevices/00000000-0000-0000-0000-000000000001")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    response = _get(fresh, token, "organization")
    assert response.headers["client-request-id"] and response.headers["request-id"]


def test_permission_missing_and_intune_not_licensed(fresh: Sim) -> None:
    no_perm = fresh.tenant("permission-missing")
    token = fresh.token(no_perm["tenantId"], "sync-app", "https://graph.microsoft.com")
    forbidden = _get(fresh, token, "deviceManagement/managedDevices")
    assert forbidden.status_code == 403
    inner = json.loads(forbidden.json()["error"]["message"])
    assert "DeviceManagementManagedDevices.Read.All" in inner["Message"]
    no_intune = fresh.tenant("no-intune")
    token = fresh.token(no_intune["tenantId"], "sync-app", "https://graph.microsoft.com")
    unlicensed = _get(fresh, token, "deviceManagement/managedDevices")
    assert unlicensed.status_code == 400
    assert "Request not applicable to target tenant" in unlicensed.json()["error"]["message"]


def test_detected_apps_and_devices_per_app(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-gdap")
    token = fresh.token(tenant["tenantId"], "sync-app", "https://graph.microsoft.com")
    apps = _get(fresh, token, "deviceManagement/detectedApps?$top=4").json()
    assert len(apps["value"]) == 4 and "@odata.nextLink" in apps
    second = fresh.http.get(apps["@odata.nextLink"], headers={"Authorization": f"Bearer {token}"}).json()
    assert {a["id"] for a in second["value"]}.isdisjoint({a["id"] for a in apps["value"]})
    app = apps["value"][0]
    devices = _get(fresh, token, f"deviceManagement/detectedApps/{app['id']}/managedDevices").json()["value"]
    assert len(devices) == app["deviceCount"] >= 1


def test_export_job_lifecycle_and_zip(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-gdap")
    token = fresh.token(tenant["tenantId"], "sync-app", "https://graph.microsoft.com")
    headers = {"Authorization": f"Bearer {token}"}
    created = fresh.http.post(
        f"{fresh.graph}/v1.0/deviceManagement/reports/exportJobs",
        headers=headers,
        json={"reportName": "AppInvRawData", "select": [], "filter": "", "format": "csv"},
    )
    assert created.status_code == 201 and created.json()["status"] == "notStarted"
    job_id = created.json()["id"]
    statuses = []
    for _ in range(3):
        job = fresh.http.get(
            f"{fresh.graph}/v1.0/deviceManagement/reports/exportJobs('{job_id}')", headers=headers
        ).json()
        statuses.append(job["status"])
    assert statuses == ["inProgress", "completed", "completed"]
    archive = zipfile.ZipFile(io.BytesIO(fresh.http.get(job["url"]).content))
    (name,) = archive.namelist()
    text = archive.read(name).decode("utf-8")
    rows = text.strip().split("\r\n")
    assert rows[0].split(",")[0] == '"ApplicationKey"' and len(rows[0].split(",")) == 13
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    assert len(rows) - 1 == sum(a["deviceCount"] for a in truth["detectedApps"])


def test_application_password_credentials(fresh: Sim) -> None:
    scenario = fresh.scenario()
    partner = scenario["partner"]["tenantId"]
    token = fresh.token(partner, "partner-app", "https://graph.microsoft.com")
    sync = fresh.app("sync-app")
    app = _get(fresh, token, f"applications(appId='{sync['appId']}')").json()
    (credential,) = app["passwordCredentials"]
    assert credential["hint"] == sync["secrets"][0]["value"][:3]
    assert credential["keyId"] == sync["secrets"][0]["keyId"]
    assert datetime.fromisoformat(credential["endDateTime"]) > datetime.now(UTC)
    contracts = _get(fresh, token, "contracts").json()["value"]
    assert {c["customerId"] for c in contracts} >= {fresh.tenant("healthy-dap")["tenantId"]}
