"""The API through the local Functions host, on the simulator's demo MSP: register, watch the tenants
sync, page and export assets, rotate a secret, delete; then scan everything for the secrets used."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from .support import Recorder, api_client, assert_problem, leaks, stored_texts, wait_for_tenants

pytestmark = pytest.mark.integration
SCENARIO = "demo"

RECORDER = Recorder()
STATE: dict[str, Any] = {}
USED_SECRETS: set[str] = set()


@pytest.fixture(scope="module")
def api(stack):
    with api_client(stack, RECORDER) as client:
        yield client


@pytest.fixture(scope="module")
def registered(api, scenario) -> dict[str, Any]:
    body = scenario["registrations"][0]
    USED_SECRETS.update({body["partnerAppSecret"], body["syncAppSecret"]})
    response = api.post("/integrations", json=body)
    assert response.status_code == 201, response.text
    integration = response.json()
    assert response.headers["location"] == f"/api/integrations/{integration['id']}"
    STATE["tenants"] = wait_for_tenants(api, integration["id"])
    return dict(integration)


def test_registration_shapes_the_integration_without_secret_values(registered, scenario):
    body = scenario["registrations"][0]
    assert registered["kind"] == "multiTenant"
    assert registered["status"] == "active"
    assert registered["partnerTenantId"] == body["partnerTenantId"]
    assert "tenantId" not in registered
    assert registered["error"] is None
    assert {s["appId"] for s in registered["secrets"]} == {body["partnerAppId"], body["syncAppId"]}
    for ref in registered["secrets"]:
        assert set(ref) == {"name", "appId", "expiresOn", "expiresOnSource"}
        assert ref["expiresOnSource"] == "given"


def test_every_tenant_settles_as_the_simulator_expects(registered, scenario):
    expected = {t["tenantId"]: t for t in scenario["tenants"]}
    tenants = {t["tenantId"]: t for t in STATE["tenants"]}
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
    assert api.get(f"/integrations/{registered['id']}").json()["id"] == registered["id"]
    listed = api.get("/integrations").json()
    assert registered["id"] in {i["id"] for i in listed["value"]}
    assert "nextLink" not in listed


def test_the_same_apps_twice_is_a_409_naming_the_first(api, registered, scenario):
    doc = assert_problem(api.post("/integrations", json=scenario["registrations"][0]), 409)
    assert registered["id"] in doc["errors"][0]["message"]


def _biggest_ok_tenant() -> dict[str, Any]:
    return max((t for t in STATE["tenants"] if t["status"] == "ok"), key=lambda t: t["counts"]["devices"])


def test_devices_page_across_several_pages_with_next_link(api, registered):
    tenant = _biggest_ok_tenant()
    url = f"/integrations/{registered['id']}/tenants/{tenant['tenantId']}/devices"
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
    tenant = _biggest_ok_tenant()
    url = f"/integrations/{registered['id']}/tenants/{tenant['tenantId']}/devices"
    next_link = api.get(url, params={"top": 5}).json()["nextLink"]
    token = next_link.split("continuation=")[1].split("&")[0]
    doc = assert_problem(
        api.get(url, params={"top": 5, "complianceState": "compliant", "continuation": token}), 400
    )
    assert doc["errors"][0]["field"] == "continuation"


def test_csv_export_holds_every_device_and_every_title(api, registered):
    tenant = _biggest_ok_tenant()
    base = f"/integrations/{registered['id']}/tenants/{tenant['tenantId']}"
    response = api.get(f"{base}/devices", headers={"Accept": "text/csv"}, params={"top": 5})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == tenant["counts"]["devices"]
    assert {"id", "deviceName", "defender.healthStatus", "removedAt"} <= set(rows[0])
    software = list(csv.DictReader(io.StringIO(api.get(f"{base}/software", params={"format": "csv"}).text)))
    assert len(software) == tenant["counts"]["software"]


def test_software_search_and_filters(api, registered):
    tenant = _biggest_ok_tenant()
    base = f"/integrations/{registered['id']}/tenants/{tenant['tenantId']}"
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
    assert_problem(api.get(f"/integrations/{registered['id']}/tenants/{unknown}/devices"), 404)
    assert_problem(api.get("/integrations/..%2F..%2Fetc/tenants"), 400)
    assert_problem(api.post(f"/integrations/{registered['id']}/sync", json={"tenantIds": [unknown]}), 404)


def test_manual_sync_of_one_tenant_is_accepted(api, registered):
    tenant = _biggest_ok_tenant()
    response = api.post(f"/integrations/{registered['id']}/sync", json={"tenantIds": [tenant["tenantId"]]})
    assert response.status_code == 202, response.text
    assert response.json() == {"integrationId": registered["id"], "trigger": "manual", "queued": 1}


def test_openapi_is_anonymous(stack):
    import httpx

    response = httpx.get(f"{stack.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")
    assert httpx.get(f"{stack.base_url}/integrations", timeout=30).status_code == 401


def test_delete_stops_syncs_and_removes_the_vault_secrets(api, registered):
    iid = registered["id"]
    assert api.delete(f"/integrations/{iid}").status_code == 204
    removed = api.get(f"/integrations/{iid}").json()
    assert removed["status"] == "disabled"
    assert removed["secrets"] == []
    assert_problem(api.post(f"/integrations/{iid}/sync"), 409)
    tenant = _biggest_ok_tenant()
    kept = api.get(f"/integrations/{iid}/tenants/{tenant['tenantId']}/devices", params={"top": 1}).json()
    assert kept["value"], "assets are kept unless purgeAssets=true"
    assert api.delete(f"/integrations/{iid}", params={"purgeAssets": "true"}).status_code == 204
    assert_problem(api.get(f"/integrations/{iid}"), 404)


async def test_no_secret_value_anywhere(stack, runtime, registered, secret_values):
    """Runs last in this module: every response, the host's log, every entity and queue message."""
    secrets = secret_values | USED_SECRETS
    texts = RECORDER.seen + list(stack.logs()) + await stored_texts(runtime)
    assert leaks(texts, secrets) == []
