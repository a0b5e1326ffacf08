"""Credential checks and rotation through the local Functions host, on the simulator's edge scenario:
each AADSTS case gives its registration code (docs/api.md) and an action; a failed rotation changes nothing, a good one
replaces the secret the syncs use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .support import (
    Recorder,
    api_client,
    assert_problem,
    leaks,
    stored_texts,
    wait_for_tenant,
)

pytestmark = pytest.mark.integration
SCENARIO = "edge"

RECORDER = Recorder()
USED_SECRETS: set[str] = set()


@pytest.fixture(scope="module")
def api(stack):
    with api_client(stack, RECORDER) as client:
        yield client


@pytest.fixture(scope="module")
def sim(stack):
    with stack.sim() as client:
        yield client


def _tenant(scenario: dict[str, Any], key: str) -> dict[str, Any]:
    return next(t for t in scenario["tenants"] if t["key"] == key)


def _app(scenario: dict[str, Any], key: str) -> dict[str, Any]:
    return next(a for a in scenario["apps"] if a["key"] == key)


def _single(
    scenario: dict[str, Any], tenant_key: str, *, app_key: str = "sync-app", include_defender: bool = False
) -> dict[str, Any]:
    app = _app(scenario, app_key)
    secret = max(app["secrets"], key=lambda s: s["endDateTime"])["value"]
    USED_SECRETS.add(secret)
    return {
        "kind": "singleTenant",
        "displayName": f"test {tenant_key}",
        "tenantId": _tenant(scenario, tenant_key)["tenantId"],
        "syncAppId": app["appId"],
        "syncAppSecret": secret,
        "includeDefender": include_defender,
    }


def _rejected(api, body: dict[str, Any]) -> dict[str, Any]:
    doc = assert_problem(api.post("/integrations", json=body), 422)
    assert len(doc["errors"]) == 1
    error = doc["errors"][0]
    assert error["action"]
    return dict(error)


def test_the_scenarios_broken_registrations_are_refused_with_their_codes(api, scenario):
    for body in scenario["registrations"]:
        USED_SECRETS.update(v for k, v in body.items() if k.endswith("Secret"))
    expired, wrong = scenario["registrations"][1], scenario["registrations"][2]
    # Its expiry date is past: refused before Entra is asked (422 dateInPast); without it, Entra's answer.
    assert (_rejected(api, expired)["code"], _rejected(api, expired)["field"]) == ("dateInPast",
                                                                                  "syncAppSecretExpiresOn")
    undated = {k: v for k, v in expired.items() if not k.endswith("ExpiresOn")}
    assert _rejected(api, undated) == {
        **_rejected(api, undated),
        "code": "secretExpired",
        "field": "syncAppSecret",
    }
    assert _rejected(api, wrong)["code"] == "invalidSecret"
    assert api.get("/integrations").json()["value"] == []


@pytest.mark.parametrize(
    ("tenant_key", "code", "field"),
    [
        ("consent-missing", "consentMissing", "syncAppId"),  # AADSTS65001
        ("gdap-unauthorized", "consentMissing", "syncAppId"),  # AADSTS90099
        ("app-missing", "appNotFoundInTenant", "syncAppId"),  # AADSTS700016
        ("tenant-gone", "tenantNotFound", "tenantId"),  # AADSTS90002
        ("permission-missing", "permissionMissing", "syncAppId"),  # roles claim
    ],
)
def test_each_aadsts_case_gives_its_code_and_action(api, scenario, tenant_key, code, field):
    error = _rejected(api, _single(scenario, tenant_key))
    assert (error["code"], error["field"]) == (code, field)
    if code == "permissionMissing":
        assert "DeviceManagementManagedDevices.Read.All" in error["message"]


def test_defender_permission_is_required_when_defender_is_included(api, sim, scenario):
    tenant = _tenant(scenario, "healthy-dap")
    app_id = _app(scenario, "sync-app")["appId"]
    graph = tenant["consents"][app_id]["https://graph.microsoft.com"]
    assert (
        sim.put(
            f"/tenants/{tenant['tenantId']}/consents/{app_id}", json={"roles": {"graph": graph}}
        ).status_code
        == 200
    )
    try:
        error = _rejected(api, _single(scenario, "healthy-dap", include_defender=True))
        assert error["code"] == "permissionMissing"
        assert "Machine.Read.All" in error["message"]
    finally:
        sim.put(
            f"/tenants/{tenant['tenantId']}/consents/{app_id}", json={"roles": tenant["consents"][app_id]}
        )


def test_control_api_faults_give_their_codes(api, sim, scenario):
    tenant_id = _tenant(scenario, "healthy-gdap")["tenantId"]
    app = _app(scenario, "sync-app")
    body = _single(scenario, "healthy-gdap")

    sim.patch(f"/tenants/{tenant_id}", json={"forcedTokenError": {"code": 90002}})
    try:
        assert _rejected(api, body)["code"] == "tenantNotFound"
    finally:
        sim.patch(f"/tenants/{tenant_id}", json={"forcedTokenError": None})

    consents = _tenant(scenario, "healthy-gdap")["consents"][app["appId"]]
    assert sim.delete(f"/tenants/{tenant_id}/consents/{app['appId']}").status_code == 204
    try:
        assert _rejected(api, body)["code"] == "appNotFoundInTenant"
    finally:
        sim.put(f"/tenants/{tenant_id}/consents/{app['appId']}", json={"roles": consents})

    secret = max(app["secrets"], key=lambda s: s["endDateTime"])
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.patch(f"/apps/{app['appId']}/secrets/{secret['keyId']}", json={"endDateTime": past})
    try:
        assert _rejected(api, body)["code"] == "secretExpired"
    finally:
        sim.patch(
            f"/apps/{app['appId']}/secrets/{secret['keyId']}", json={"endDateTime": secret["endDateTime"]}
        )


def test_a_single_tenant_registration_syncs_its_tenant_then_purges(api, scenario):
    expected = _tenant(scenario, "healthy-dap")
    response = api.post("/integrations", json=_single(scenario, "healthy-dap", include_defender=True))
    assert response.status_code == 201, response.text
    integration = response.json()
    assert integration["kind"] == "singleTenant"
    assert integration["tenantId"] == expected["tenantId"]
    assert "partnerTenantId" not in integration
    assert "partnerAppId" not in integration
    assert [s["expiresOnSource"] for s in integration["secrets"]] == ["assumed"]
    tenant = wait_for_tenant(api, integration["id"], expected["tenantId"])
    assert tenant["status"] == expected["expected"]["status"]
    assert tenant["counts"]["devices"] == expected["deviceCount"]
    assert api.delete(f"/integrations/{integration['id']}", params={"purgeAssets": "true"}).status_code == 204
    assert_problem(api.get(f"/integrations/{integration['id']}"), 404)
    assert_problem(api.get(f"/integrations/{integration['id']}/tenants/{expected['tenantId']}/devices"), 404)


@pytest.fixture(scope="module")
def msp(api, scenario) -> dict[str, Any]:
    response = api.post("/integrations", json=scenario["registrations"][0])
    assert response.status_code == 201, response.text
    integration = response.json()
    healthy = _tenant(scenario, "healthy-gdap")["tenantId"]
    assert wait_for_tenant(api, integration["id"], healthy)["status"] == "ok"
    return dict(integration)


def test_a_failed_rotation_changes_nothing(api, msp):
    before = api.get(f"/integrations/{msp['id']}").json()
    wrong = "Zz18Q~thisIsNotTheSecretOfTheSyncApp0123456"
    USED_SECRETS.add(wrong)
    doc = assert_problem(api.put(f"/integrations/{msp['id']}/secrets", json={"syncAppSecret": wrong}), 422)
    assert doc["errors"][0]["code"] == "invalidSecret"
    assert api.get(f"/integrations/{msp['id']}").json() == before


def test_a_good_rotation_replaces_the_secret_the_syncs_use(api, sim, scenario, msp):
    app = _app(scenario, "sync-app")
    created = sim.post(f"/apps/{app['appId']}/secrets", json={"expiresInDays": 400}).json()
    USED_SECRETS.add(created["value"])
    response = api.put(
        f"/integrations/{msp['id']}/secrets",
        json={"syncAppSecret": created["value"], "syncAppSecretExpiresOn": created["endDateTime"]},
    )
    assert response.status_code == 200, response.text
    sync_ref = next(s for s in response.json()["secrets"] if s["appId"] == app["appId"])
    assert sync_ref["expiresOnSource"] == "given"
    assert sync_ref["expiresOn"] == created["endDateTime"]
    # The old secret stops working; a sync after the rotation still succeeds, so it uses the new one.
    for old in app["secrets"]:
        sim.delete(f"/apps/{app['appId']}/secrets/{old['keyId']}")
    healthy = _tenant(scenario, "healthy-gdap")["tenantId"]
    before = wait_for_tenant(api, msp["id"], healthy)
    assert api.post(f"/integrations/{msp['id']}/sync", json={"tenantIds": [healthy]}).status_code == 202
    after = wait_for_tenant(api, msp["id"], healthy, after=before["lastSyncFinishedAt"])
    assert after["status"] == "ok", after


def test_an_unreachable_entra_is_unreachable(api, sim, scenario):
    tenant_id = _tenant(scenario, "healthy-gdap")["tenantId"]
    added = sim.post(
        "/faults", json={"rules": [{"service": "entra", "kind": "reset", "tenantId": tenant_id}]}
    )
    assert added.status_code == 201
    try:
        error = _rejected(api, _single(scenario, "healthy-gdap"))
        assert error["code"] == "unreachable"
    finally:
        sim.delete("/faults")


async def test_no_secret_value_anywhere(stack, runtime, secret_values):
    texts = RECORDER.seen + list(stack.logs()) + await stored_texts(runtime)
    assert leaks(texts, secret_values | USED_SECRETS) == []
