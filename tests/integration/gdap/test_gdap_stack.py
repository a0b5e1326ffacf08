"""GDAP-era access through the local Functions host, on the simulator's `gdap` scenario: each customer's
verdict and action, relationship-expiry alerts, the partner admin's device-code sign-in, consent through
Partner Center (one consent call per customer), a refused consent, and a lapsed sign-in.

The module's one integration goes through these steps in a fixed order, each a module fixture that
needs the one before it and keeps what its test checks: registered (and first synced), a consent asked
before any sign-in, the sign-in, a refused consent, the consents of every customer. The lapsed sign-in
comes last, so whatever order the tests run in, each step finds the state it expects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.support import (
    Recorder,
    api_client,
    assert_problem,
    last_seq,
    leaks,
    requests_since,
    sim_call,
    wait_for_tenant,
    wait_for_tenants,
)

pytestmark = pytest.mark.integration
SCENARIO = "gdap"
# Until function_app.py registers functions.gdap.bp, the host runs a script that adds it.

EXPECTED = {
    "both-ok": "ok",
    "gdap-expiring": "ok",
    "no-intune": "intuneNotLicensed",
    "permission-missing": "permissionMissing",
    "dap-only": "consentMissing",
    "gdap-only": "consentMissing",
    "gdap-readonly": "consentMissing",
    "indirect": "unsupportedRelationship",
    "reseller-only": "noRelationship",
    "gdap-lapsed": "noRelationship",
}


@pytest.fixture(scope="module")
def recorder(secret_values) -> Iterator[Recorder]:
    """Every response the module's API client received. `test_nothing_secret_in_any_response` scans what
    came before it; this scans all of them once the module is done, whatever order its tests ran in."""
    seen = Recorder()
    yield seen
    found = leaks(seen.seen, secret_values)
    if found:
        pytest.fail(f"secret values in the API's responses: {found}", pytrace=False)


@pytest.fixture(scope="module")
def api(stack, recorder):
    with api_client(stack, recorder) as client:
        yield client


@pytest.fixture(scope="module")
def ids(scenario) -> dict[str, str]:
    return {t["key"]: t["tenantId"] for t in scenario["tenants"]}


def _tenants(api, integration_id: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"/integrations/{integration_id}/tenants", params={"top": 1000})
    assert response.status_code == 200, response.text
    return {t["tenantId"]: t for t in response.json()["value"]}


@dataclass(frozen=True)
class Registered:
    id: str
    partner_app_id: str
    tenants: dict[str, dict[str, Any]]  # by tenant id, once every tenant's first sync had settled


@pytest.fixture(scope="module")
def registered(api, scenario) -> Registered:
    response = api.post("/integrations", json=scenario["registrations"][0])
    assert response.status_code == 201, response.text
    integration = response.json()
    wait_for_tenants(api, integration["id"])
    return Registered(id=integration["id"], partner_app_id=integration["partnerAppId"],
                      tenants=_tenants(api, integration["id"]))


@dataclass(frozen=True)
class BeforeSignin:
    consent: httpx.Response  # a customer's consent asked before any partner admin signed in
    signin: dict[str, Any]  # GET .../partner-signin right after


@pytest.fixture(scope="module")
def before_signin(api, registered, ids) -> BeforeSignin:
    consent = api.post(f"/integrations/{registered.id}/tenants/{ids['dap-only']}/consent")
    return BeforeSignin(consent=consent, signin=api.get(f"/integrations/{registered.id}/partner-signin").json())


@dataclass(frozen=True)
class SignedIn:
    started: httpx.Response  # POST .../partner-signin
    polled: dict[str, Any]  # the first GET .../partner-signin that was no longer pending (or the last one)
    integration: dict[str, Any]  # GET .../integrations/{id} right after


@pytest.fixture(scope="module")
def signed_in(api, registered, before_signin) -> SignedIn:
    started = api.post(f"/integrations/{registered.id}/partner-signin")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        polled = api.get(f"/integrations/{registered.id}/partner-signin").json()
        if polled["status"] != "pending":
            break
        time.sleep(0.5)
    return SignedIn(started=started, polled=polled, integration=api.get(f"/integrations/{registered.id}").json())


@dataclass(frozen=True)
class RefusedConsent:
    response: httpx.Response  # dap-only's consent while Partner Center answered 403
    tenant: dict[str, Any]  # dap-only right after


@pytest.fixture(scope="module")
def refused_consent(api, registered, ids, stack, signed_in) -> RefusedConsent:
    tid = ids["dap-only"]
    sim_call(stack, "POST", "/faults", json={"rules": [
        {"service": "partnercenter", "pathContains": "applicationconsents", "kind": "status", "status": 403}]})
    try:
        response = api.post(f"/integrations/{registered.id}/tenants/{tid}/consent")
    finally:
        sim_call(stack, "DELETE", "/faults")
    return RefusedConsent(response=response, tenant=_tenants(api, registered.id)[tid])


def _pc_consents(stack, since: int) -> list[dict[str, Any]]:
    return [r for r in requests_since(stack, since)
            if r["service"] == "partnercenter" and "applicationconsents" in r["path"]]


@dataclass(frozen=True)
class Consented:
    response: httpx.Response  # POST .../consent: every customer that needs it
    calls: list[dict[str, Any]]  # the Partner Center consent requests it made


@pytest.fixture(scope="module")
def consented(api, registered, stack, refused_consent) -> Consented:
    since = last_seq(stack)
    response = api.post(f"/integrations/{registered.id}/consent")
    return Consented(response=response, calls=_pc_consents(stack, since))


def test_each_customer_gets_its_verdict_and_action(registered, ids):
    tenants = registered.tenants
    for key, verdict in EXPECTED.items():
        access = tenants[ids[key]]["access"]
        assert access is not None, key
        assert access["verdict"] == verdict, (key, access)
        assert (access["action"] is None) == (verdict == "ok"), (key, access)
    both = tenants[ids["both-ok"]]["access"]
    assert both["relationship"]["partnerCenter"] == "reseller"
    assert both["relationship"]["dap"] is True
    assert both["relationship"]["gdap"][0]["roles"] == ["Intune Administrator", "Cloud Application Administrator"]
    assert both["token"]["ok"] is True and both["intune"] == "ok" and both["defender"] == "ok"
    assert tenants[ids["dap-only"]]["access"]["relationship"]["gdap"] == []
    assert tenants[ids["dap-only"]]["access"]["token"] == {**tenants[ids["dap-only"]]["access"]["token"],
                                                          "ok": False, "error": "appNotFoundInTenant"}
    readonly = tenants[ids["gdap-readonly"]]["access"]["action"]
    assert "Cloud Application Administrator" in readonly
    assert "partner-signin" in tenants[ids["gdap-only"]]["access"]["action"]
    assert tenants[ids["indirect"]]["access"]["relationship"]["partnerCenter"] == "advisor"
    lapsed = tenants[ids["gdap-lapsed"]]["access"]["relationship"]["gdap"][0]
    assert lapsed["status"] == "expired"
    assert tenants[ids["no-intune"]]["access"]["intune"] == "notLicensed"


def test_relationships_ending_soon_or_ended_raise_alerts_once(api, registered, ids):
    alerts = [a for a in api.get("/alerts", params={"top": 1000}).json()["value"]
              if a["integrationId"] == registered.id and a["kind"].startswith("relationship")]
    kinds = sorted(a["kind"] for a in alerts)
    assert kinds == ["relationshipExpired", "relationshipExpiring"], alerts
    expiring = next(a for a in alerts if a["kind"] == "relationshipExpiring")
    assert "Bellows College" in expiring["message"] and expiring["expiresOn"]
    assert expiring["daysLeft"] in (9, 10)
    expired = next(a for a in alerts if a["kind"] == "relationshipExpired")
    assert "School of Fine Art" in expired["message"]
    # Another fan-out raises nothing new.
    assert api.post(f"/integrations/{registered.id}/sync").status_code == 202
    wait_for_tenants(api, registered.id)
    again = [a for a in api.get("/alerts", params={"top": 1000}).json()["value"]
             if a["integrationId"] == registered.id and a["kind"].startswith("relationship")]
    assert len(again) == 2


def test_consent_before_sign_in_is_a_conflict(before_signin):
    doc = assert_problem(before_signin.consent, 409)
    assert doc["errors"][0]["code"] == "signInRequired"
    assert "partner-signin" in doc["errors"][0]["action"]
    assert before_signin.signin["status"] == "notStarted"


def test_partner_admin_signs_in_with_a_device_code(registered, signed_in, stack):
    started = signed_in.started
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["status"] == "pending" and body["userCode"] and body["verificationUri"]
    assert "deviceCode" not in str(body)
    polled = signed_in.polled
    assert polled["status"] == "done", polled
    assert polled["signedInAs"].startswith("admin@") and polled["refreshExpiresOn"]
    assert "userCode" not in polled
    integration = signed_in.integration
    assert any(s["name"].endswith("-partnerSignin") for s in integration["secrets"])
    # Polls honoured the interval: a handful of token requests, not one per GET.
    grants = [r for r in requests_since(stack, 0) if r["route"] == "entra.token"
              and r["appId"] == registered.partner_app_id and r["status"] in (200, 400)]
    assert grants


def test_a_refused_consent_leaves_the_verdict_and_names_the_cause(refused_consent):
    doc = assert_problem(refused_consent.response, 422)
    assert doc["errors"][0]["code"] == "partnerCenterForbidden"
    assert "GDAP" in doc["errors"][0]["action"]
    tenant = refused_consent.tenant
    assert tenant["access"]["verdict"] == "consentMissing"
    assert tenant["access"]["consent"]["status"] == "failed"
    assert tenant["access"]["consent"]["error"]["code"] == "partnerCenterForbidden"
    assert tenant["status"] == "error" and tenant["error"]["code"] == "appNotFoundInTenant"


def test_consent_for_every_customer_that_needs_it_then_they_sync(api, registered, ids, consented):
    response = consented.response
    assert response.status_code == 200, response.text
    results = {r["tenantId"]: r for r in response.json()["value"]}
    assert set(results) == {ids[k] for k in ("dap-only", "gdap-only", "gdap-readonly", "permission-missing")}
    assert results[ids["dap-only"]]["status"] == "consented"
    assert results[ids["gdap-only"]]["status"] == "consented"
    assert results[ids["permission-missing"]]["status"] == "reconsented"
    assert results[ids["gdap-readonly"]]["status"] == "failed"
    assert results[ids["gdap-readonly"]]["error"]["code"] == "partnerCenterForbidden"
    calls = consented.calls
    for key in ("dap-only", "gdap-only", "gdap-readonly"):
        mine = [c for c in calls if ids[key] in c["path"]]
        assert [(c["method"], c["status"]) for c in mine] == [
            ("POST", 403 if key == "gdap-readonly" else 201)], (key, mine)
    for key in ("dap-only", "gdap-only", "permission-missing"):
        tenant = wait_for_tenant(api, registered.id, ids[key])
        deadline = time.monotonic() + 60
        while tenant["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.5)
            tenant = _tenants(api, registered.id)[ids[key]]
        assert tenant["status"] == "ok", (key, tenant)
        assert tenant["counts"]["devices"] == 5
        assert tenant["access"]["verdict"] == "ok"
        assert tenant["access"]["consent"]["status"] == "granted"


# The last step: every step that needs a live sign-in has run before the refresh tokens are revoked.
@pytest.mark.usefixtures("consented")
def test_a_lapsed_sign_in_is_reported_and_changes_nothing_else(api, registered, ids, stack):
    before = _tenants(api, registered.id)[ids["gdap-readonly"]]
    sim_call(stack, "DELETE", "/refreshtokens")
    since = last_seq(stack)
    doc = assert_problem(api.post(f"/integrations/{registered.id}/tenants/{ids['gdap-readonly']}/consent"), 409)
    assert doc["errors"][0]["code"] == "signInExpired"
    assert "AADSTS70008" in doc["errors"][0]["message"]
    assert _pc_consents(stack, since) == []
    signin = api.get(f"/integrations/{registered.id}/partner-signin").json()
    assert signin["status"] == "expired" and signin["error"]["code"] == "signInExpired"
    after = _tenants(api, registered.id)[ids["gdap-readonly"]]
    assert after["access"]["verdict"] == before["access"]["verdict"]
    assert after["status"] == before["status"]
    assert api.get(f"/integrations/{registered.id}").json()["status"] == "active"


def test_nothing_secret_in_any_response(recorder, secret_values):
    assert leaks(recorder.seen, secret_values) == []
