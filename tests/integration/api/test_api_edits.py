"""PATCH /api/integrations/{id} through the local Functions host and Azurite: the ETag of GET, If-Match
honoured (412 for a stale one), the choices registration validates validated the same way, and what a
change does at once (a new tenant filter excludes tenants before the next discovery)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.http import CallStats
from shared.services.fanout import discover_customers, record_tenants
from tests.integration.support import store_integration

from .support import Recorder, api_client, assert_problem

pytestmark = pytest.mark.integration
SCENARIO = "demo"
RECORDER = Recorder()


@pytest.fixture(scope="module")
def api(stack):
    with api_client(stack, RECORDER) as client:
        yield client


@pytest.fixture(scope="module")
async def msp(scenario, module_runtime) -> dict[str, Any]:
    integration = await store_integration(module_runtime, scenario["registrations"][0])
    tenants = await record_tenants(module_runtime, integration,
                                   await discover_customers(module_runtime, integration, CallStats()))
    return {"id": integration.id, "tenants": [t.tenant_id for t in tenants]}


def test_a_change_with_the_current_etag_applies_and_a_stale_one_is_412(api, msp):
    url = f"/integrations/{msp['id']}"
    first = api.get(url)
    assert first.status_code == 200 and first.headers["ETag"].startswith('W/"')
    tag = first.headers["ETag"]

    renamed = api.patch(url, json={"displayName": "Contoso North"}, headers={"If-Match": tag})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["displayName"] == "Contoso North"
    assert renamed.headers["ETag"] != tag and api.get(url).headers["ETag"] == renamed.headers["ETag"]

    late = api.patch(url, json={"displayName": "Contoso South"}, headers={"If-Match": tag})
    doc = assert_problem(late, 412)
    assert doc["errors"][0]["code"] == "changedMeanwhile" and doc["errors"][0]["field"] == "If-Match"
    assert api.get(url).json()["displayName"] == "Contoso North"  # the stale change was not made


def test_collect_and_defender_choices_are_validated_as_at_registration(api, msp):
    url = f"/integrations/{msp['id']}"
    narrowed = api.patch(url, json={"collect": ["licences", "autopilotDevices"]})
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["collect"] == ["autopilotDevices", "licences"]  # in the product's order
    refused = api.patch(url, json={"includeDefender": False, "collect": ["vulnerabilities"]})
    assert assert_problem(refused, 400)["errors"][0]["field"] == "collect"
    for body, field in (({"status": "error"}, "status"), ({"syncAppId": msp["id"]}, "syncAppId"),
                        ({"collect": ["devices"]}, "collect[0]")):
        assert assert_problem(api.patch(url, json=body), 400)["errors"][0]["field"] == field
    everything = api.patch(url, json={"collect": None})
    assert everything.status_code == 200 and "vulnerabilities" in everything.json()["collect"]


def test_a_new_tenant_filter_excludes_tenants_at_once_and_disabling_stops_manual_syncs(api, msp):
    url = f"/integrations/{msp['id']}"
    left_out = msp["tenants"][0]
    changed = api.patch(url, json={"tenantFilter": {"exclude": [left_out]}})
    assert changed.status_code == 200, changed.text
    statuses = {t["tenantId"]: t["status"] for t in api.get(f"{url}/tenants", params={"top": 100}).json()["value"]}
    assert statuses[left_out] == "excluded"
    assert all(s != "excluded" for t, s in statuses.items() if t != left_out)
    back = api.patch(url, json={"tenantFilter": {"include": [], "exclude": []}})
    assert back.status_code == 200
    statuses = {t["tenantId"]: t["status"] for t in api.get(f"{url}/tenants", params={"top": 100}).json()["value"]}
    assert statuses[left_out] == "pending"

    off = api.patch(url, json={"status": "disabled"})
    assert off.status_code == 200 and off.json()["status"] == "disabled"
    assert assert_problem(api.post(f"{url}/sync"), 409)["errors"][0]["code"] == "integrationDisabled"
    on = api.patch(url, json={"status": "active"})
    assert on.status_code == 200 and on.json()["status"] == "active"
    assert assert_problem(api.patch("/integrations/00000000-0000-4000-8000-000000000000", json={}), 404)


def test_tenants_and_integrations_can_be_listed_by_name_and_by_last_sync(api, msp):
    url = f"/integrations/{msp['id']}/tenants"

    def every(params: dict) -> list[dict]:
        out, answer = [], api.get(url, params={"top": 2, **params})
        while True:
            assert answer.status_code == 200, answer.text
            out += answer.json()["value"]
            if "nextLink" not in answer.json():
                return out
            answer = api.get(answer.json()["nextLink"].removeprefix("/api"))

    by_id = every({})
    assert [t["tenantId"] for t in by_id] == sorted(t["tenantId"] for t in by_id) and len(by_id) > 2
    by_name = every({"orderBy": "displayName"})
    names = [(t["displayName"] or "").casefold() for t in by_name]
    named = [n for n in names if n]
    assert named == sorted(named) and names[:len(named)] == named  # A to Z, the unnamed last
    assert {t["tenantId"] for t in by_name} == {t["tenantId"] for t in by_id}
    by_sync = every({"orderBy": "lastSync"})
    finished = [t["lastSyncFinishedAt"] or "" for t in by_sync]
    assert finished == sorted(finished) and len(by_sync) == len(by_id)  # never synced first
    assert assert_problem(api.get(url, params={"orderBy": "size"}), 400)["errors"][0]["field"] == "orderBy"
    # A continuation belongs to its order: one issued for names is refused for ids.
    token = api.get(url, params={"top": 1, "orderBy": "displayName"}).json()["nextLink"].split("continuation=")[1]
    assert api.get(url, params={"top": 1, "continuation": token.split("&")[0]}).status_code == 400

    integrations = api.get("/integrations", params={"orderBy": "displayName", "top": 100})
    assert integrations.status_code == 200
    shown = [i["displayName"].casefold() for i in integrations.json()["value"]]
    assert shown == sorted(shown)
