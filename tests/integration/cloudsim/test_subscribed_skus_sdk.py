"""Subscribed SKUs through the real msgraph-sdk GraphServiceClient (the simulator's properties and their
types are what Microsoft's own v1.0 model parses), and Defender's machinesVulnerabilities over HTTPS from
the simulator process."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from .conftest import Sim
from .test_autopilot_sdk import _client

pytestmark = pytest.mark.integration

DEFENDER = "https://api.securitycenter.microsoft.com"


def test_sdk_lists_and_parses_subscribed_skus(fresh: Sim) -> None:
    from msgraph.generated.subscribed_skus.subscribed_skus_request_builder import (
        SubscribedSkusRequestBuilder as Builder,
    )

    tenant = fresh.tenant("healthy-gdap")
    client = _client(fresh, tenant["tenantId"])

    async def collect() -> tuple[Any, Any, Any]:
        whole = await client.subscribed_skus.get()
        selected = await client.subscribed_skus.get(
            request_configuration=Builder.SubscribedSkusRequestBuilderGetRequestConfiguration(
                query_parameters=Builder.SubscribedSkusRequestBuilderGetQueryParameters(
                    select=["skuId", "skuPartNumber", "prepaidUnits"]
                )
            )
        )
        assert whole is not None and whole.value
        one = await client.subscribed_skus.by_subscribed_sku_id(whole.value[0].id).get()
        return whole, selected, one

    whole, selected, one = asyncio.run(collect())
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    expected = truth["subscribedSkus"]
    assert tenant["subscribedSkuCount"] == len(expected) >= 4
    assert whole.odata_next_link is None  # one answer, as Microsoft gives it
    assert [s.id for s in whole.value] == [s["id"] for s in expected]
    for parsed, raw in zip(whole.value, expected, strict=True):
        assert parsed.additional_data == {}  # every property is one the v1.0 model knows
        assert parsed.sku_id == uuid.UUID(raw["skuId"]) and parsed.sku_part_number == raw["skuPartNumber"]
        assert parsed.account_id == tenant["tenantId"] and parsed.account_name == raw["accountName"]
        assert parsed.consumed_units == raw["consumedUnits"]
        assert parsed.capability_status == raw["capabilityStatus"] and parsed.applies_to == raw["appliesTo"]
        units = parsed.prepaid_units
        assert units is not None and units.additional_data == {}
        assert (units.enabled, units.locked_out, units.suspended, units.warning) == tuple(
            raw["prepaidUnits"][k] for k in ("enabled", "lockedOut", "suspended", "warning")
        )
        assert [p.service_plan_id for p in parsed.service_plans or []] == [
            uuid.UUID(p["servicePlanId"]) for p in raw["servicePlans"]
        ]
        assert all(p.additional_data == {} and p.provisioning_status for p in parsed.service_plans or [])
        assert parsed.subscription_ids == raw["subscriptionIds"]
    statuses = {s.capability_status for s in whole.value}
    assert {"Enabled", "Deleted"} <= statuses and "Company" in {s.applies_to for s in whole.value}
    assert selected is not None and selected.value
    assert selected.value[0].sku_part_number == expected[0]["skuPartNumber"]
    assert selected.value[0].consumed_units is None and selected.value[0].prepaid_units is not None
    assert one is not None and one.id == whole.value[0].id and one.sku_id == whole.value[0].sku_id


def test_sdk_raises_the_directory_403_without_a_licence_permission(fresh: Sim) -> None:
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    tenant = fresh.tenant("healthy-gdap")
    sync_app = fresh.scenario()["registrations"][0]["syncAppId"]
    consent = fresh.http.put(
        f"{fresh.url}/tenants/{tenant['tenantId']}/consents/{sync_app}",
        json={"roles": {"graph": ["DeviceManagementManagedDevices.Read.All", "Device.Read.All"]}},
    )
    assert consent.status_code == 200
    client = _client(fresh, tenant["tenantId"])
    with pytest.raises(ODataError) as caught:
        asyncio.run(client.subscribed_skus.get())
    assert caught.value.response_status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "Authorization_RequestDenied"
    assert caught.value.error.message == "Insufficient privileges to complete the operation."


def test_machines_vulnerabilities_page_by_next_link_over_https(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-gdap")
    token = fresh.token(tenant["tenantId"], "sync-app", DEFENDER)
    headers = {"Authorization": f"Bearer {token}"}
    first = fresh.http.get(f"{fresh.defender}/api/vulnerabilities/machinesVulnerabilities?$top=4", headers=headers)
    assert first.status_code == 200
    body = first.json()
    assert body["@odata.context"].endswith(
        "/api/$metadata#Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)"
    )
    seen = list(body["value"])
    link = body.get("@odata.nextLink")
    while link:
        page = fresh.http.get(link, headers=headers).json()
        seen += page["value"]
        link = page.get("@odata.nextLink")
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    assert seen == truth["machinesVulnerabilities"] and tenant["vulnerabilityCount"] == len(seen)
    assert len({r["id"] for r in seen}) == len(seen) - 1  # edge lists one id twice, on different pages
    missing = fresh.tenant("no-defender")
    refused = fresh.http.get(
        f"{fresh.defender}/api/vulnerabilities/machinesVulnerabilities",
        headers={"Authorization": f"Bearer {fresh.token(missing['tenantId'], 'sync-app', DEFENDER)}"},
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "ResourceNotFound"
