"""Answers that must be 4xx or 503, never 500, through the local Functions host on the simulator's edge
scenario: a lone surrogate in a body, Key Vault failing during a registration, a rotation racing the
integration's removal (Key Vault's 409 for a soft-deleted name), forged and foreign continuation tokens.
The module ends with a scan of everything it produced for the secrets it used and the continuation key."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from shared.clients.keyvault import CONTINUATION_KEY_NAME

from .support import Recorder, api_client, assert_problem, leaks, stored_texts

pytestmark = pytest.mark.integration
SCENARIO = "edge"

RECORDER = Recorder()
USED_SECRETS: set[str] = set()
STATE: dict[str, Any] = {}


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


def _single(scenario: dict[str, Any], tenant_key: str = "healthy-dap") -> dict[str, Any]:
    app = next(a for a in scenario["apps"] if a["key"] == "sync-app")
    secret = max(app["secrets"], key=lambda s: s["endDateTime"])["value"]
    USED_SECRETS.add(secret)
    return {
        "kind": "singleTenant",
        "displayName": f"refusals {tenant_key}",
        "tenantId": _tenant(scenario, tenant_key)["tenantId"],
        "syncAppId": app["appId"],
        "syncAppSecret": secret,
        "includeDefender": False,
    }


def _vault_statuses(sim: httpx.Client, since: int) -> list[tuple[str, int]]:
    entries = sim.get("/requests", params={"service": "vault", "since": str(since)}).json()["value"]
    return [(e["method"], e["status"]) for e in entries]


def _last_seq(sim: httpx.Client) -> int:
    return int(sim.get("/requests", params={"since": "999999999"}).json()["lastSeq"])


def _raw_post(api: httpx.Client, path: str, body: bytes, method: str = "POST") -> httpx.Response:
    return api.request(method, path, content=body, headers={"Content-Type": "application/json"})


# --- a lone surrogate ----------------------------------------------------------------------------------


def test_a_lone_surrogate_in_a_registration_is_a_400_naming_the_field(api, scenario):
    body = json.dumps(_single(scenario))  # ASCII: every non-ASCII character is a \u escape
    for field, value in (("displayName", "\\ud800"), ("displayName", "A\\udfffB"), ("syncAppSecret", "\\udbff")):
        raw = body.replace(f'"{field}": "', f'"{field}": "{value}', 1).encode()
        doc = assert_problem(_raw_post(api, "/integrations", raw), 400)
        assert [(e["field"], e["code"]) for e in doc["errors"]] == [(field, "invalidCharacters")]
        assert doc["errors"][0]["action"]
    listed = api.get("/integrations").json()["value"]
    assert not [i for i in listed if i["displayName"].startswith("refusals")]


def test_a_lone_surrogate_in_other_bodies_is_a_400_too(api):
    unknown = "00000000-0000-4000-8000-000000000000"
    doc = assert_problem(_raw_post(api, f"/integrations/{unknown}/secrets", b'{"syncAppSecret": "\\ud800"}',
                                   "PUT"), 400)
    assert [e["field"] for e in doc["errors"]] == ["syncAppSecret"]
    doc = assert_problem(_raw_post(api, f"/integrations/{unknown}/sync", b'{"tenantIds": ["\\udc00"]}'), 400)
    assert [e["field"] for e in doc["errors"]] == ["tenantIds[0]"]


# --- Key Vault failing during a registration ------------------------------------------------------------


def test_key_vault_answering_500_during_registration_is_a_503_and_nothing_is_stored(api, sim, scenario):
    body = _single(scenario)
    since = _last_seq(sim)
    assert sim.post("/faults", json={"rules": [{"service": "vault", "kind": "status", "status": 500}]}).is_success
    try:
        response = api.post("/integrations", json=body)
    finally:
        assert sim.delete("/faults").is_success
    doc = assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert doc["errors"][0]["code"] == "unreachable"
    assert "Key Vault" in doc["errors"][0]["message"] and doc["errors"][0]["action"]
    vault = _vault_statuses(sim, since)
    # Besides the SDK's unauthenticated first request (401, the challenge), every call failed: nothing was
    # stored in the vault, and the undo's deletes failed too (the names were never referenced).
    assert {status for _, status in vault} <= {401, 500}
    assert ("PUT", 500) in vault
    assert not [i for i in api.get("/integrations").json()["value"] if i.get("tenantId") == body["tenantId"]]
    # The vault is back: the same registration goes through at once, as if the first had not been sent.
    retried = api.post("/integrations", json=body)
    assert retried.status_code == 201, retried.text
    STATE["first"] = retried.json()
    live = [i for i in api.get("/integrations").json()["value"] if i.get("tenantId") == body["tenantId"]]
    assert [i["id"] for i in live] == [STATE["first"]["id"]]


# --- continuation tokens --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_continuation_tokens_are_signed_bound_and_refused_when_forged(api, scenario):
    assert "first" in STATE
    tenant_id = _tenant(scenario, "healthy-dap")["tenantId"]
    base = f"/integrations/{STATE['first']['id']}/tenants/{tenant_id}/devices"
    deadline = time.monotonic() + 120
    while True:  # the first sync stores the tenant's devices
        page = api.get(base, params={"top": 2})
        if page.status_code == 200 and "nextLink" in page.json():
            break
        assert time.monotonic() < deadline, page.text
        time.sleep(0.5)
    token = dict(parse_qsl(urlsplit(page.json()["nextLink"]).query))["continuation"]
    payload, mac = token.split(".")
    STATE["token"] = token
    # Followed as returned, it pages on.
    assert api.get(page.json()["nextLink"]).status_code == 200
    refused = [
        (base, {"continuation": token, "complianceState": "compliant"}),  # other filters
        (base.replace("/devices", "/software"), {"continuation": token}),  # another route
        (base.replace(tenant_id, "00000000-0000-4000-8000-000000000001"), {"continuation": token}),  # tenant
        (base, {"continuation": f"{payload}.{_b64(bytes(32))}"}),  # a made-up MAC
    ]
    position = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for forged in (5, {"PartitionKey": 1}, ["a", 2], None):
        text = _b64(json.dumps({**position, "p": forged}).encode())
        refused.append((base, {"continuation": f"{text}.{mac}"}))
    refused += [(base, {"continuation": "not-a-token"}), (base, {"continuation": _b64(b"\xff" * 40)})]
    refused.append(("/integrations", {"continuation": token}))
    refused.append(("/alerts", {"continuation": token}))
    for path, params in refused:
        doc = assert_problem(api.get(path, params=params), 400)
        assert [(e["field"], e["code"]) for e in doc["errors"]] == [("continuation", "invalidContinuation")], path


async def test_the_continuation_key_is_one_vault_secret_the_token_names(runtime):
    key = await runtime.continuation_keys.current()
    payload = STATE["token"].split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(payload + "=="))["k"] == key.version
    USED_SECRETS.add(key.material.decode())
    stored = await runtime.secrets.get_properties(CONTINUATION_KEY_NAME)
    assert stored is not None and stored.version == key.version
    # Not an integration secret: the expiry check does not see it.
    assert CONTINUATION_KEY_NAME not in {s.name for s in await runtime.secrets.list_memsync_secrets()}


# --- a rotation racing the removal ----------------------------------------------------------------------


def _rotate_while_removing(api: httpx.Client, sim: httpx.Client, scenario: dict[str, Any], integration_id: str,
                           delete_params: dict[str, str]) -> tuple[httpx.Response, int]:
    """PUT .../secrets held 4 s at its first vault call (its credential check done, the integration found
    active), while DELETE runs to the end meanwhile."""
    rule = {"service": "vault", "pathContains": f"memsync-{integration_id}-sync", "kind": "latency",
            "latencyMs": 4000, "count": 1}
    (rule_id,) = [r["id"] for r in sim.post("/faults", json={"rules": [rule]}).json()["rules"]]
    since = _last_seq(sim)
    results: dict[str, httpx.Response] = {}

    def rotate() -> None:
        results["put"] = api.put(f"/integrations/{integration_id}/secrets",
                                 json={"syncAppSecret": _single(scenario)["syncAppSecret"]})

    thread = threading.Thread(target=rotate)
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while not next(r for r in sim.get("/faults").json()["rules"] if r["id"] == rule_id)["fired"]:
            assert time.monotonic() < deadline, "the rotation never reached the vault"
            time.sleep(0.05)
        deleted = api.delete(f"/integrations/{integration_id}", params=delete_params)
        assert deleted.status_code == 204, deleted.text
        thread.join(timeout=60)
    finally:
        sim.delete("/faults")
    return results["put"], since


def test_a_rotation_racing_the_removal_answers_409_integration_disabled(api, sim, scenario):
    integration = STATE["first"]
    response, since = _rotate_while_removing(api, sim, scenario, integration["id"], {})
    doc = assert_problem(response, 409)
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("id", "integrationDisabled")]
    assert ("PUT", 409) in _vault_statuses(sim, since)  # the vault refused the soft-deleted name
    after = api.get(f"/integrations/{integration['id']}").json()
    assert after["status"] == "disabled" and after["secrets"] == []


def test_a_rotation_racing_a_purge_answers_404(api, sim, scenario):
    created = api.post("/integrations", json=_single(scenario))
    assert created.status_code == 201, created.text
    integration_id = created.json()["id"]
    response, since = _rotate_while_removing(api, sim, scenario, integration_id, {"purgeAssets": "true"})
    doc = assert_problem(response, 404)
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("id", "notFound")]
    assert ("PUT", 409) in _vault_statuses(sim, since)
    assert_problem(api.get(f"/integrations/{integration_id}"), 404)


async def test_a_rotation_onto_a_secret_deleted_in_the_vault_is_a_409(api, sim, runtime, scenario):
    created = api.post("/integrations", json=_single(scenario))
    assert created.status_code == 201, created.text
    integration = created.json()
    name = next(s["name"] for s in integration["secrets"])
    await runtime.secrets.delete_secret(name)  # deleted in the portal; the integration is still active
    since = _last_seq(sim)
    response = api.put(f"/integrations/{integration['id']}/secrets",
                       json={"syncAppSecret": _single(scenario)["syncAppSecret"]})
    doc = assert_problem(response, 409)
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("syncAppSecret", "secretDeleted")]
    assert name in doc["errors"][0]["message"] and "Recover" in doc["errors"][0]["action"]
    assert ("PUT", 409) in _vault_statuses(sim, since)
    assert api.get(f"/integrations/{integration['id']}").json()["status"] != "disabled"


async def test_no_secret_value_and_no_continuation_key_anywhere(stack, runtime, secret_values):
    """Runs last: every response, the host's log, every entity and queue message."""
    assert not [line for line in RECORDER.seen if line.endswith(" 500")]
    texts = RECORDER.seen + list(stack.logs()) + await stored_texts(runtime)
    assert leaks(texts, secret_values | USED_SECRETS) == []
