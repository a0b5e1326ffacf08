"""Racing registrations through the local Functions host, Azurite and the simulator (demo MSP): twenty
identical POST /api/integrations at once store one integration, write its secrets once and answer the
others 409 naming it; a single tenant the MSP already syncs with its sync app is refused; removal lets the
apps be registered again."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from shared.stores.integrations import claim_key
from tests.integration.support import last_seq, requests_since

from .support import Recorder, api_client, assert_problem, leaks, stored_texts

pytestmark = pytest.mark.integration
SCENARIO = "demo"

RACERS = 20
RECORDER = Recorder()
STATE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def api(stack):
    with api_client(stack, RECORDER) as client:
        yield client


async def _post_all(stack, body: dict[str, Any], count: int) -> list[httpx.Response]:
    """`count` identical registrations, all sent before any is answered."""
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"x-functions-key": stack.function_key}, timeout=180,
        limits=httpx.Limits(max_connections=count),
    ) as client:
        responses = await asyncio.gather(*(client.post("/integrations", json=body) for _ in range(count)))
    for response in responses:
        RECORDER.seen.append(f"POST /api/integrations {response.status_code}")
        RECORDER.seen.extend(f"{k}: {v}" for k, v in response.headers.items())
        RECORDER.seen.append(response.text)
    return list(responses)


async def test_twenty_concurrent_identical_registrations_give_one_integration(stack, api, scenario, runtime):
    body = scenario["registrations"][0]
    seq = last_seq(stack)
    responses = await _post_all(stack, body, RACERS)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [(r.status_code, r.text[:300]) for r in responses]
    [created] = [r.json() for r in responses if r.status_code == 201]
    STATE["integration"] = created
    for response in responses:
        if response.status_code == 409:
            doc = assert_problem(response, 409)
            assert (doc["type"], doc["title"]) == ("urn:memsync:problem:conflict", "Conflict")
            [error] = doc["errors"]
            assert (error["field"], error["code"]) == ("syncAppId", "alreadyRegistered")
            assert created["id"] in error["message"]
            assert f"GET /api/integrations/{created['id']}" in error["action"]

    listed = api.get("/integrations").json()["value"]
    assert [i["id"] for i in listed] == [created["id"]]
    claim = await runtime.integrations.get_claim(body["partnerTenantId"], body["syncAppId"])
    assert claim is not None and claim.integration_id == created["id"]

    # Key Vault: the winner's two secrets, each set once; nothing for the nineteen others.
    sets = [e["path"] for e in requests_since(stack, seq)
            if e["service"] == "vault" and e["method"] == "PUT" and e["status"] == 200]
    assert sorted(p.rsplit("/", 1)[-1] for p in sets) == [
        f"memsync-{created['id']}-partner", f"memsync-{created['id']}-sync"
    ], sets


def test_the_same_apps_again_name_the_stored_integration(api, scenario):
    doc = assert_problem(api.post("/integrations", json=scenario["registrations"][0]), 409)
    assert STATE["integration"]["id"] in doc["errors"][0]["message"]
    assert "already registered" in doc["errors"][0]["message"]


def test_a_customer_the_msp_syncs_cannot_be_registered_alone_with_its_sync_app(api, scenario):
    msp = STATE["integration"]
    body = scenario["registrations"][0]
    listed = api.get(f"/integrations/{msp['id']}/tenants", params={"top": 1000})
    assert listed.status_code == 200, listed.text
    known = {t["tenantId"] for t in listed.json()["value"] if t["status"] != "excluded"}
    customer = next(t for t in scenario["tenants"]
                    if t["tenantId"] in known and t["expected"]["status"] == "ok")
    single = {"kind": "singleTenant", "tenantId": customer["tenantId"], "syncAppId": body["syncAppId"],
              "syncAppSecret": body["syncAppSecret"], "includeDefender": False}
    doc = assert_problem(api.post("/integrations", json=single), 409)
    [error] = doc["errors"]
    assert (error["field"], error["code"]) == ("tenantId", "alreadyRegistered")
    assert msp["id"] in error["message"]
    assert [i["id"] for i in api.get("/integrations").json()["value"]] == [msp["id"]]


async def test_removal_releases_the_apps_for_a_new_registration(stack, api, scenario, runtime):
    body = scenario["registrations"][0]
    first = STATE["integration"]
    assert api.delete(f"/integrations/{first['id']}", params={"purgeAssets": "true"}).status_code == 204
    assert await runtime.integrations.get_claim(body["partnerTenantId"], body["syncAppId"]) is None
    responses = await _post_all(stack, body, 5)
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [r.text[:300] for r in responses]
    [again] = [r.json() for r in responses if r.status_code == 201]
    assert again["id"] != first["id"]
    rows = [e async for e in runtime.tables.client("memsyncIntegrations").query_entities("PartitionKey eq 'claim'")]
    assert [(r["RowKey"], r["integrationId"]) for r in rows] == [
        (claim_key(body["partnerTenantId"], body["syncAppId"]), again["id"])
    ]


async def test_no_secret_value_anywhere(stack, runtime, secret_values):
    texts = RECORDER.seen + list(stack.logs()) + await stored_texts(runtime)
    assert leaks(texts, secret_values) == []
