"""Secret dates at registration and rotation, and alerts on removal.

- `*ExpiresOn` in the past is a 422 (code `dateInPast`) that names the field and says what to send; with
  another problem in the same body the answer stays a 400 listing both.
- A date Graph knows (the app's `passwordCredentials`, matched by hint) replaces a different date given,
  at registration and at rotation, and says `graph`; when Graph refuses (no Application.Read.All) the
  given or assumed date stays.
- Deleting an integration resolves its open alerts ("integration deleted").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import httpx
import pytest

from shared.api.models import MultiTenantRegistration, SecretRotation
from shared.api.parsing import parse_model, parse_registration
from shared.api.problems import ApiProblem
from shared.clients.apis import Apis
from shared.errors import from_aadsts
from shared.models import AppRole, NewIntegration
from shared.ratelimit import RateLimits
from shared.services import registration
from shared.services.alerting import raise_credential_alert
from shared.stores.alerts import AlertStatus, AlertStore
from shared.stores.tables import ALERTS_TABLE
from tests.unit.memtables import MemoryTables

from .appfunctions import user_functions
from .fakes import Enqueued, FakeTokens, fake_runtime

pytestmark = pytest.mark.unit

PARTNER_TENANT = "11111111-1111-4111-8111-111111111111"
PARTNER_APP = "22222222-2222-4222-8222-222222222222"
SYNC_APP = "33333333-3333-4333-8333-333333333333"
PARTNER_SECRET = "Pa1~partner.secret-value-0123456789abcdef"
SYNC_SECRET = "Sy2~sync.secret-value-0123456789abcdefghij"
GRAPH_END = datetime(2027, 4, 30, 10, 23, 45, tzinfo=UTC)


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "multiTenant", "displayName": "Contoso MSP", "partnerTenantId": PARTNER_TENANT,
        "partnerAppId": PARTNER_APP, "partnerAppSecret": PARTNER_SECRET,
        "syncAppId": SYNC_APP, "syncAppSecret": SYNC_SECRET, **overrides,
    }


def new(**overrides: Any) -> NewIntegration:
    return MultiTenantRegistration.model_validate(body(**overrides)).to_domain()


def runtime() -> Any:
    return fake_runtime(FakeTokens(secrets={PARTNER_APP: PARTNER_SECRET, SYNC_APP: SYNC_SECRET}))


def credential(key: str, hint: str, end: datetime) -> dict[str, Any]:
    return {"keyId": key, "hint": hint, "displayName": key, "customKeyIdentifier": None, "secretText": None,
            "startDateTime": "2026-01-01T00:00:00Z", "endDateTime": end.isoformat().replace("+00:00", "Z")}


class Graph:
    """Graph's `GET /v1.0/applications(appId='...')?$select=passwordCredentials`, per app id."""

    def __init__(self, credentials: dict[str, list[dict[str, Any]]], status: int = 200) -> None:
        self.credentials = credentials
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"code": "Authorization_RequestDenied",
                                                               "message": "Insufficient privileges."}})
        app_id = request.url.path.split("'")[1]
        return httpx.Response(200, json={"appId": app_id, "passwordCredentials": self.credentials.get(app_id, [])})


def use_graph(rt: Any, graph: Graph) -> None:
    rt.http = httpx.AsyncClient(transport=httpx.MockTransport(graph))
    rt.api = Apis(rt.settings, rt.http, rt.tokens, RateLimits()).api


# --- past dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["syncAppSecretExpiresOn", "partnerAppSecretExpiresOn"])
def test_a_past_expiry_date_is_a_422_naming_the_field(field: str) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ApiProblem) as caught:
        parse_registration(body(**{field: yesterday}))
    problem = caught.value
    assert problem.status == 422 and problem.slug == "invalid-request"
    (error,) = problem.errors
    assert (error.field, error.code) == (field, "dateInPast")
    assert error.message.startswith(f"{field} is in the past")
    assert yesterday not in error.message  # nothing the client sent is echoed
    assert "leave the field out and memsync reads it from Microsoft Graph" in error.action
    assert "create a new one" in error.action


def test_a_past_date_beside_a_malformed_field_is_a_400_listing_both() -> None:
    with pytest.raises(ApiProblem) as caught:
        parse_registration(body(syncAppSecretExpiresOn="2020-01-01T00:00:00Z", syncAppId="nope"))
    assert caught.value.status == 400
    assert sorted(e.code for e in caught.value.errors) == ["dateInPast", "invalidGuid"]


def test_a_future_date_with_an_offset_is_accepted_in_utc() -> None:
    parsed = parse_registration(body(syncAppSecretExpiresOn="2099-05-01T02:00:00+02:00"))
    assert parsed.sync_app_secret_expires_on == datetime(2099, 5, 1, tzinfo=UTC)


def test_a_rotation_with_a_past_date_is_a_422() -> None:
    with pytest.raises(ApiProblem) as caught:
        parse_model(SecretRotation, {"syncAppSecret": SYNC_SECRET, "syncAppSecretExpiresOn": "2001-01-01T00:00:00Z"})
    assert caught.value.status == 422
    assert [(e.field, e.code) for e in caught.value.errors] == [("syncAppSecretExpiresOn", "dateInPast")]


async def test_the_http_answer_is_a_422_problem_document_before_anything_is_tried() -> None:
    raw = json.dumps(body(syncAppSecretExpiresOn="2024-02-29T00:00:00Z")).encode()
    req = func.HttpRequest("POST", "http://localhost:7071/api/integrations",
                           headers={"Content-Type": "application/json"}, body=raw)
    response = await user_functions()["register_integration"](req)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    doc = json.loads(response.get_body())
    assert doc["status"] == 422 and doc["type"] == "urn:memsync:problem:invalid-request"
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("syncAppSecretExpiresOn", "dateInPast")]
    assert SYNC_SECRET not in response.get_body().decode()


# --- the date Graph knows -------------------------------------------------------------------------------


async def test_registration_corrects_a_given_date_to_graphs_and_says_graph() -> None:
    rt = runtime()
    graph = Graph({SYNC_APP: [credential("k0", "abc", GRAPH_END + timedelta(days=300)),
                              credential("k1", SYNC_SECRET[:3], GRAPH_END)]})
    use_graph(rt, graph)
    given = datetime(2027, 5, 1, tzinfo=UTC)  # what the admin typed from the portal
    integration = await registration.register(rt, new(syncAppSecretExpiresOn=given.isoformat()), enqueue=Enqueued())

    refs = {s.role: s for s in integration.secrets}
    assert (refs[AppRole.SYNC].expires_on, refs[AppRole.SYNC].expires_on_source) == (GRAPH_END, "graph")
    # The partner app's secret has no credential matching its hint: the assumption stays.
    assert refs[AppRole.PARTNER].expires_on_source == "assumed"
    # Graph's date goes to the vault's expiry attribute too; an assumed one never does.
    assert rt.secrets.meta[refs[AppRole.SYNC].name]["expires_on"] == GRAPH_END
    assert rt.secrets.meta[refs[AppRole.PARTNER].name]["expires_on"] is None
    # Each app read itself with its own token in its home tenant, and nothing secret left memsync.
    assert sorted(r.url.path for r in graph.requests) == sorted(
        f"/v1.0/applications(appId='{a}')" for a in (PARTNER_APP, SYNC_APP))
    assert all(r.url.params["$select"] == "passwordCredentials" for r in graph.requests)
    assert not any(SYNC_SECRET[:3] in str(r.url) for r in graph.requests)
    stored, _ = rt.integrations.records[integration.id]
    assert SYNC_SECRET not in stored and '"graph"' in stored


async def test_without_a_given_date_graphs_date_is_taken() -> None:
    rt = runtime()
    use_graph(rt, Graph({PARTNER_APP: [credential("p", PARTNER_SECRET[:3], GRAPH_END)]}))
    integration = await registration.register(rt, new(), enqueue=Enqueued())
    ref = integration.secret(AppRole.PARTNER)
    assert ref is not None and (ref.expires_on, ref.expires_on_source) == (GRAPH_END, "graph")


async def test_a_given_date_that_graph_confirms_stays_given() -> None:
    rt = runtime()
    use_graph(rt, Graph({SYNC_APP: [credential("k1", SYNC_SECRET[:3], GRAPH_END)]}))
    integration = await registration.register(rt, new(syncAppSecretExpiresOn=GRAPH_END.isoformat()),
                                              enqueue=Enqueued())
    ref = integration.secret(AppRole.SYNC)
    assert ref is not None and (ref.expires_on, ref.expires_on_source) == (GRAPH_END, "given")


async def test_when_graph_refuses_the_given_date_stays() -> None:
    rt = runtime()  # fake_runtime's Graph answers 403: the app may not read itself
    given = datetime(2027, 5, 1, tzinfo=UTC)
    integration = await registration.register(rt, new(syncAppSecretExpiresOn=given.isoformat()), enqueue=Enqueued())
    ref = integration.secret(AppRole.SYNC)
    assert ref is not None and (ref.expires_on, ref.expires_on_source) == (given, "given")


async def test_rotation_reads_the_new_secrets_date_from_graph_at_once() -> None:
    rt = runtime()
    integration = await registration.register(rt, new(), enqueue=Enqueued())
    assert integration.secret(AppRole.SYNC).expires_on_source == "assumed"  # type: ignore[union-attr]

    rotated_value = "Nw3~rotated.secret-value-0123456789abcdef"
    rt.tokens.secrets[SYNC_APP] = rotated_value
    graph = Graph({SYNC_APP: [credential("old", SYNC_SECRET[:3], GRAPH_END - timedelta(days=200)),
                              credential("new", rotated_value[:3], GRAPH_END)]})
    use_graph(rt, graph)
    body_ = SecretRotation.model_validate({"syncAppSecret": rotated_value,
                                           "syncAppSecretExpiresOn": "2028-01-01T00:00:00Z"}).to_domain()
    updated = await registration.rotate_secrets(rt, integration.id, body_)

    ref = updated.secret(AppRole.SYNC)
    assert ref is not None and (ref.expires_on, ref.expires_on_source, ref.version) == (GRAPH_END, "graph", "v2")
    assert len(graph.requests) == 1
    assert rt.secrets.meta[ref.name]["expires_on"] == GRAPH_END


# --- removal ------------------------------------------------------------------------------------------


async def test_deleting_an_integration_resolves_its_open_alerts_and_no_one_elses() -> None:
    rt = runtime()
    rt.tables = MemoryTables()
    gone = await registration.register(rt, new(), enqueue=Enqueued())
    rt.tokens.secrets["44444444-4444-4444-8444-444444444444"] = "Ot4~other.secret-value-0123456789abc"
    other = await registration.register(rt, new(syncAppId="44444444-4444-4444-8444-444444444444",
                                                 syncAppSecret="Ot4~other.secret-value-0123456789abc"),
                                        enqueue=Enqueued())
    expired = from_aadsts(7000222, app_id=SYNC_APP, tenant_id=PARTNER_TENANT, app_label="sync app")
    for integration in (gone, other):
        await raise_credential_alert(rt, integration, AppRole.SYNC, expired)

    await registration.remove_integration(rt, gone.id, purge_assets=False)

    store = AlertStore(rt.tables)
    ((alert, _),) = await store.list_secret_alerts(gone.id, AppRole.SYNC)
    assert alert.status is AlertStatus.RESOLVED and alert.resolved_reason == "integration deleted"
    assert [a.status for a, _ in await store.list_open()] == [AlertStatus.OPEN]
    assert len(rt.tables.rows(ALERTS_TABLE)) == 2
