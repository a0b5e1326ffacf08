"""A memsync `Runtime` of in-memory parts (tables, vault) and a real httpx client whose transport is a
recording webhook receiver, plus a controllable clock."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.clients.keyvault import secret_name
from shared.clock import ManualClock
from shared.models import AppRole, Integration, IntegrationKind, SecretRef
from shared.runtime import Runtime
from shared.settings import load_settings
from shared.stores.alerts import Alert, AlertStore
from shared.stores.integrations import IntegrationStore, TenantStore
from shared.stores.tables import ALERTS_TABLE
from tests.unit.expiry.fakes import MemoryTables, MemoryVault

START = datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
WEBHOOK_URL = "https://hooks.example.test/workflows/abc?sig=webhook-signature-value"
PARTNER_TENANT = "11111111-1111-4111-8111-111111111111"
PARTNER_APP = "22222222-2222-4222-8222-222222222222"
SYNC_APP = "33333333-3333-4333-8333-333333333333"
SECRET_VALUE = "Zq9~unit.test-secret-value-1234567890"


@dataclass
class Receiver:
    """Answers webhook POSTs with the queued statuses (then 200) and records what it was sent."""

    statuses: list[int] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, text="ok" if status == 200 else "error")

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


class FakeTokens:
    """Stands in for TenantTokens; `error` makes it refuse like Entra would."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls: list[tuple[str, str, str]] = []

    async def get_token(self, tenant_id: str, app: Any, scope: str, *, fresh: bool = False) -> str:
        self.calls.append((tenant_id, app.app_id, scope))
        if self.error is not None:
            raise self.error
        return "header.eyJyb2xlcyI6WyJBcHBsaWNhdGlvbi5SZWFkLkFsbCJdfQ.signature"


@dataclass
class Env:
    rt: Runtime
    clock: ManualClock
    vault: MemoryVault
    tables: MemoryTables
    receiver: Receiver
    tokens: FakeTokens
    graph: list[httpx.Request] = field(default_factory=list)
    graph_handler: Any = None

    @property
    def alerts(self) -> AlertStore:
        return AlertStore(self.rt.tables)  # type: ignore[arg-type]

    def all_alerts(self) -> list[Alert]:
        table = self.tables.client(ALERTS_TABLE)
        return [Alert.model_validate_json(e["record"]) for e in table.rows.values()]

    async def add_integration(
        self, *, expires_in: timedelta | None = None, source: str = "assumed",
        roles: tuple[AppRole, ...] = (AppRole.SYNC,), value: str = SECRET_VALUE,
        display_name: str = "Contoso <MSP> & Co",
    ) -> Integration:
        """Registered like the registration service does: secret in the vault, SecretRef on the record.

        `expires_in=None` stores no date (source `assumed` with the registration's own guess).
        """
        integration_id = str(uuid.uuid4())
        now = self.clock.now()
        refs = []
        for role in roles:
            name = secret_name(integration_id, role)
            given = now + expires_in if expires_in is not None and source == "given" else None
            version = self.vault.put(name, value, created_on=now, expires_on=given)
            expires_on = given if given else now + timedelta(days=180)
            refs.append(SecretRef(name=name, role=role, app_id=PARTNER_APP if role is AppRole.PARTNER else SYNC_APP,
                                  expires_on=expires_on, expires_on_source="given" if given else "assumed",
                                  version=version))
        integration = Integration(
            id=integration_id, kind=IntegrationKind.MULTI_TENANT, display_name=display_name,
            partner_tenant_id=PARTNER_TENANT, partner_app_id=PARTNER_APP, sync_app_id=SYNC_APP,
            secrets=refs, created_at=now,
        )
        await self.rt.integrations.upsert_integration(integration)
        return integration


def make_env(fmt: str = "generic", *, webhook: bool = True) -> Env:
    environ = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "MEMSYNC_KEY_VAULT_URL": "https://memsync-test.vault.azure.net",
        "MEMSYNC_ALERT_WEBHOOK_FORMAT": fmt,
    }
    if webhook:
        environ["MEMSYNC_ALERT_WEBHOOK_URL"] = WEBHOOK_URL
    settings = load_settings(environ)
    receiver = Receiver()
    tables = MemoryTables()
    vault = MemoryVault()
    tokens = FakeTokens()
    env: Env

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.microsoft.com":
            env.graph.append(request)
            assert env.graph_handler is not None, "no Graph answer set for this test"
            return env.graph_handler(request)
        return receiver.handle(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(route))
    rt = Runtime(
        settings=settings, credential=None, tables=tables, integrations=IntegrationStore(tables),  # type: ignore[arg-type]
        tenants=TenantStore(tables), secrets=vault, queue=None, http=http, tokens=tokens,  # type: ignore[arg-type]
    )
    env = Env(rt=rt, clock=ManualClock(START), vault=vault, tables=tables, receiver=receiver, tokens=tokens)
    return env


@pytest.fixture
def env() -> Env:
    return make_env()


async def no_graph(rt: Any, integration: Any, ref: Any, stored: Any) -> None:
    """An expiry lookup for an app that may not read itself."""
    return
