"""GET /api/alerts: the documented list shape (docs/api.md), filters, paging, problem documents; the timer's binding."""

from __future__ import annotations

import json
from datetime import timedelta
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
    a = await env.add_integration(expires_in=timedelta(days=2), source="given")  # 30, 14, 7, 3
    b = await env.add_integration(expires_in=timedelta(days=10), source="given")  # 30, 14
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
    assert len(body["value"]) == 4 and {i["integrationId"] for i in body["value"]} == {first}
    body = json.loads((await _get(env, monkeypatch, "status=resolved")).get_body())
    assert body["value"] == []


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
