"""One integration per (home tenant, sync app), however many registrations race.

The registration service runs on memsync's real `IntegrationStore` and `TenantStore` over the in-memory
Table Storage of tests/unit/memtables.py (ETags, If-Match, inserts that refuse an existing row). Every
storage, vault and Entra call yields to the event loop, as a real network call does, so concurrent
registrations interleave at each of them."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.api.models import MultiTenantRegistration, SingleTenantRegistration
from shared.api.problems import problem_from_domain
from shared.errors import Conflict, DomainError
from shared.models import (
    CustomerTenant,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    NewIntegration,
    TenantStatus,
)
from shared.services import registration
from shared.stores.integrations import IntegrationStore, TenantStore, claim_key
from shared.stores.tables import INTEGRATIONS_TABLE, iso

from ..memtables import MemoryTables
from .fakes import Enqueued, FakeSecrets, FakeTokens, fake_runtime

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
PARTNER_TENANT = "11111111-1111-1111-1111-111111111111"
PARTNER_APP = "22222222-2222-2222-2222-222222222222"
SYNC_APP = "33333333-3333-3333-3333-333333333333"
CUSTOMER = "44444444-4444-4444-4444-444444444444"
OTHER_APP = "55555555-5555-5555-5555-555555555555"
PARTNER_SECRET = "partner~Secret.value-0123456789abcdefghij"
SYNC_SECRET = "sync~Secret.value-0123456789abcdefghijklm"
OTHER_SECRET = "other~Secret.value-0123456789abcdefghijk"


class Yielding:
    """A client whose every call yields to the event loop before and after, like a network round trip."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name == "query_entities":
            return lambda *args, **kwargs: _YieldingPager(value(*args, **kwargs))
        if not inspect.iscoroutinefunction(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            try:
                return await value(*args, **kwargs)
            finally:
                await asyncio.sleep(0)

        return call


class _YieldingPager:
    def __init__(self, pager: Any) -> None:
        self._pager = pager

    def __aiter__(self) -> Any:
        async def items() -> Any:
            await asyncio.sleep(0)
            async for entity in self._pager:
                yield entity
        return items()


class YieldingTables(MemoryTables):
    def client(self, name: str) -> Any:
        return Yielding(super().client(name))


class CountingSecrets(FakeSecrets):
    def __init__(self) -> None:
        super().__init__()
        self.sets: list[str] = []

    async def set_secret(self, name: str, value: Any, *, expires_on: Any, tags: dict[str, str]) -> str:
        await asyncio.sleep(0)
        self.sets.append(name)
        return await super().set_secret(name, value, expires_on=expires_on, tags=tags)


class SlowTokens(FakeTokens):
    async def get_token(self, tenant_id: str, app: Any, scope: str, *, fresh: bool = False) -> str:
        await asyncio.sleep(0)
        return await super().get_token(tenant_id, app, scope, fresh=fresh)


def runtime() -> Any:
    tokens = SlowTokens(secrets={PARTNER_APP: PARTNER_SECRET, SYNC_APP: SYNC_SECRET, OTHER_APP: OTHER_SECRET})
    tables = YieldingTables()
    base = fake_runtime(tokens)  # its settings, and Graph refusing the expiry lookup
    return SimpleNamespace(
        settings=base.settings,
        http=base.http,
        api=base.api,
        tokens=tokens,
        secrets=CountingSecrets(),
        integrations=IntegrationStore(tables),  # type: ignore[arg-type]
        tenants=TenantStore(tables),  # type: ignore[arg-type]
        tables=tables,
    )


def multi(**overrides: Any) -> NewIntegration:
    body = {
        "kind": "multiTenant",
        "partnerTenantId": PARTNER_TENANT,
        "partnerAppId": PARTNER_APP,
        "partnerAppSecret": PARTNER_SECRET,
        "syncAppId": SYNC_APP,
        "syncAppSecret": SYNC_SECRET,
        **overrides,
    }
    return MultiTenantRegistration.model_validate(body).to_domain()


def single(tenant_id: str = PARTNER_TENANT, app_id: str = SYNC_APP, secret: str = SYNC_SECRET) -> NewIntegration:
    body = {"kind": "singleTenant", "tenantId": tenant_id, "syncAppId": app_id, "syncAppSecret": secret}
    return SingleTenantRegistration.model_validate(body).to_domain()


def integrations(rt: Any) -> dict[str, dict[str, Any]]:
    return rt.tables.rows(INTEGRATIONS_TABLE, "integration")


def claims(rt: Any) -> dict[str, str]:
    return {key: row["integrationId"] for key, row in rt.tables.rows(INTEGRATIONS_TABLE, "claim").items()}


def assert_conflict_naming(exc: BaseException, integration_id: str, field: str = "syncAppId") -> None:
    """The 409 problem document every conflict has, naming `integration_id` and how to see it."""
    assert isinstance(exc, Conflict), repr(exc)
    doc = problem_from_domain(exc).to_json()
    assert (doc["type"], doc["title"], doc["status"]) == ("urn:memsync:problem:conflict", "Conflict", 409)
    [error] = doc["errors"]
    assert (error["field"], error["code"]) == (field, "alreadyRegistered")
    assert integration_id in error["message"]
    assert doc["detail"] == error["message"]
    assert f"GET /api/integrations/{integration_id}" in error["action"]


async def refused(call: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


def put_claim(rt: Any, home: str, app: str, integration_id: str, *, age: timedelta) -> None:
    MemoryTables.client(rt.tables, INTEGRATIONS_TABLE).rows[("claim", claim_key(home, app))] = (
        {"PartitionKey": "claim", "RowKey": claim_key(home, app), "integrationId": integration_id,
         "claimedAt": iso(datetime.now(UTC) - age)},
        'W/"planted"',
    )


def legacy(kind: IntegrationKind = IntegrationKind.MULTI_TENANT, **fields: Any) -> Integration:
    """An integration as a memsync without claims stored it: a record, no claim row."""
    home = {"partner_tenant_id": PARTNER_TENANT} if kind == IntegrationKind.MULTI_TENANT else {
        "tenant_id": PARTNER_TENANT}
    return Integration(id=str(uuid.uuid4()), kind=kind, display_name="before claims", sync_app_id=SYNC_APP,
                       created_at=datetime.now(UTC) - timedelta(days=30), **home, **fields)


# --- racing registrations ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [multi, single], ids=["multiTenant", "singleTenant"])
async def test_twenty_concurrent_identical_registrations_store_one_integration(make):
    rt = runtime()
    enqueue = Enqueued()
    results = await asyncio.gather(*(registration.register(rt, make(), enqueue=enqueue) for _ in range(20)),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, Integration)]
    lost = [r for r in results if not isinstance(r, Integration)]
    assert len(won) == 1, f"{len(won)} registrations succeeded"
    [winner] = won
    assert len(lost) == 19
    for exc in lost:
        assert_conflict_naming(exc, winner.id)
    assert list(integrations(rt)) == [winner.id]
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): winner.id}
    # The secrets were written once, for the winner only; the first sync queued once.
    roles = ["partner", "sync"] if winner.kind == IntegrationKind.MULTI_TENANT else ["sync"]
    assert sorted(rt.secrets.sets) == [f"memsync-{winner.id}-{role}" for role in roles]
    assert enqueue.calls == [(winner.id, "registration")]


async def test_the_same_apps_after_the_race_are_refused_naming_the_stored_integration():
    rt = runtime()
    first = await registration.register(rt, multi(), enqueue=Enqueued())
    exc = await refused(registration.register(rt, multi(displayName="again"), enqueue=Enqueued()))
    assert_conflict_naming(exc, first.id)
    assert "already registered" in str(exc)
    # Case does not make another pair: ids are GUIDs however they are spelled.
    exc = await refused(registration.register(rt, multi(syncAppId=SYNC_APP.upper()), enqueue=Enqueued()))
    assert_conflict_naming(exc, first.id)
    assert list(integrations(rt)) == [first.id]


async def test_another_sync_app_in_the_same_tenant_is_another_integration():
    rt = runtime()
    first = await registration.register(rt, single(), enqueue=Enqueued())
    second = await registration.register(rt, single(app_id=OTHER_APP, secret=OTHER_SECRET), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): first.id,
                          claim_key(PARTNER_TENANT, OTHER_APP): second.id}


# --- claims left behind -----------------------------------------------------------------------------


async def test_a_claim_left_by_a_registration_that_never_finished_is_taken_over():
    rt = runtime()
    crashed = str(uuid.uuid4())
    put_claim(rt, PARTNER_TENANT, SYNC_APP, crashed, age=registration.CLAIM_PENDING + timedelta(seconds=1))
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): integration.id}


async def test_a_young_claim_without_its_integration_is_a_registration_in_progress():
    rt = runtime()
    running = str(uuid.uuid4())
    put_claim(rt, PARTNER_TENANT, SYNC_APP, running, age=timedelta(seconds=5))
    exc = await refused(registration.register(rt, multi(), enqueue=Enqueued()))
    assert_conflict_naming(exc, running)
    assert "being registered" in str(exc)
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): running}
    assert integrations(rt) == {}
    assert rt.secrets.sets == []


async def test_racing_takeovers_of_a_stale_claim_give_one_winner():
    rt = runtime()
    put_claim(rt, PARTNER_TENANT, SYNC_APP, str(uuid.uuid4()), age=timedelta(hours=1))
    results = await asyncio.gather(*(registration.register(rt, multi(), enqueue=Enqueued()) for _ in range(20)),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, Integration)]
    assert len(won) == 1, f"{len(won)} registrations succeeded"
    for exc in results:
        if exc is not won[0]:
            assert_conflict_naming(exc, won[0].id)
    assert list(integrations(rt)) == [won[0].id]
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): won[0].id}


async def test_a_claim_naming_a_removed_integration_is_taken_over_at_once():
    rt = runtime()
    removed = await registration.register(rt, multi(), enqueue=Enqueued())
    await rt.integrations.update(removed.id, lambda c: c.model_copy(update={"status": IntegrationStatus.DISABLED}))
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): removed.id}  # as if its release had failed
    again = await registration.register(rt, multi(), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): again.id}


async def test_a_release_leaves_a_claim_another_registration_took_over():
    rt = runtime()
    store = rt.integrations
    assert await store.create_claim(PARTNER_TENANT, SYNC_APP, "first") is not None
    assert await store.create_claim(PARTNER_TENANT, SYNC_APP, "second") is None
    claim = await store.get_claim(PARTNER_TENANT, SYNC_APP)
    assert await store.replace_claim_if_unchanged(PARTNER_TENANT, SYNC_APP, "second", claim.etag) is not None
    # The first holder, late: its takeover and its release both leave the second's claim alone.
    assert await store.replace_claim_if_unchanged(PARTNER_TENANT, SYNC_APP, "first", claim.etag) is None
    assert await store.release_claim(PARTNER_TENANT, SYNC_APP, "first") is False
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): "second"}
    assert await store.release_claim(PARTNER_TENANT, SYNC_APP, "second") is True
    assert claims(rt) == {}


def test_a_registration_holds_its_claim_no_longer_than_the_host_lets_it_run():
    text = json.loads((ROOT / "host.json").read_text())["functionTimeout"]
    hours, minutes, seconds = (int(part) for part in re.fullmatch(r"(\d+):(\d+):(\d+)", text).groups())
    assert registration.CLAIM_PENDING >= timedelta(hours=hours, minutes=minutes, seconds=seconds)


# --- removal and failures release the claim ----------------------------------------------------------


@pytest.mark.parametrize("purge", [False, True])
async def test_removal_releases_the_claim(purge):
    rt = runtime()
    first = await registration.register(rt, single(), enqueue=Enqueued())
    await registration.remove_integration(rt, first.id, purge_assets=purge)
    assert claims(rt) == {}
    again = await registration.register(rt, single(), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): again.id}


async def test_refused_credentials_release_the_claim():
    rt = runtime()
    rt.tokens.secrets[SYNC_APP] = "another value"
    exc = await refused(registration.register(rt, single(), enqueue=Enqueued()))
    assert problem_from_domain(exc).status == 422
    assert claims(rt) == {}
    rt.tokens.secrets[SYNC_APP] = SYNC_SECRET
    integration = await registration.register(rt, single(), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): integration.id}


@pytest.mark.parametrize("failure", ["vault", "enqueue"])
async def test_a_registration_that_fails_after_the_claim_releases_it(failure):
    rt = runtime()
    rt.secrets.fail_set = failure == "vault"
    enqueue = Enqueued(ConnectionError("queue down") if failure == "enqueue" else None)
    with pytest.raises(ConnectionError):
        await registration.register(rt, multi(), enqueue=enqueue)
    assert claims(rt) == {}
    assert integrations(rt) == {}
    rt.secrets.fail_set = False
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): integration.id}


# --- integrations stored before claims existed --------------------------------------------------------


async def test_an_integration_without_a_claim_still_refuses_its_apps_and_gets_the_claim():
    rt = runtime()
    old = legacy()
    await rt.integrations.create_integration(old)
    exc = await refused(registration.register(rt, multi(), enqueue=Enqueued()))
    assert_conflict_naming(exc, old.id)
    assert list(integrations(rt)) == [old.id]
    assert rt.secrets.sets == []
    # The claim is made on the way, so the next registration meets it first.
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): old.id}
    await registration.remove_integration(rt, old.id, purge_assets=False)
    assert claims(rt) == {}
    await registration.register(rt, multi(), enqueue=Enqueued())


async def test_a_removed_integration_without_a_claim_does_not_block():
    rt = runtime()
    await rt.integrations.create_integration(legacy(status=IntegrationStatus.DISABLED))
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): integration.id}


# --- single tenants and the MSPs that cover them ------------------------------------------------------


async def customer_of(rt: Any, msp: Integration, **fields: Any) -> None:
    await rt.tenants.upsert_tenant(CustomerTenant(integration_id=msp.id, tenant_id=CUSTOMER, **fields))


async def test_a_single_tenant_an_msp_syncs_with_the_same_app_is_refused_naming_the_msp():
    rt = runtime()
    msp = await registration.register(rt, multi(), enqueue=Enqueued())
    await customer_of(rt, msp, status=TenantStatus.OK)
    exc = await refused(registration.register(rt, single(CUSTOMER), enqueue=Enqueued()))
    assert_conflict_naming(exc, msp.id, field="tenantId")
    assert CUSTOMER in str(exc)
    assert list(integrations(rt)) == [msp.id]
    assert claims(rt) == {claim_key(PARTNER_TENANT, SYNC_APP): msp.id}
    assert rt.secrets.sets == [f"memsync-{msp.id}-partner", f"memsync-{msp.id}-sync"]


@pytest.mark.parametrize(
    "case", ["excluded", "no longer listed", "msp removed", "other sync app", "not a customer"]
)
async def test_a_single_tenant_the_msp_does_not_sync_with_that_app_is_registered(case):
    rt = runtime()
    msp = await registration.register(rt, multi(), enqueue=Enqueued())
    fields: dict[str, Any] = {"status": TenantStatus.OK}
    if case == "excluded":
        fields["status"] = TenantStatus.EXCLUDED
    elif case == "no longer listed":
        fields["missing_since"] = datetime.now(UTC)
    if case != "not a customer":
        await customer_of(rt, msp, **fields)
    if case == "msp removed":
        await registration.remove_integration(rt, msp.id, purge_assets=False)
    app = (OTHER_APP, OTHER_SECRET) if case == "other sync app" else (SYNC_APP, SYNC_SECRET)
    integration = await registration.register(rt, single(CUSTOMER, *app), enqueue=Enqueued())
    assert integration.tenant_id == CUSTOMER


async def test_an_msp_over_a_registered_single_tenant_customer_is_allowed():
    rt = runtime()
    alone = await registration.register(rt, single(CUSTOMER), enqueue=Enqueued())
    msp = await registration.register(rt, multi(), enqueue=Enqueued())
    await customer_of(rt, msp, status=TenantStatus.PENDING)
    assert set(integrations(rt)) == {alone.id, msp.id}
