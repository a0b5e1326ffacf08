"""Requests that once ended in a 500 and are the client's or a dependency's doing: a forged continuation
token, a lone surrogate in a body, a rotation that races the integration's removal (Key Vault's 409 for a
soft-deleted name), Key Vault failing during a registration (503 with Retry-After, nothing stored).

The functions run as the host calls them, on memsync's real stores over in-memory tables; Key Vault is the
real `SecretStore` over a stand-in for the SDK's `SecretClient` that raises what the SDK raises."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from functions.runtime import runtime
from shared.api.models import MultiTenantRegistration, SecretRotation
from shared.api.parsing import read_json_object
from shared.api.problems import ApiProblem, problem_from_domain
from shared.clients.keyvault import SecretStore
from shared.errors import ActionableError, DomainError
from shared.models import CustomerTenant, Integration, IntegrationKind, IntegrationStatus
from shared.runtime import Runtime
from shared.services import registration
from shared.settings import load_settings
from shared.stores.integrations import IntegrationStore, TenantStore
from tests.unit.expiry.fakes import MemoryVault
from tests.unit.memtables import MemoryTables

from .appfunctions import user_functions
from .fakes import Enqueued, FakeTokens, fake_runtime

pytestmark = pytest.mark.unit

FUNCTIONS = user_functions()
INTEGRATION = "8f3c2a1e-0b6d-4c5e-9a7f-1d2e3f4a5b6c"
TENANT = "11111111-1111-4111-8111-111111111111"
PARTNER_TENANT = "44444444-4444-4444-8444-444444444444"
PARTNER_APP = "22222222-2222-4222-8222-222222222222"
SYNC_APP = "33333333-3333-4333-8333-333333333333"
PARTNER_SECRET = "partner~Secret.value-0123456789abcdefghij"
SYNC_SECRET = "sync~Secret.value-0123456789abcdefghijklm"
NEW_SECRET = "sync~New.value-9876543210zyxwvutsrqponmlk"


def get(route: dict[str, str], params: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://localhost:7071/api/x", headers={}, params=params, route_params=route,
                            body=b"")


def post(body: bytes, route: dict[str, str] | None = None, method: str = "POST") -> func.HttpRequest:
    return func.HttpRequest(method, "http://localhost:7071/api/x", headers={"Content-Type": "application/json"},
                            params={}, route_params=route or {}, body=body)


async def answer(name: str, req: func.HttpRequest) -> tuple[int, dict[str, Any], func.HttpResponse]:
    response = await FUNCTIONS[name](req)
    return response.status_code, json.loads(response.get_body() or b"{}"), response


def assert_problem(status: int, doc: dict[str, Any], response: func.HttpResponse, expected: int) -> None:
    assert status == expected, doc
    assert response.mimetype == "application/problem+json"
    assert doc["status"] == expected and doc["errors"] and all(e["action"] for e in doc["errors"])


# --- 1. a forged continuation token ---------------------------------------------------------------------


async def stored_tenant(monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """A runtime whose tables hold one integration and one tenant, as the function app's runtime."""
    tables = MemoryTables()
    rt = Runtime(
        settings=load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                "MEMSYNC_KEY_VAULT_URL": "https://memsync-test.vault.azure.net"}),
        credential=None, tables=tables, integrations=IntegrationStore(tables),  # type: ignore[arg-type]
        tenants=TenantStore(tables), secrets=MemoryVault(), queue=None, http=None, tokens=None,  # type: ignore[arg-type]
    )
    await rt.integrations.upsert_integration(Integration(
        id=INTEGRATION, kind=IntegrationKind.MULTI_TENANT, display_name="Contoso MSP",
        partner_tenant_id=PARTNER_TENANT, partner_app_id=PARTNER_APP, sync_app_id=SYNC_APP,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    ))
    await rt.tenants.upsert_tenant(CustomerTenant(integration_id=INTEGRATION, tenant_id=TENANT))
    monkeypatch.setattr(runtime, "_runtime", rt)
    return rt


def unkeyed_token(position: object, scope: dict[str, object]) -> str:
    """A token made the way anyone can from public values: a plain hash of the query, no key."""
    bound = hashlib.sha256(json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str).encode())
    payload = {"v": 1, "p": position, "b": bound.hexdigest()[:16]}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


DEVICE_SCOPE = {"kind": "devices", "i": INTEGRATION, "t": TENANT, "r": False, "s": None, "c": None}


@pytest.mark.parametrize("position", [5, {"RowKey": 1}, ["a", 2], None, True, 1.5])
async def test_a_token_forged_from_public_values_with_a_non_string_position_is_a_400(
    monkeypatch: pytest.MonkeyPatch, position: object
) -> None:
    await stored_tenant(monkeypatch)
    token = unkeyed_token(position, DEVICE_SCOPE)
    req = get({"id": INTEGRATION, "tenantId": TENANT}, {"continuation": token})
    status, doc, response = await answer("list_tenant_devices", req)
    assert_problem(status, doc, response, 400)
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("continuation", "invalidContinuation")]


@pytest.mark.parametrize("name", ["list_tenant_devices", "list_tenant_software", "list_integration_tenants",
                                  "list_integrations", "list_device_software", "list_software_devices"])
async def test_every_list_refuses_a_token_without_the_key(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    await stored_tenant(monkeypatch)
    route = {"id": INTEGRATION, "tenantId": TENANT, "deviceId": TENANT, "softwareId": "app-1"}
    for position in (5, {"PartitionKey": INTEGRATION, "RowKey": 7}, "row-key", [1, 2]):
        # Well-formed for the current format, with a MAC made up by the client.
        forged = b64(json.dumps({"k": "0" * 32, "p": position}).encode()) + "." + b64(b"\x00" * 32)
        status, doc, response = await answer(name, get(route, {"continuation": forged}))
        assert_problem(status, doc, response, 400)
        assert [e["field"] for e in doc["errors"]] == ["continuation"]


async def test_a_listing_signs_its_next_link_and_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = await stored_tenant(monkeypatch)
    for i in range(4):
        await rt.integrations.upsert_integration(Integration(
            id=str(uuid.UUID(int=i + 1)), kind=IntegrationKind.SINGLE_TENANT, display_name=f"Tenant {i}",
            tenant_id=TENANT, sync_app_id=SYNC_APP, created_at=datetime(2026, 2, 1 + i, tzinfo=UTC),
        ))
    seen: list[str] = []
    params = {"top": "2"}
    for _ in range(4):
        status, doc, _ = await answer("list_integrations", get({}, params))
        assert status == 200, doc
        seen += [t["id"] for t in doc["value"]]
        if "nextLink" not in doc:
            break
        params = dict(parse_qsl(urlsplit(doc["nextLink"]).query))
    assert len(seen) == len(set(seen)) == 5
    # The token names the continuation key's version only; the key stays in the vault.
    key = await rt.continuation_keys.current()
    assert key.material.decode() not in json.dumps(doc)


# --- 2. a lone surrogate in a body ----------------------------------------------------------------------


def test_a_lone_surrogate_in_any_string_of_a_body_is_a_400_naming_the_field() -> None:
    body = (b'{"displayName": "\\ud800", "partnerTenantId": "x\\udfffy", "tenantFilter": '
            b'{"include": ["ok", "\\udbff"]}, "fine": "\\ud83d\\ude00", "\\udc00key": 1}')
    with pytest.raises(ApiProblem) as refused:
        read_json_object("application/json", body)
    assert refused.value.status == 400
    assert [(e.field, e.code) for e in refused.value.errors] == [
        ("\\udc00key", "invalidCharacters"),
        ("displayName", "invalidCharacters"),
        ("partnerTenantId", "invalidCharacters"),
        ("tenantFilter.include[1]", "invalidCharacters"),
    ]
    assert all(e.action for e in refused.value.errors)


def test_paired_surrogates_and_escaped_text_are_kept() -> None:
    data = read_json_object("application/json", b'{"displayName": "\\ud83d\\ude00 \\u00e9 \\\\ud800"}')
    assert data == {"displayName": "😀 é \\ud800"}


@pytest.mark.parametrize(
    ("name", "route", "body", "field"),
    [
        ("register_integration", {}, b'{"kind": "singleTenant", "displayName": "\\ud800", "tenantId": "'
         + TENANT.encode() + b'", "syncAppId": "' + SYNC_APP.encode() + b'", "syncAppSecret": "s3cret-value"}',
         "displayName"),
        ("register_integration", {}, b'{"displayName": "MSP", "partnerAppSecret": "ab\\udc00cd"}',
         "partnerAppSecret"),
        ("rotate_integration_secrets", {"id": INTEGRATION}, b'{"syncAppSecret": "\\ud800"}', "syncAppSecret"),
        ("sync_integration", {"id": INTEGRATION}, b'{"tenantIds": ["\\ud800"]}', "tenantIds[0]"),
    ],
)
async def test_the_functions_answer_400_for_a_lone_surrogate(name: str, route: dict[str, str], body: bytes,
                                                             field: str) -> None:
    method = "PUT" if name == "rotate_integration_secrets" else "POST"
    status, doc, response = await answer(name, post(body, route, method))
    assert_problem(status, doc, response, 400)
    assert (field, "invalidCharacters") in [(e["field"], e["code"]) for e in doc["errors"]]


# --- 3 and 4. Key Vault ---------------------------------------------------------------------------------


class VaultClient:
    """The part of `azure.keyvault.secrets.aio.SecretClient` that SecretStore calls, with Key Vault's soft
    delete (a deleted name answers 409 to a new version) and a status to fail every call with."""

    def __init__(self) -> None:
        self.live: dict[str, list[str]] = {}
        self.deleted: dict[str, list[str]] = {}
        self.failing: int | None = None
        self.fail_set_once: int | None = None
        self.before_set: Any = None

    def _fail(self) -> None:
        if self.failing is not None:
            error = HttpResponseError("(InternalServerError) The service is temporarily unavailable.")
            error.status_code = self.failing
            raise error

    async def set_secret(self, name: str, value: str, **_: Any) -> Any:
        if self.before_set is not None:
            hook, self.before_set = self.before_set, None
            await hook()
        self._fail()
        if self.fail_set_once is not None:
            status, self.fail_set_once = self.fail_set_once, None
            error = HttpResponseError("(InternalServerError) The service is temporarily unavailable.")
            error.status_code = status
            raise error
        if name in self.deleted:
            error = ResourceExistsError(f"(Conflict) Secret {name} is currently in a deleted but recoverable state")
            error.status_code = 409
            raise error
        self.live.setdefault(name, []).append(value)
        return SimpleNamespace(value=value, properties=SimpleNamespace(version=f"v{len(self.live[name])}"))

    async def get_secret(self, name: str, version: str | None = None) -> Any:
        self._fail()
        if name not in self.live:
            error = ResourceNotFoundError(f"(SecretNotFound) A secret with (name/id) {name} was not found")
            error.status_code = 404
            raise error
        return SimpleNamespace(value=self.live[name][-1],
                               properties=SimpleNamespace(version=f"v{len(self.live[name])}"))

    async def delete_secret(self, name: str) -> Any:
        self._fail()
        if name not in self.live:
            error = ResourceNotFoundError("(SecretNotFound)")
            error.status_code = 404
            raise error
        self.deleted[name] = self.live.pop(name)
        return SimpleNamespace(name=name)


def vault_runtime() -> tuple[Any, VaultClient]:
    rt = fake_runtime(FakeTokens(secrets={PARTNER_APP: PARTNER_SECRET, SYNC_APP: SYNC_SECRET}))
    client = VaultClient()
    rt.secrets = SecretStore(client)  # type: ignore[arg-type]
    return rt, client


def registration_body() -> Any:
    return MultiTenantRegistration.model_validate({
        "kind": "multiTenant", "displayName": "Contoso MSP", "partnerTenantId": PARTNER_TENANT,
        "partnerAppId": PARTNER_APP, "partnerAppSecret": PARTNER_SECRET, "syncAppId": SYNC_APP,
        "syncAppSecret": SYNC_SECRET,
    }).to_domain()


def rotation_body() -> Any:
    return SecretRotation.model_validate({"syncAppSecret": NEW_SECRET}).to_domain()


async def refusal(call: Any) -> ApiProblem:
    with pytest.raises((DomainError, ActionableError)) as caught:
        await call
    return problem_from_domain(caught.value)


@pytest.mark.parametrize("purge", [False, True])
async def test_a_rotation_racing_the_removal_is_a_409_or_a_404_not_a_500(purge: bool) -> None:
    rt, client = vault_runtime()
    integration = await registration.register(rt, registration_body(), enqueue=Enqueued())
    rt.tokens.secrets[SYNC_APP] = NEW_SECRET  # the new secret is valid in Entra

    async def removed_meanwhile() -> None:
        # DELETE /api/integrations/{id} runs between the rotation's credential check and its vault write.
        await registration.remove_integration(rt, integration.id, purge_assets=False)
        if purge:
            await rt.integrations.delete_integration(integration.id)

    client.before_set = removed_meanwhile
    problem = await refusal(registration.rotate_secrets(rt, integration.id, rotation_body()))
    if purge:
        assert (problem.status, problem.errors[0].code, problem.errors[0].field) == (404, "notFound", "id")
    else:
        assert (problem.status, problem.errors[0].code) == (409, "integrationDisabled")
    assert NEW_SECRET not in json.dumps(problem.to_json())


async def test_a_rotation_onto_a_secret_deleted_by_hand_is_a_409_saying_what_to_do() -> None:
    rt, client = vault_runtime()
    integration = await registration.register(rt, registration_body(), enqueue=Enqueued())
    rt.tokens.secrets[SYNC_APP] = NEW_SECRET
    name = f"memsync-{integration.id}-sync"
    client.deleted[name] = client.live.pop(name)  # deleted in the portal; the integration still active
    problem = await refusal(registration.rotate_secrets(rt, integration.id, rotation_body()))
    assert (problem.status, problem.errors[0].code, problem.errors[0].field) == (409, "secretDeleted",
                                                                                  "syncAppSecret")
    assert name in problem.errors[0].message and "Recover" in problem.errors[0].action
    assert (await rt.integrations.get_integration(integration.id)).status == IntegrationStatus.ACTIVE


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_key_vault_failing_during_a_registration_is_a_503_and_stores_nothing(status: int) -> None:
    rt, client = vault_runtime()
    client.failing = status
    problem = await refusal(registration.register(rt, registration_body(), enqueue=Enqueued()))
    assert problem.status == 503
    assert int(problem.headers["Retry-After"]) > 0
    assert problem.errors[0].code == "unreachable" and "Key Vault" in problem.errors[0].message
    assert rt.integrations.records == {}
    assert client.live == {}
    # The vault is back: the same registration goes through, as if the first had never been sent.
    client.failing = None
    integration = await registration.register(rt, registration_body(), enqueue=Enqueued())
    assert set(rt.integrations.records) == {integration.id}
    assert sorted(client.live) == sorted(s.name for s in integration.secrets)


async def test_key_vault_failing_on_the_second_secret_leaves_neither_secret_referenced() -> None:
    rt, client = vault_runtime()

    async def the_next_write_fails() -> None:
        client.fail_set_once = 500  # the partner secret is written; the sync secret's write fails

    async def after_the_first_write() -> None:
        client.before_set = the_next_write_fails

    client.before_set = after_the_first_write
    problem = await refusal(registration.register(rt, registration_body(), enqueue=Enqueued()))
    assert problem.status == 503
    assert rt.integrations.records == {}
    assert client.live == {}  # the partner secret written first was deleted again
    assert len(client.deleted) == 1
