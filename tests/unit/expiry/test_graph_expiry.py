"""The Graph path: GET /v1.0/applications(appId='...')?$select=passwordCredentials with the app's own
token in its home tenant, matched by `hint`; anything short of a match falls back to the assumption."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.clients.applications import PasswordCredential, match_by_hint, parse_password_credentials
from shared.errors import from_aadsts
from shared.models import AppRole, IntegrationStatus
from shared.services.expiry import check_secret_expiry, graph_expiry
from shared.stores.alerts import AlertKind
from tests.unit.expiry.conftest import PARTNER_TENANT, SECRET_VALUE, START, SYNC_APP, Env

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _cred(key: str, hint: str, start: datetime, end: datetime) -> dict:
    return {"customKeyIdentifier": None, "displayName": key, "endDateTime": end.isoformat().replace("+00:00", "Z"),
            "hint": hint, "keyId": key, "secretText": None, "startDateTime": start.isoformat().replace("+00:00", "Z")}


def test_parse_and_match_by_hint() -> None:
    payload = {"passwordCredentials": [
        _cred("k-old", "Zq9", T0 - timedelta(days=400), T0 - timedelta(days=35)),
        _cred("k-new", "Zq9", T0, T0 + timedelta(days=90)),
        _cred("k-other", "abc", T0, T0 + timedelta(days=700)),
        {"hint": "Zq9"},  # no keyId: skipped
    ]}
    creds = parse_password_credentials(payload)
    assert [c.key_id for c in creds] == ["k-old", "k-new", "k-other"]
    assert match_by_hint(creds, "Zq9", stored_on=T0 + timedelta(minutes=5)).key_id == "k-new"  # type: ignore[union-attr]
    assert match_by_hint(creds, "nope") is None
    # without a stored date, the one that expires first is the cautious choice
    assert match_by_hint(creds, "Zq9").key_id == "k-old"  # type: ignore[union-attr]
    assert parse_password_credentials({"value": []}) == []
    assert match_by_hint([PasswordCredential("k", "Zq9", None, None, None)], "Zq9") is None


def _graph(env: Env, status: int, credentials: list[dict]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if status != 200:
            return httpx.Response(status, json={"error": {"code": "Authorization_RequestDenied",
                                                          "message": "Insufficient privileges."}})
        return httpx.Response(200, json={"id": "obj", "appId": SYNC_APP, "passwordCredentials": credentials})

    env.graph_handler = answer


async def test_graph_expiry_reads_the_apps_credentials_with_its_own_token(env: Env) -> None:
    integration = await env.add_integration(expires_in=None)
    end = START + timedelta(days=45)
    _graph(env, 200, [_cred("k1", "abc", START, START + timedelta(days=700)),
                      _cred("k2", SECRET_VALUE[:3], START, end)])
    stored = env.vault.current[integration.secrets[0].name]

    assert await graph_expiry(env.rt, integration, integration.secrets[0], stored) == end

    (request,) = env.graph
    assert request.url.path == f"/v1.0/applications(appId='{SYNC_APP}')"
    assert request.url.params["$select"] == "passwordCredentials"
    assert request.headers["authorization"].startswith("Bearer ")
    assert env.tokens.calls == [(PARTNER_TENANT, SYNC_APP, "https://graph.microsoft.com/.default")]


async def test_the_timer_records_the_graph_date_on_the_integration(env: Env, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    integration = await env.add_integration(expires_in=None)
    _graph(env, 200, [_cred("k2", SECRET_VALUE[:3], START, START + timedelta(days=10))])
    await check_secret_expiry(env.rt, clock=env.clock)
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None
    ref = stored.secret(AppRole.SYNC)
    assert ref is not None and ref.expires_on_source == "graph" and ref.expires_on == START + timedelta(days=10)
    assert [a.mark for a in env.all_alerts()] == [14]  # the most urgent mark reached, alone
    # no secret, and not the hint, anywhere in the table or the logs
    for table in env.tables.tables.values():
        for row in table.rows.values():
            assert SECRET_VALUE[:3] not in str(row)
    assert SECRET_VALUE not in caplog.text and f"'{SECRET_VALUE[:3]}'" not in caplog.text


async def test_an_app_that_may_not_read_itself_gets_the_assumed_date(env: Env) -> None:
    integration = await env.add_integration(expires_in=None)
    _graph(env, 403, [])
    report = await check_secret_expiry(env.rt, clock=env.clock)
    assert report.failures == []
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None
    ref = stored.secret(AppRole.SYNC)
    assert ref is not None and ref.expires_on_source == "assumed"
    assert ref.expires_on == START + timedelta(days=180)


async def test_no_matching_hint_gets_the_assumed_date(env: Env) -> None:
    integration = await env.add_integration(expires_in=None)
    _graph(env, 200, [_cred("k1", "xyz", START, START + timedelta(days=5))])
    await check_secret_expiry(env.rt, clock=env.clock)
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None and stored.secrets[0].expires_on_source == "assumed"
    assert env.all_alerts() == []


async def test_an_expired_secret_found_while_asking_graph_raises_secret_expired(env: Env) -> None:
    integration = await env.add_integration(expires_in=None)
    env.tokens.error = from_aadsts(7000222, app_id=SYNC_APP, tenant_id=PARTNER_TENANT, app_label="sync app")
    await check_secret_expiry(env.rt, clock=env.clock)
    (alert,) = env.all_alerts()
    assert alert.kind is AlertKind.SECRET_EXPIRED and alert.integration_id == integration.id
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None and stored.status is IntegrationStatus.ERROR


async def test_a_given_date_never_asks_graph(env: Env) -> None:
    await env.add_integration(expires_in=timedelta(days=100), source="given")
    await check_secret_expiry(env.rt, clock=env.clock)
    assert env.graph == [] and env.vault.value_reads == 0
