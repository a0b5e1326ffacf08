"""Alerts without noise, against Azurite, the simulator (Entra, Graph, Key Vault) and the local Functions host.

- One open alert per secret through a run of marks: each check raises at most the most urgent mark reached,
  supersedes the earlier alert, and the webhook gets one message per mark (service level, a moving clock).
- `POST /api/alerts/check` runs the check now: a secret first seen with 5 days left gets one alert.
- Past `*ExpiresOn` dates are refused (422 dateInPast) at registration and rotation; a date that differs
  from Graph's is corrected to it, and a rotation reads the new secret's date from Graph at once.
- A job whose last delivery fails (the host then moves it to `memsync-sync-poison`, where it stays) raises
  `syncPoisoned` naming the integration and tenant, once until the tenant syncs again.
- Deleting an integration resolves its open alerts.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from shared.clock import ManualClock
from shared.services.expiry import check_secret_expiry
from shared.services.tenant_sync import MAX_DELIVERIES, TransientSyncError, sync_tenant
from shared.stores.alerts import AlertKind, AlertStatus
from tests.integration.expiry.support import (
    Receiver,
    app_of,
    new_sim_secret,
    secret_alerts,
    secret_ref,
    stored_integration,
    use_webhook,
)
from tests.integration.support import (
    FaultInjector,
    assert_problem,
    job,
    wait_for_tenant,
    wait_for_tenants,
)

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@pytest.fixture(scope="module")
def api(stack):
    with stack.api() as client:
        yield client


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alerts(api, **params: str) -> list[dict[str, Any]]:
    response = api.get("/alerts", params={"top": 1000, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["value"])


# --- one alert per secret ----------------------------------------------------------------------------


async def test_one_open_alert_per_secret_through_a_run_of_marks(stack, scenario, runtime, receiver: Receiver):
    use_webhook(runtime, receiver, "generic")
    # The partner app stands in: the MSP registered below holds the sync app in the partner tenant.
    app = app_of(scenario, "partner-app")
    secret = await new_sim_secret(stack, app["appId"], 40)
    integration = await stored_integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                           value=secret["value"])
    clock = ManualClock(datetime.now(UTC))
    start = clock.now()
    # Checks at 40, 29.5, 13.5, 6.5, 2.5, 0.5 and -0.5 days left (with two more at the same marks).
    walk = [(0, None), (10.5, 30), (11, 30), (26.5, 14), (33.5, 7), (37.5, 3), (37.6, 3), (39.5, 1), (40.5, 0)]
    for offset, mark in walk:
        clock.set(start + timedelta(days=offset))
        before = len(receiver.about(integration.id))
        await check_secret_expiry(runtime, clock=clock)
        alerts = await secret_alerts(runtime, integration.id)
        open_ = [a for a in alerts if a.status is AlertStatus.OPEN]
        assert [a.mark for a in open_] == ([] if mark is None else [mark]), offset
        sent = receiver.about(integration.id)[before:]
        assert len(sent) <= 1, f"several messages at once on day {offset}: {[b['mark'] for b in sent]}"

    ref = await secret_ref(runtime, integration.id)
    assert ref.expires_on_source == "graph"  # read once, from the simulator's Graph
    alerts = sorted(await secret_alerts(runtime, integration.id), key=lambda a: a.raised_at)
    assert [a.mark for a in alerts] == [30, 14, 7, 3, 1, 0]
    assert [b["mark"] for b in receiver.about(integration.id)] == [30, 14, 7, 3, 1, 0]
    for earlier, later in pairwise(alerts):
        assert earlier.status is AlertStatus.RESOLVED
        assert earlier.resolved_reason == ("superseded by the expiry (0-day mark)" if later.mark == 0
                                           else f"superseded by the {later.mark}-day mark")
    assert alerts[-1].kind is AlertKind.SECRET_EXPIRED and alerts[-1].status is AlertStatus.OPEN
    assert secret["value"] not in "".join(receiver.bodies) and secret["hint"] not in "".join(receiver.bodies)


async def test_the_check_on_demand_raises_one_alert_for_a_secret_first_seen_with_5_days_left(
    stack, scenario, runtime, api
):
    app = app_of(scenario, "partner-app")
    secret = await new_sim_secret(stack, app["appId"], 5)
    integration = await stored_integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                           value=secret["value"])

    response = api.post("/alerts/check")
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/api/alerts?status=open"
    report = response.json()
    assert set(report) == {"secretsChecked", "alertsRaised", "alertsResolved", "failures", "delivery"}
    assert report["secretsChecked"] >= 1 and report["alertsRaised"] >= 1
    assert not [f for f in report["failures"] if integration.id in f]

    (alert,) = _alerts(api, integrationId=integration.id)
    assert (alert["kind"], alert["mark"], alert["status"], alert["daysLeft"]) == ("secretExpiring", 7, "open", 5)
    assert alert["expiresOnSource"] == "graph" and alert["expiresOn"] == secret["endDateTime"]

    again = api.post("/alerts/check").json()
    assert again["alertsRaised"] == 0 or not _alerts(api, integrationId=integration.id)[1:]
    assert len(_alerts(api, integrationId=integration.id)) == 1


# --- dates at registration and rotation -----------------------------------------------------------------


def test_past_expiry_dates_are_refused_before_anything_is_tried(api, scenario):
    body = dict(scenario["registrations"][0])
    yesterday = _iso(datetime.now(UTC) - timedelta(days=1))
    doc = assert_problem(api.post("/integrations", json={**body, "syncAppSecretExpiresOn": yesterday}), 422)
    assert doc["type"] == "urn:memsync:problem:invalid-request"
    (error,) = doc["errors"]
    assert (error["field"], error["code"]) == ("syncAppSecretExpiresOn", "dateInPast")
    assert "in the past" in error["message"] and "Microsoft Graph" in error["action"]
    assert yesterday not in json.dumps(doc)
    assert [i for i in api.get("/integrations").json()["value"] if i["kind"] == "multiTenant"] == []


@pytest.fixture(scope="module")
def msp(api, scenario) -> dict[str, Any]:
    """The demo MSP, registered with a sync app date that differs from the secret's real one."""
    body = dict(scenario["registrations"][0])
    real = body["syncAppSecretExpiresOn"]
    wrong = _iso(datetime.fromisoformat(real.replace("Z", "+00:00")) + timedelta(days=30))
    response = api.post("/integrations", json={**body, "syncAppSecretExpiresOn": wrong})
    assert response.status_code == 201, response.text
    integration = dict(response.json())
    by_app = {s["appId"]: s for s in integration["secrets"]}
    assert (by_app[body["syncAppId"]]["expiresOn"], by_app[body["syncAppId"]]["expiresOnSource"]) == (real, "graph")
    # The partner app's date was right: Graph confirms it, it stays as given.
    assert by_app[body["partnerAppId"]]["expiresOn"] == body["partnerAppSecretExpiresOn"]
    assert by_app[body["partnerAppId"]]["expiresOnSource"] == "given"
    return integration


def test_a_given_date_that_differs_from_graphs_is_corrected(api, msp):
    stored = api.get(f"/integrations/{msp['id']}").json()
    assert {s["appId"]: s["expiresOnSource"] for s in stored["secrets"]} == {
        s["appId"]: s["expiresOnSource"] for s in msp["secrets"]}


def test_rotation_reads_the_new_secrets_date_from_graph_at_once(api, stack, scenario, msp):
    app = app_of(scenario, "sync-app")
    with stack.sim() as sim:
        created = sim.post(f"/apps/{app['appId']}/secrets", json={"expiresInDays": 3}).json()
    past = _iso(datetime.now(UTC) - timedelta(hours=1))
    doc = assert_problem(api.put(f"/integrations/{msp['id']}/secrets",
                                 json={"syncAppSecret": created["value"], "syncAppSecretExpiresOn": past}), 422)
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("syncAppSecretExpiresOn", "dateInPast")]

    response = api.put(f"/integrations/{msp['id']}/secrets", json={"syncAppSecret": created["value"]})
    assert response.status_code == 200, response.text
    ref = next(s for s in response.json()["secrets"] if s["appId"] == app["appId"])
    assert (ref["expiresOn"], ref["expiresOnSource"]) == (created["endDateTime"], "graph")


# --- AADSTS500011 for Defender's API --------------------------------------------------------------------

DEFENDER = "https://api.securitycenter.microsoft.com"


def _tenant_id(scenario: dict[str, Any], name: str) -> str:
    return str(next(t["tenantId"] for t in scenario["tenants"] if t["displayName"] == name))


def test_defender_not_set_up_in_a_tenant_is_named_as_such(api, stack, scenario, msp):
    """Entra answers AADSTS500011 for Defender's API in a tenant without Defender for Endpoint: the
    registration says so (422 permissionMissing), and a sync of the tenant goes on without Defender."""
    tailspin = _tenant_id(scenario, "Tailspin Toys")
    app = app_of(scenario, "sync-app")
    with stack.sim() as sim:
        forced = sim.patch(f"/tenants/{tailspin}", json={"forcedTokenError": {"code": 500011, "resource": DEFENDER}})
        assert forced.status_code == 200, forced.text
        try:
            body = {"kind": "singleTenant", "tenantId": tailspin, "syncAppId": app["appId"],
                    "syncAppSecret": scenario["registrations"][0]["syncAppSecret"], "includeDefender": True}
            doc = assert_problem(api.post("/integrations", json=body), 422)
            (error,) = doc["errors"]
            assert (error["field"], error["code"]) == ("syncAppId", "permissionMissing")
            assert error["message"] == (
                f"The Defender for Endpoint API has no service principal in tenant {tailspin} (AADSTS500011): "
                "Defender for Endpoint is not set up there (or was never onboarded), so no app can read it.")
            assert "includeDefender false" in error["action"] and "not present" not in error["message"]

            before = next(t for t in wait_for_tenants(api, msp["id"]) if t["tenantId"] == tailspin)
            assert api.post(f"/integrations/{msp['id']}/sync", json={"tenantIds": [tailspin]}).status_code == 202
            tenant = wait_for_tenant(api, msp["id"], tailspin, after=before["lastSyncFinishedAt"])
            assert tenant["status"] == "ok" and tenant["error"]["code"] == "defenderUnavailable"
            assert "Defender for Endpoint is not set up there" in tenant["error"]["message"]
        finally:
            sim.patch(f"/tenants/{tailspin}", json={"forcedTokenError": None})


# --- the poison queue ----------------------------------------------------------------------------------


async def _poison(stack, runtime, integration_id: str, tenant_id: str) -> str:
    """A sync job of the tenant failing on its first and on its last delivery, as the host would run it
    (Graph answering 503 throughout): after the last one the host moves the message to memsync-sync-poison."""
    integration = await runtime.integrations.get_integration(integration_id)
    run_id = str(uuid.uuid4())
    faults = FaultInjector(stack)
    faults.add({"service": "graph", "tenantId": tenant_id, "kind": "status", "status": 503})
    try:
        for attempt in (1, MAX_DELIVERIES):
            with pytest.raises(TransientSyncError):
                await sync_tenant(runtime, job(integration, tenant_id, run_id=run_id), attempt=attempt,
                                  budget_seconds=1.5)
    finally:
        faults.clear()
    return run_id


async def test_a_poisoned_sync_job_raises_an_alert_naming_the_integration_and_tenant(api, stack, msp, runtime):
    # Once the first syncs have finished: a sync that succeeds after the alert would (rightly) resolve it.
    tenant = next(t for t in wait_for_tenants(api, msp["id"]) if t["status"] == "ok" and not t["error"])

    def poisoned() -> list[dict[str, Any]]:
        return [a for a in _alerts(api, integrationId=msp["id"], status="open") if a["kind"] == "syncPoisoned"]

    run_id = await _poison(stack, runtime, msp["id"], tenant["tenantId"])
    (alert,) = poisoned()
    assert alert["tenantId"] == tenant["tenantId"] and alert["integrationId"] == msp["id"]
    assert tenant["tenantId"] in alert["message"] and msp["id"] in alert["message"] and run_id in alert["message"]
    assert "memsync-sync-poison" in alert["message"] and f"/integrations/{msp['id']}/sync" in alert["action"]

    # A second poisoned job of the same tenant is the same alert, not a second one.
    await _poison(stack, runtime, msp["id"], tenant["tenantId"])
    assert len(poisoned()) == 1

    # The tenant syncs again, successfully: the next check resolves the alert.
    failed = next(t for t in wait_for_tenants(api, msp["id"]) if t["tenantId"] == tenant["tenantId"])
    assert api.post(f"/integrations/{msp['id']}/sync", json={"tenantIds": [tenant["tenantId"]]}).status_code == 202
    wait_for_tenant(api, msp["id"], tenant["tenantId"], after=failed["lastSyncFinishedAt"])
    assert api.post("/alerts/check").status_code == 202
    assert poisoned() == []
    (done,) = [a for a in _alerts(api, integrationId=msp["id"], status="resolved") if a["id"] == alert["id"]]
    assert done["resolvedReason"].startswith("the tenant synced successfully on ")
    # Poisoned again after that success: a new alert.
    await _poison(stack, runtime, msp["id"], tenant["tenantId"])
    (again,) = poisoned()
    assert again["id"] != alert["id"]


# --- removal -------------------------------------------------------------------------------------------


def test_deleting_the_integration_resolves_its_open_alerts(api, msp):
    assert api.post("/alerts/check").status_code == 202  # the rotated sync secret: 3 days left
    before = _alerts(api, integrationId=msp["id"], status="open")
    assert {a["kind"] for a in before} >= {"secretExpiring", "syncPoisoned"}
    assert [a["mark"] for a in before if a["kind"] == "secretExpiring"] == [3]

    assert api.delete(f"/integrations/{msp['id']}").status_code == 204

    assert _alerts(api, integrationId=msp["id"], status="open") == []
    resolved = {a["id"]: a for a in _alerts(api, integrationId=msp["id"], status="resolved")}
    for alert in before:
        assert resolved[alert["id"]]["resolvedReason"] == "integration deleted"
        assert resolved[alert["id"]]["resolvedAt"]
    # The next check leaves them as they are.
    assert api.post("/alerts/check").status_code == 202
    assert _alerts(api, integrationId=msp["id"], status="open") == []
