"""GET /api/alerts: the documented list shape (docs/api.md), filters, paging, problem documents; the timer's binding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

from functions.runtime import runtime
from shared.services.expiry import check_secret_expiry
from tests.unit.expiry.conftest import Env, no_graph

pytestmark = pytest.mark.unit

CONTRACT_FIELDS = {"id", "integrationId", "kind", "appId", "expiresOn", "daysLeft", "status", "raisedAt", "message",
                   "action"}


def _function(name: str):
    # The blueprint's own function objects (function_app.app.get_functions() may only index once).
    import functions.alerts

    return getattr(functions.alerts, name)._function


async def _get(env: Env, monkeypatch, query: str = "") -> func.HttpResponse:
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    req = func.HttpRequest("GET", f"http://localhost:7071/api/alerts{'?' + query if query else ''}", params=params,
                           body=b"", headers={})
    return await _function("list_alerts").get_user_function()(req)


async def _seed(env: Env) -> tuple[str, str]:
    """Six integrations with one open alert each: a's 3-day mark, b's 14-day mark, four 30-day marks."""
    a = await env.add_integration(expires_in=timedelta(days=2), source="given")
    b = await env.add_integration(expires_in=timedelta(days=10), source="given")
    for _ in range(4):
        await env.add_integration(expires_in=timedelta(days=20), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    return a.id, b.id


async def test_lists_alerts_with_contract_fields(env: Env, monkeypatch) -> None:
    await _seed(env)
    response = await _get(env, monkeypatch)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert "nextLink" not in body and len(body["value"]) == 6
    assert all(CONTRACT_FIELDS <= set(item) for item in body["value"])
    assert {item["status"] for item in body["value"]} == {"open"}


async def test_filters_by_integration_and_status(env: Env, monkeypatch) -> None:
    first, _ = await _seed(env)
    body = json.loads((await _get(env, monkeypatch, f"integrationId={first.upper()}")).get_body())
    assert len(body["value"]) == 1 and {i["integrationId"] for i in body["value"]} == {first}
    body = json.loads((await _get(env, monkeypatch, "status=resolved")).get_body())
    assert body["value"] == []
    env.clock.advance(timedelta(days=1, hours=1))  # a reaches its 1-day mark: the 3-day alert is superseded
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (old,) = json.loads((await _get(env, monkeypatch, "status=resolved")).get_body())["value"]
    assert (old["integrationId"], old["mark"], old["resolvedReason"]) == (first, 3, "superseded by the 1-day mark")
    body = json.loads((await _get(env, monkeypatch, f"integrationId={first}&status=open")).get_body())
    assert [i["mark"] for i in body["value"]] == [1]


async def test_pages_follow_next_link_to_the_end(env: Env, monkeypatch) -> None:
    await _seed(env)
    seen: list[str] = []
    query = "top=4&status=open"
    for _ in range(5):
        body = json.loads((await _get(env, monkeypatch, query)).get_body())
        seen += [i["id"] for i in body["value"]]
        if "nextLink" not in body:
            break
        link = urlsplit(body["nextLink"])
        assert link.path == "/api/alerts" and "code=" not in link.query
        query = link.query
    assert len(seen) == 6 and len(set(seen)) == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [("top=0", "top"), ("top=1001", "top"), ("status=closed", "status"), ("integrationId=nope", "integrationId"),
     ("continuation=garbage", "continuation"), ("colour=blue", "colour")],
)
async def test_bad_queries_are_problem_documents(env: Env, monkeypatch, query: str, field: str) -> None:
    response = await _get(env, monkeypatch, query)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = json.loads(response.get_body())
    assert {"type", "title", "status", "detail", "errors"} <= set(problem)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert all(e["action"] for e in problem["errors"])


async def test_a_continuation_cannot_be_replayed_with_other_filters(env: Env, monkeypatch) -> None:
    _first, _ = await _seed(env)
    body = json.loads((await _get(env, monkeypatch, "top=2")).get_body())
    token = parse_qs(urlsplit(body["nextLink"]).query)["continuation"][0]
    response = await _get(env, monkeypatch, f"top=2&status=open&continuation={token}")
    assert response.status_code == 400


def test_the_timer_runs_on_the_expiry_schedule_setting() -> None:
    bindings = _function("secret_expiry_check").get_bindings_dict()["bindings"]
    (trigger,) = [b for b in bindings if b["type"] == "timerTrigger"]
    assert trigger["schedule"] == "%MEMSYNC_EXPIRY_SCHEDULE%"
    route = _function("list_alerts").get_bindings_dict()["bindings"][0]
    assert route["route"] == "alerts" and str(route["authLevel"].value).lower() == "function"


async def test_post_alerts_check_runs_the_check_now(env: Env, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    env.clock.set(datetime.now(UTC))  # the route runs on the system clock
    await env.add_integration(expires_in=timedelta(days=5), source="given")
    req = func.HttpRequest("POST", "http://localhost:7071/api/alerts/check", body=b"", headers={})
    response = await _function("check_alerts").get_user_function()(req)

    assert response.status_code == 202 and response.mimetype == "application/json"
    assert response.headers["Location"] == "/api/alerts?status=open"
    report = json.loads(response.get_body())
    assert report == {"secretsChecked": 1, "alertsRaised": 1, "alertsResolved": 0, "failures": [],
                      "delivery": {"configured": True, "delivered": 1, "failed": 0, "errors": []}}
    body = json.loads((await _get(env, monkeypatch, "status=open")).get_body())
    assert [i["mark"] for i in body["value"]] == [7]
    # again: nothing new, the open alert stays the one
    again = json.loads((await _function("check_alerts").get_user_function()(req)).get_body())
    assert again["alertsRaised"] == 0 and again["delivery"]["delivered"] == 0


def test_the_check_route_is_a_keyed_post() -> None:
    (route,) = [b for b in _function("check_alerts").get_bindings_dict()["bindings"] if b["type"] == "httpTrigger"]
    assert route["route"] == "alerts/check" and [str(m.value) for m in route["methods"]] == ["POST"]
    assert str(route["authLevel"].value).lower() == "function"
