"""Webhook bodies per MEMSYNC_ALERT_WEBHOOK_FORMAT, as actually POSTed; never a secret; failures retried."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
import pytest

from shared.services.expiry import check_secret_expiry
from tests.unit.expiry.conftest import SECRET_VALUE, SYNC_APP, WEBHOOK_URL, make_env, no_graph

pytestmark = pytest.mark.unit


async def _one_alert(fmt: str) -> tuple[dict, httpx.Request, object]:
    env = make_env(fmt)
    integration = await env.add_integration(expires_in=timedelta(days=20), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert len(env.receiver.requests) == 1  # the 30-day mark
    request = env.receiver.requests[0]
    return json.loads(request.content), request, integration


def _no_secret(request: httpx.Request) -> None:
    text = request.content.decode()
    assert SECRET_VALUE not in text
    assert SECRET_VALUE[:3] not in text  # not even the hint
    assert "webhook-signature-value" not in text


@pytest.mark.parametrize("fmt", ["generic", "teams", "slack"])
async def test_every_format_is_a_json_post_to_the_configured_url_without_a_secret(fmt: str) -> None:
    env = make_env(fmt)
    await env.add_integration(expires_in=timedelta(days=20), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (request,) = env.receiver.requests
    assert request.method == "POST" and str(request.url) == WEBHOOK_URL
    assert request.headers["content-type"] == "application/json"
    _no_secret(request)


async def test_generic_body_is_the_alert_with_a_text_line() -> None:
    body, _, integration = await _one_alert("generic")
    assert body["integrationId"] == integration.id  # type: ignore[attr-defined]
    assert body["kind"] == "secretExpiring" and body["appId"] == SYNC_APP and body["role"] == "sync"
    assert body["daysLeft"] == 20 and body["expiresOn"].endswith("Z") and body["status"] == "open"
    assert set(body) >= {"id", "integrationId", "kind", "appId", "expiresOn", "daysLeft", "status", "raisedAt",
                         "message", "action", "text"}
    assert "Certificates & secrets" in body["action"]
    assert f"PUT /api/integrations/{integration.id}/secrets" in body["action"]  # type: ignore[attr-defined]


async def test_teams_body_is_an_adaptive_card_in_the_attachments_envelope() -> None:
    body, _, integration = await _one_alert("teams")
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    facts = {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["App ID"] == SYNC_APP and facts["App"] == "sync app" and facts["Days left"] == "20"
    assert integration.id in facts["Integration"]  # type: ignore[attr-defined]
    texts = " ".join(b.get("text", "") for b in card["body"])
    assert "Certificates & secrets" in texts


async def test_slack_body_has_text_and_blocks_and_escapes_names() -> None:
    body, _, _ = await _one_alert("slack")
    assert isinstance(body["text"], str) and body["text"]
    types = [b["type"] for b in body["blocks"]]
    assert types[0] == "header" and "section" in types
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    # the display name is "Contoso <MSP> & Co": Slack's control characters are escaped in mrkdwn
    fields = [f["text"] for b in body["blocks"] if "fields" in b for f in b["fields"]]
    assert any("Contoso &lt;MSP&gt; &amp; Co" in f for f in fields)
    assert all(len(b["fields"]) <= 10 for b in body["blocks"] if "fields" in b)


async def test_a_failed_delivery_is_retried_on_the_next_run_and_delivered_once(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    env = make_env("teams")
    await env.add_integration(expires_in=timedelta(days=20), source="given")
    env.receiver.statuses = [503]
    first = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert first.delivery.failed == 1 and first.delivery.delivered == 0
    (alert,) = env.all_alerts()
    assert not alert.delivered and alert.last_delivery_error == "HTTP 503"

    env.clock.advance(timedelta(days=1))
    second = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert second.delivery.delivered == 1
    third = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert third.delivery.delivered == 0 and third.delivery.failed == 0
    (alert,) = env.all_alerts()
    assert alert.delivered and alert.delivery_attempts == 2
    assert len(env.receiver.requests) == 2
    assert WEBHOOK_URL not in caplog.text and "webhook-signature-value" not in caplog.text
    assert SECRET_VALUE not in caplog.text


async def test_an_unreachable_webhook_does_not_stop_the_check() -> None:
    env = make_env("slack")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    env.rt.http = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    await env.add_integration(expires_in=timedelta(days=2), source="given")
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.alerts_raised == 1 and report.delivery.failed == 1  # the 3-day mark only
    assert all(e.endswith("ConnectError") for e in report.delivery.errors)


async def test_without_a_webhook_alerts_are_only_stored() -> None:
    env = make_env(webhook=False)
    await env.add_integration(expires_in=timedelta(days=2), source="given")
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.alerts_raised == 1 and not report.delivery.configured
    assert env.receiver.requests == []
