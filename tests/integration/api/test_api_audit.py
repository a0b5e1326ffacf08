"""The audit trail through the local Functions host and Azurite: each change asked of the API is recorded,
made or refused, with who, what (field names only), where from and the outcome; GET /api/audit filters
by integration and time and exports CSV; the records outlive a purged integration."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

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


def _trail(api, **params) -> list[dict]:
    answer = api.get("/audit", params={"top": 100, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["value"]


async def test_changes_made_and_refused_are_recorded_with_names_never_values(api, scenario, module_runtime):
    started = datetime.now(UTC) - timedelta(seconds=1)
    integration = await store_integration(module_runtime, scenario["registrations"][0])
    await record_tenants(module_runtime, integration, await discover_customers(module_runtime, integration,
                                                                                CallStats()))
    url = f"/integrations/{integration.id}"
    secret = scenario["registrations"][0]["syncAppSecret"]
    assert api.patch(url, json={"displayName": "Audited MSP"}).status_code == 200
    assert api.patch(url, json={"displayName": "x"}, headers={"If-Match": 'W/"stale"'}).status_code == 412
    refused = api.put(f"{url}/secrets", json={"syncAppSecret": "not-the-secret-" + "x" * 20})
    assert refused.status_code == 422
    assert api.delete(url, params={"purgeAssets": "true"}).status_code == 204

    trail = _trail(api, integrationId=integration.id, since=started.isoformat())
    assert [(e["action"], e["outcome"], e["status"]) for e in trail] == [
        ("integration.delete", "done", 204), ("integration.rotateSecrets", "refused", 422),
        ("integration.change", "refused", 412), ("integration.change", "done", 200)]
    delete, rotate, stale, change = trail
    assert change["fields"] == ["displayName"] and rotate["fields"] == ["syncAppSecret"]
    assert delete["fields"] == ["purgeAssets"] and stale["code"] == "changedMeanwhile"
    assert all(e["actor"] == {"kind": "functionKey", "name": "function key", "id": None} for e in trail)
    assert all(e["address"] == "127.0.0.1" for e in trail)  # appended by the host, as the platform does
    assert all(e["route"].startswith(f"/api/integrations/{integration.id}") and "code=" not in e["route"]
               for e in trail)
    text = api.get("/audit", params={"integrationId": integration.id, "format": "csv"}).content.decode("utf-8-sig")
    assert secret not in text and "not-the-secret" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == [e["action"] for e in trail] and rows[0]["actor.kind"] == "functionKey"
    # The integration is gone (purged); its records are not.
    assert api.get(url).status_code == 404 and len(_trail(api, integrationId=integration.id)) == 4


def test_the_trail_pages_and_refuses_what_it_cannot_use(api):
    first = api.get("/audit", params={"top": 1})
    assert first.status_code == 200 and len(first.json()["value"]) == 1  # the test above wrote four
    second = api.get(first.json()["nextLink"].removeprefix("/api"))
    assert second.status_code == 200 and second.json()["value"][0]["id"] != first.json()["value"][0]["id"]
    for params, field in (({"since": "yesterday"}, "since"), ({"integrationId": "x"}, "integrationId"),
                          ({"who": "me"}, "who"), ({"until": "2026-11-01T00:00:00"}, "until")):
        assert assert_problem(api.get("/audit", params=params), 400)["errors"][0]["field"] == field
