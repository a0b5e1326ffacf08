"""`TenantSync` on its own: Microsoft's APIs answered by an `httpx.MockTransport`, Table Storage in memory
(`tests.unit.memtables`), the real stores, clients, mappers and listing loop in between.

The integration tests drive the same code through the Functions host, Azurite and the cloud simulator;
these pin the listing loop's rules exactly and run in milliseconds: pages followed to the end, each
record diffed against the stored state, a record gone from a complete listing marked removed, nothing
removed after an incomplete one, an unreadable record kept and counted, Defender joined by Entra device id.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import shared.entities
import shared.services.tenant_sync
import shared.stores.assets
from devstack.cloudsim.generate import generate_detected_apps, generate_devices, machine_for_device
from shared.auth import AppCredential
from shared.clients.apis import Apis
from shared.clients.keyvault import secret_name
from shared.entities import Entity, Source
from shared.errors import ActionableError, ErrorCode
from shared.http import Budget, CallStats
from shared.mapping.changes import stamp
from shared.models import AppRole, CustomerTenant, Integration, IntegrationKind, SecretRef, TenantStatus
from shared.ratelimit import RateLimits
from shared.services.tenant_sync import MAX_DELIVERIES, TenantSync, TransientSyncError, sync_tenant
from shared.settings import load_settings
from shared.stores.assets import AssetStore, partition_key
from shared.stores.device_software import DeviceSoftwareStore
from shared.stores.integrations import IntegrationStore, TenantStore
from shared.stores.queues import SyncJob
from shared.stores.tables import ALERTS_TABLE, DEVICES_TABLE, RUNS_TABLE, SOFTWARE_TABLE
from tests.unit.api.fakes import ALL_ROLES, FakeSecrets, jwt_with_roles
from tests.unit.memtables import MemoryTables

pytestmark = pytest.mark.unit

TENANT = "3f1c2a55-7d0e-4c1b-9a77-5b0f2f6c9e01"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SETTINGS = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                          "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"})
GRAPH = "https://graph.microsoft.com/v1.0"
INTEGRATION = Integration(id="a0000000-0000-4000-8000-000000000001", kind=IntegrationKind.SINGLE_TENANT,
                          display_name="Contoso", tenant_id=TENANT, sync_app_id="b0000000-0000-4000-8000-0000000000b1",
                          created_at=NOW)
APP = AppCredential(app_id=INTEGRATION.sync_app_id, secret=SecretStr("not-a-real-secret"), label="sync app")


@dataclass
class Tokens:
    roles: list[str] = field(default_factory=lambda: list(ALL_ROLES))
    asked: list[str] = field(default_factory=list)

    async def get_token(self, tenant_id: str, app: AppCredential, scope: str, *, fresh: bool = False) -> str:
        self.asked.append(scope)
        return jwt_with_roles(self.roles)


@dataclass
class Microsoft:
    """Graph and Defender for one tenant, paged as they page; `fail` maps a request number to a status."""

    devices: list[dict[str, Any]]
    apps: list[dict[str, Any]]
    machines: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    fail_device_page: int | None = None  # the device page (0-based) that answers 403
    requests: list[httpx.Request] = field(default_factory=list)

    def _page(self, request: httpx.Request, items: list[dict[str, Any]], path: str) -> httpx.Response:
        start = int(request.url.params.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": items[start:start + self.page_size]}
        if start + self.page_size < len(items):
            body["@odata.nextLink"] = f"{GRAPH}{path}?$skiptoken={start + self.page_size}"
        return httpx.Response(200, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"].startswith("Bearer ")
        path = request.url.path
        if request.url.host == "graph.microsoft.com":
            if path == "/v1.0/deviceManagement/managedDevices":
                page = int(request.url.params.get("$skiptoken", "0")) // self.page_size
                if page == self.fail_device_page:
                    return httpx.Response(403, json={"error": {"code": "Forbidden", "message": "denied"}})
                return self._page(request, self.devices, "/deviceManagement/managedDevices")
            if path == "/v1.0/deviceManagement/detectedApps":
                return self._page(request, self.apps, "/deviceManagement/detectedApps")
            if path == "/v1.0/organization":
                return httpx.Response(200, json={"value": [{"id": TENANT, "displayName": "Contoso Ltd",
                                                            "verifiedDomains": [{"name": "contoso.com",
                                                                                 "isDefault": True}]}]})
        if request.url.host == "api.security.microsoft.com" and path == "/api/machines":
            return httpx.Response(200, json={"value": self.machines})
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": path}})


def _estate(count: int = 5, apps: int = 4) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    _, devices = generate_devices(random.Random(7), "contoso.com", NOW, count, "CT")
    detected, _ = generate_detected_apps(random.Random(7), devices, apps)
    return devices, detected


class Harness:
    def __init__(self, microsoft: Microsoft, *, defender: bool = False) -> None:
        self.microsoft = microsoft
        self.tables = MemoryTables()
        self.tokens = Tokens()
        self.integration = INTEGRATION.model_copy(update={"include_defender": defender})

    async def sync(self, at: datetime = NOW) -> tuple[TenantSync, Any]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.microsoft))
        apis = Apis(SETTINGS, http, self.tokens, RateLimits())

        async def credential() -> AppCredential:
            return APP

        sync = TenantSync(apis, credential, self.integration, TENANT, CallStats(), Budget(60), stamp(at),
                          AssetStore(self.tables), DeviceSoftwareStore(self.tables), with_inventory=False)
        try:
            return sync, await sync.run()
        finally:
            await http.aclose()

    def rows(self, table: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.tables.rows(table, partition_key(INTEGRATION.id, TENANT)).items()
                if not k.startswith("~")}


async def test_every_page_is_followed_and_every_record_stored_once():
    devices, apps = _estate(5, 4)
    harness = Harness(Microsoft(devices, apps, page_size=2))

    sync, (listed_devices, listed_apps) = await harness.sync()

    stored = harness.rows(DEVICES_TABLE)
    assert set(stored) == {d["id"] for d in devices}
    assert set(harness.rows(SOFTWARE_TABLE)) == {a["id"] for a in apps}
    assert listed_devices.diff.counts.added == 5 and listed_apps.diff.counts.added == 4
    device_pages = [r for r in harness.microsoft.requests if r.url.path.endswith("/managedDevices")]
    assert len(device_pages) == 3  # 2 + 2 + 1
    assert {d["serialNumber"] for d in devices} == {row.get("serialNumber") for row in stored.values()}
    assert sync.display_name == "Contoso Ltd" and sync.default_domain_name == "contoso.com"
    assert sync.stats.by_service.get("intuneDevices") == 3


async def test_an_unchanged_second_listing_writes_nothing_and_a_missing_device_is_marked_removed():
    devices, apps = _estate(5, 4)
    harness = Harness(Microsoft(devices, apps))
    await harness.sync()
    written = harness.tables.client(DEVICES_TABLE).transactions

    _, (unchanged, _) = await harness.sync(datetime(2026, 11, 1, 18, 0, tzinfo=UTC))
    assert unchanged.diff.counts.added == 0 and unchanged.diff.counts.removed == 0
    assert harness.tables.client(DEVICES_TABLE).transactions == written

    gone = devices.pop(1)
    _, (after, _) = await harness.sync(datetime(2026, 11, 2, 0, 0, tzinfo=UTC))
    assert after.diff.counts.removed == 1
    assert harness.rows(DEVICES_TABLE)[gone["id"]].get("removedAt") == datetime(2026, 11, 2, tzinfo=UTC)  # a DateTime
    assert all(not row.get("removedAt") for rk, row in harness.rows(DEVICES_TABLE).items() if rk != gone["id"])


async def test_a_listing_that_fails_half_way_stores_what_it_read_and_removes_nothing():
    devices, apps = _estate(6, 2)
    harness = Harness(Microsoft(devices, apps))
    await harness.sync()
    devices[0] = {**devices[0], "deviceName": "renamed"}
    harness.microsoft.fail_device_page = 1  # four devices go unseen: the second page fails

    with pytest.raises(BaseExceptionGroup) as failed:
        await harness.sync(datetime(2026, 11, 3, tzinfo=UTC))

    errors = [e for e in failed.value.exceptions if isinstance(e, ActionableError)]
    assert [e.code for e in errors] == [ErrorCode.INTUNE_NOT_LICENSED]  # a 403 with the role granted
    stored = harness.rows(DEVICES_TABLE)
    assert stored[devices[0]["id"]].get("deviceName") == "renamed"  # what was read is stored
    assert all(not row.get("removedAt") for row in stored.values())  # and nothing is removed


async def test_an_unreadable_record_keeps_its_stored_copy_and_is_counted_skipped():
    devices, apps = _estate(3, 1)
    harness = Harness(Microsoft(devices, apps))
    await harness.sync()
    before = dict(harness.rows(DEVICES_TABLE)[devices[0]["id"]])
    devices[0] = {**devices[0], "isEncrypted": "true", "deviceName": "renamed"}

    _, (listed, _) = await harness.sync(datetime(2026, 11, 4, tzinfo=UTC))

    assert listed.diff.counts.skipped == 1 and listed.diff.counts.removed == 0
    assert "isEncrypted" in json.dumps(listed.diff.skipped_reasons())
    kept = harness.rows(DEVICES_TABLE)[devices[0]["id"]]
    assert kept.get("deviceName") == before.get("deviceName") and not kept.get("removedAt")


async def test_defender_machines_join_their_devices_by_entra_device_id():
    devices, apps = _estate(4, 1)
    machines = [machine_for_device(random.Random(n), d, NOW) for n, d in enumerate(devices[:2])]
    harness = Harness(Microsoft(devices, apps, machines=machines), defender=True)

    _, (listed, _) = await harness.sync()

    assert listed.joined == 2
    stored = harness.rows(DEVICES_TABLE)
    joined = {rk for rk, row in stored.items() if row.get("defenderMachineId")}
    assert joined == {d["id"] for d in devices[:2]}
    assert harness.tokens.asked.count(SETTINGS.cloud.defender_scope) >= 1


async def test_a_token_without_the_devices_permission_stops_before_any_read():
    devices, apps = _estate(2, 1)
    harness = Harness(Microsoft(devices, apps))
    harness.tokens.roles = ["Organization.Read.All"]

    with pytest.raises(ActionableError) as refused:
        await harness.sync()

    assert "DeviceManagementManagedDevices.Read.All" in refused.value.info.message + refused.value.info.action
    assert harness.microsoft.requests == []
    assert harness.rows(DEVICES_TABLE) == {}


# -- the job around it: lease, status, and the last delivery of a job that keeps crashing ----------


class Crash(Exception):
    """A bug memsync did not foresee (here: the transport itself raising)."""


async def _runtime(microsoft: Any) -> SimpleNamespace:
    tables = MemoryTables()
    integration = INTEGRATION.model_copy(update={"include_defender": False, "secrets": [
        SecretRef(name=secret_name(INTEGRATION.id, AppRole.SYNC), role=AppRole.SYNC, app_id=APP.app_id)]})
    rt = SimpleNamespace(settings=SETTINGS, tables=tables, integrations=IntegrationStore(tables),
                         tenants=TenantStore(tables), secrets=FakeSecrets(),
                         apis=Apis(SETTINGS, httpx.AsyncClient(transport=httpx.MockTransport(microsoft)),
                                   Tokens(), RateLimits()))
    await rt.secrets.set_secret(secret_name(INTEGRATION.id, AppRole.SYNC), APP.secret, expires_on=None, tags={})
    await rt.integrations.create_integration(integration)
    await rt.tenants.create_if_absent(CustomerTenant(integration_id=INTEGRATION.id, tenant_id=TENANT))
    return rt


def _job() -> SyncJob:
    return SyncJob.model_validate({"integrationId": INTEGRATION.id, "tenantId": TENANT, "runId": "run-1",
                                   "trigger": "schedule"})


def test_the_last_delivery_matches_host_json():
    host = json.loads((Path(__file__).resolve().parents[3] / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DELIVERIES


async def test_a_crash_before_the_last_delivery_leaves_the_lease_for_the_redelivery():
    def crash(request: httpx.Request) -> httpx.Response:
        raise Crash("unforeseen")

    rt = await _runtime(crash)
    with pytest.raises(Crash):
        await sync_tenant(rt, _job(), attempt=1, export_max_wait=0)  # type: ignore[arg-type]
    tenant = await rt.tenants.get_tenant(INTEGRATION.id, TENANT)
    assert tenant is not None and tenant.status == TenantStatus.SYNCING and tenant.lease_id


async def test_a_crash_on_the_last_delivery_ends_the_tenant_in_error_with_the_reason_and_an_action():
    def crash(request: httpx.Request) -> httpx.Response:
        raise Crash("customer text that must not be quoted")

    rt = await _runtime(crash)
    with pytest.raises(Crash):  # the host still sees the failure and poisons the message
        await sync_tenant(rt, _job(), attempt=MAX_DELIVERIES, export_max_wait=0)  # type: ignore[arg-type]

    tenant = await rt.tenants.get_tenant(INTEGRATION.id, TENANT)
    assert tenant is not None and tenant.status == TenantStatus.ERROR and tenant.lease_id is None
    assert tenant.error is not None and tenant.error.code == ErrorCode.INTERNAL.value
    assert "Crash" in tenant.error.message and "memsync-sync-poison" in tenant.error.message
    assert "run-1" in tenant.error.action and "customer text" not in tenant.error.message + tenant.error.action
    runs = rt.tables.rows(RUNS_TABLE)
    assert [json.loads(r["record"])["status"] for r in runs.values()] == ["error"]
    # The host moves the message to memsync-sync-poison (where it stays); the alert names the tenant.
    [alert] = [json.loads(r["record"]) for r in rt.tables.rows(ALERTS_TABLE, INTEGRATION.id).values()]
    assert alert["kind"] == "syncPoisoned" and alert["tenantId"] == TENANT and "run-1" in alert["message"]


async def test_only_the_last_delivery_that_fails_raises_the_poisoned_sync_alert():
    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "ServiceUnavailable", "message": "later"}})

    rt = await _runtime(unavailable)
    with pytest.raises(TransientSyncError):  # the host retries the message
        await sync_tenant(rt, _job(), attempt=1, budget_seconds=1.0, export_max_wait=0)  # type: ignore[arg-type]
    assert rt.tables.rows(ALERTS_TABLE, INTEGRATION.id) == {}
    with pytest.raises(TransientSyncError):  # the last delivery: the host poisons it after this
        await sync_tenant(rt, _job(), attempt=MAX_DELIVERIES, budget_seconds=1.0,  # type: ignore[arg-type]
                          export_max_wait=0)
    [alert] = [json.loads(r["record"]) for r in rt.tables.rows(ALERTS_TABLE, INTEGRATION.id).values()]
    assert alert["kind"] == "syncPoisoned" and alert["status"] == "open" and alert["tenantId"] == TENANT


# -- an optional entity beyond devices and software: read by the same loop, or left out with a note ----


def _map_widget(raw: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    return {"id": raw["id"], "tenantId": tenant_id, "name": raw.get("name")}


@pytest.fixture
def widgets(monkeypatch: pytest.MonkeyPatch) -> Entity:
    """A made-up optional Graph collection, declared as a real entity would be."""
    monkeypatch.setattr(shared.entities, "OPTIONAL_AREAS", ("exports",))
    widget = Entity(name="widgets", table="memsyncWidgets", summary="Widgets.",
                    source=Source("graph", "/deviceManagement/widgets", ("id", "name")),
                    permission_area="exports", rate_limit_area="intuneApps", fields=("id", "tenantId", "name"),
                    mapper=_map_widget, optional=True)
    monkeypatch.setitem(shared.entities.ENTITIES, "widgets", widget)
    monkeypatch.setattr(shared.stores.assets, "LISTED", (*shared.entities.LISTED, widget))
    monkeypatch.setattr(shared.services.tenant_sync, "OTHER_LISTED", (widget,))
    return widget


class WithWidgets(Microsoft):
    widget_status: int = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/deviceManagement/widgets":
            self.requests.append(request)
            if self.widget_status != 200:
                return httpx.Response(self.widget_status, json={"error": {"code": "Forbidden", "message": "no"}})
            return httpx.Response(200, json={"value": [{"id": "w1", "name": "one"}, {"id": "w2", "name": "two"}]})
        return super().__call__(request)


async def test_an_optional_entity_is_listed_stored_and_counted_like_the_others(widgets):
    devices, apps = _estate(2, 1)
    harness = Harness(WithWidgets(devices, apps))

    sync, _ = await harness.sync()

    assert sync.listings["widgets"].diff.counts.added == 2 and sync.entity_notes == []
    assert set(harness.rows("memsyncWidgets")) == {"w1", "w2"}


async def test_an_optional_entity_without_its_permission_is_a_note_and_the_sync_goes_on(widgets):
    devices, apps = _estate(2, 1)
    harness = Harness(WithWidgets(devices, apps))
    harness.tokens.roles = [r for r in ALL_ROLES if r != "DeviceManagementApps.Read.All"]

    sync, (listed, _) = await harness.sync()

    assert listed.diff.counts.added == 2 and "widgets" not in sync.listings
    [note] = sync.entity_notes
    assert note.code == ErrorCode.PERMISSION_MISSING and note.message.startswith("widgets not collected")
    assert "DeviceManagementApps.Read.All" in note.message + note.action
    assert not [r for r in harness.microsoft.requests if r.url.path.endswith("/widgets")]


async def test_an_optional_entity_microsoft_refuses_keeps_its_rows_and_is_a_note(widgets):
    devices, apps = _estate(2, 1)
    microsoft = WithWidgets(devices, apps)
    harness = Harness(microsoft)
    await harness.sync()
    microsoft.widget_status = 403

    sync, _ = await harness.sync(datetime(2026, 11, 5, tzinfo=UTC))

    [note] = sync.entity_notes  # Graph's 403 says what it says about the read; the sync goes on without it
    assert note.message.startswith("widgets not collected") and note.code == ErrorCode.PERMISSION_MISSING
    assert all(not row.get("removedAt") for row in harness.rows("memsyncWidgets").values())
