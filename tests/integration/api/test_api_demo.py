"""The API through the local Functions host, on the simulator's demo MSP: register, watch the tenants
sync, page and export assets, rotate a secret, delete; then scan everything for the secrets used."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.http import CallStats
from shared.models import Integration
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import sync_tenant
from tests.integration.support import job, store_integration

from .support import Recorder, api_client, assert_problem, leaks, stored_texts, wait_for_tenants

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@pytest.fixture(scope="module")
def recorder(secret_values) -> Iterator[Recorder]:
    """Every response the module's API client received. `test_no_secret_value_anywhere` scans what came
    before it; this scans all of them once the module is done, whatever order its tests ran in."""
    seen = Recorder()
    yield seen
    found = leaks(seen.seen, secret_values)
    if found:
        pytest.fail(f"secret values in the API's responses: {found}", pytrace=False)


@pytest.fixture(scope="module")
def api(stack, recorder):
    with api_client(stack, recorder) as client:
        yield client


@dataclass(frozen=True)
class Registered:
    integration: dict[str, Any]  # what POST /integrations answered
    tenants: list[dict[str, Any]]  # every tenant once its first sync had settled
    secrets: frozenset[str]  # the secret values the registration sent

    @property
    def id(self) -> str:
        return str(self.integration["id"])

    def biggest_ok_tenant(self) -> dict[str, Any]:
        return max((t for t in self.tenants if t["status"] == "ok"), key=lambda t: t["counts"]["devices"])


@pytest.fixture(scope="module")
def registered(api, scenario) -> Registered:
    body = scenario["registrations"][0]
    response = api.post("/integrations", json=body)
    assert response.status_code == 201, response.text
    integration = response.json()
    assert response.headers["location"] == f"/api/integrations/{integration['id']}"
    return Registered(integration=dict(integration), tenants=wait_for_tenants(api, integration["id"]),
                      secrets=frozenset({body["partnerAppSecret"], body["syncAppSecret"]}))


@pytest.fixture
async def second_integration(runtime, scenario, registered) -> Integration:
    """Another integration of the demo MSP's apps, its biggest tenant synced, for the test that deletes
    one: the module's own stays for the other tests. Stored without the API, which refuses the same
    apps twice while the first is active."""
    integration = await store_integration(runtime, scenario["registrations"][0])
    await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
    result = await sync_tenant(runtime, job(integration, registered.biggest_ok_tenant()["tenantId"]))
    assert result.outcome == "ok", result.reason
    return integration


def test_registration_shapes_the_integration_without_secret_values(registered, scenario):
    body = scenario["registrations"][0]
    integration = registered.integration
    assert integration["kind"] == "multiTenant"
    assert integration["status"] == "active"
    assert integration["partnerTenantId"] == body["partnerTenantId"]
    assert "tenantId" not in integration
    assert integration["error"] is None
    assert {s["appId"] for s in integration["secrets"]} == {body["partnerAppId"], body["syncAppId"]}
    for ref in integration["secrets"]:
        assert set(ref) == {"name", "appId", "expiresOn", "expiresOnSource"}
        assert ref["expiresOnSource"] == "given"


def test_every_tenant_settles_as_the_simulator_expects(registered, scenario):
    expected = {t["tenantId"]: t for t in scenario["tenants"]}
    tenants = {t["tenantId"]: t for t in registered.tenants}
    assert set(tenants) == set(expected)
    for tenant_id, tenant in tenants.items():
        want = expected[tenant_id]
        assert tenant["status"] == want["expected"]["status"], tenant
        if want["expected"]["status"] == "ok":
            assert tenant["counts"]["devices"] == want["deviceCount"]
            assert tenant["counts"]["software"] == want["appCount"]
        else:
            assert tenant["error"]["code"] == want["expected"]["errorCode"]
            assert tenant["error"]["action"]


def test_get_and_list_integrations(api, registered):
    assert api.get(f"/integrations/{registered.id}").json()["id"] == registered.id
    listed = api.get("/integrations").json()
    assert registered.id in {i["id"] for i in listed["value"]}
    assert "nextLink" not in listed


def test_the_same_apps_twice_is_a_409_naming_the_first(api, registered, scenario):
    doc = assert_problem(api.post("/integrations", json=scenario["registrations"][0]), 409)
    assert registered.id in doc["errors"][0]["message"]


def test_devices_page_across_several_pages_with_next_link(api, registered):
    tenant = registered.biggest_ok_tenant()
    url = f"/integrations/{registered.id}/tenants/{tenant['tenantId']}/devices"
    seen: list[str] = []
    response = api.get(url, params={"top": 7})
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["value"]) <= 7
        seen.extend(d["id"] for d in page["value"])
        pages += 1
        if "nextLink" not in page:
            break
        assert "code=" not in page["nextLink"]
        response = api.get(page["nextLink"])
    assert pages >= 3
    assert len(seen) == len(set(seen)) == tenant["counts"]["devices"]
    device = api.get(url, params={"top": 1}).json()["value"][0]
    assert device["tenantId"] == tenant["tenantId"]
    assert {"id", "deviceName", "serialNumber", "complianceState", "defender", "removedAt"} <= set(device)


def test_a_continuation_is_bound_to_its_query(api, registered):
    tenant = registered.biggest_ok_tenant()
    url = f"/integrations/{registered.id}/tenants/{tenant['tenantId']}/devices"
    next_link = api.get(url, params={"top": 5}).json()["nextLink"]
    token = next_link.split("continuation=")[1].split("&")[0]
    doc = assert_problem(
        api.get(url, params={"top": 5, "complianceState": "compliant", "continuation": token}), 400
    )
    assert doc["errors"][0]["field"] == "continuation"


def test_csv_export_holds_every_device_and_every_title(api, registered):
    tenant = registered.biggest_ok_tenant()
    base = f"/integrations/{registered.id}/tenants/{tenant['tenantId']}"
    response = api.get(f"{base}/devices", headers={"Accept": "text/csv"}, params={"top": 5})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM, as Excel expects
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == tenant["counts"]["devices"]
    assert {"id", "deviceName", "defender.healthStatus", "removedAt"} <= set(rows[0])
    exported = api.get(f"{base}/software", params={"format": "csv"}).content.decode("utf-8-sig")
    software = list(csv.DictReader(io.StringIO(exported)))
    assert len(software) == tenant["counts"]["software"]


def test_software_search_and_filters(api, registered):
    tenant = registered.biggest_ok_tenant()
    base = f"/integrations/{registered.id}/tenants/{tenant['tenantId']}"
    titles = api.get(f"{base}/software", params={"top": 1000}).json()["value"]
    needle = titles[0]["displayName"][:4]
    found = api.get(f"{base}/software", params={"search": needle}).json()["value"]
    assert found
    assert all(
        needle.lower() in (t["displayName"] or "").lower() or needle.lower() in (t["publisher"] or "").lower()
        for t in found
    )
    compliant = api.get(f"{base}/devices", params={"complianceState": "compliant", "top": 1000}).json()[
        "value"
    ]
    assert all(d["complianceState"] == "compliant" for d in compliant)


def test_reads_of_unknown_things_are_404_problems(api, registered):
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(api.get(f"/integrations/{unknown}"), 404)
    assert_problem(api.get(f"/integrations/{registered.id}/tenants/{unknown}/devices"), 404)
    assert_problem(api.get("/integrations/..%2F..%2Fetc/tenants"), 400)
    assert_problem(api.post(f"/integrations/{registered.id}/sync", json={"tenantIds": [unknown]}), 404)


def test_manual_sync_of_one_tenant_is_accepted(api, registered):
    tenant = registered.biggest_ok_tenant()
    response = api.post(f"/integrations/{registered.id}/sync", json={"tenantIds": [tenant["tenantId"]]})
    assert response.status_code == 202, response.text
    assert response.json() == {"integrationId": registered.id, "trigger": "manual", "queued": 1}


def test_openapi_is_anonymous(stack):
    import httpx

    response = httpx.get(f"{stack.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")
    assert httpx.get(f"{stack.base_url}/integrations", timeout=30).status_code == 401


def test_delete_stops_syncs_and_removes_the_vault_secrets(api, registered, second_integration):
    iid = second_integration.id
    assert api.delete(f"/integrations/{iid}").status_code == 204
    removed = api.get(f"/integrations/{iid}").json()
    assert removed["status"] == "disabled"
    assert removed["secrets"] == []
    assert_problem(api.post(f"/integrations/{iid}/sync"), 409)
    tenant = registered.biggest_ok_tenant()
    kept = api.get(f"/integrations/{iid}/tenants/{tenant['tenantId']}/devices", params={"top": 1}).json()
    assert kept["value"], "assets are kept unless purgeAssets=true"
    assert api.delete(f"/integrations/{iid}", params={"purgeAssets": "true"}).status_code == 204
    assert_problem(api.get(f"/integrations/{iid}"), 404)


async def test_no_secret_value_anywhere(stack, runtime, registered, secret_values, recorder):
    """Runs last in this module: every response, the host's log, every entity and queue message. (Run
    earlier, the `recorder` fixture still scans the responses that came after it.)"""
    secrets = secret_values | registered.secrets
    texts = recorder.seen + list(stack.logs()) + await stored_texts(runtime)
    assert leaks(texts, secrets) == []
