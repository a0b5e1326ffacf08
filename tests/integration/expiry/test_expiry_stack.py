"""Secret expiry against real Azurite tables and the simulator's Key Vault, Entra and Graph.

Service-level: each test builds its integration straight into the stores (the registration API is
another area's), runs `check_secret_expiry` / `raise_credential_alert` in this process with the stack's
settings, and reads the results back from Azurite. Webhooks are real aiohttp receivers on 127.0.0.1.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from shared.auth import AppCredential
from shared.clients.keyvault import secret_name
from shared.clock import ManualClock
from shared.errors import ActionableError, ErrorCode
from shared.models import AppRole, Integration, IntegrationKind, IntegrationStatus, SecretRef
from shared.services.alerting import raise_credential_alert
from shared.services.expiry import check_secret_expiry
from shared.stores.alerts import Alert, AlertKind, AlertStore

pytestmark = pytest.mark.integration
SCENARIO = "demo"


@dataclass
class Receiver:
    """A webhook receiver: answers the queued statuses (then 200) and keeps every body it was sent."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        self.bodies.append(await request.text())
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "failed")

    def about(self, integration_id: str) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.bodies if integration_id in b]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield found
    finally:
        await runner.cleanup()


def _use_webhook(rt: Any, receiver: Receiver, fmt: str) -> None:
    rt.settings = rt.settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url),
                                                 "alert_webhook_format": fmt})


def _app(scenario: dict[str, Any], key: str) -> dict[str, Any]:
    return next(a for a in scenario["apps"] if a["key"] == key)


async def _integration(rt: Any, *, tenant_id: str, app_id: str, value: str) -> Integration:
    """An integration whose sync app is `app_id`, its secret stored as registration would (no date)."""
    integration_id = str(uuid.uuid4())
    name = secret_name(integration_id, AppRole.SYNC)
    version = await rt.secrets.set_secret(name, SecretStr(value), expires_on=None,
                                          tags={"integrationId": integration_id, "role": "sync", "appId": app_id})
    now = datetime.now(UTC)
    integration = Integration(
        id=integration_id, kind=IntegrationKind.SINGLE_TENANT, display_name=f"Expiry test {integration_id[:8]}",
        tenant_id=tenant_id, sync_app_id=app_id, include_defender=False, created_at=now,
        secrets=[SecretRef(name=name, role=AppRole.SYNC, app_id=app_id, expires_on=now + timedelta(days=180),
                           expires_on_source="assumed", version=version)],
    )
    await rt.integrations.upsert_integration(integration)
    return integration


async def _alerts(rt: Any, integration_id: str) -> list[Alert]:
    return [a for a, _ in await AlertStore(rt.tables).list_secret_alerts(integration_id, AppRole.SYNC)]


async def _ref(rt: Any, integration_id: str) -> SecretRef:
    stored = await rt.integrations.get_integration(integration_id)
    assert stored is not None
    ref = stored.secret(AppRole.SYNC)
    assert ref is not None
    return ref


async def _new_sim_secret(stack: Any, app_id: str, days: float) -> dict[str, Any]:
    with stack.sim() as sim:
        response = sim.post(f"/apps/{app_id}/secrets", json={"expiresInDays": days, "displayName": "expiry test"})
        response.raise_for_status()
        return dict(response.json())


async def test_graph_read_expiry_raises_the_crossed_marks(stack, scenario, runtime) -> None:
    app = _app(scenario, "sync-app")
    secret = await _new_sim_secret(stack, app["appId"], 10)  # Graph will say: 10 days left
    integration = await _integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])

    report = await check_secret_expiry(runtime, clock=ManualClock(datetime.now(UTC)))

    assert not [f for f in report.failures if integration.id in f]
    ref = await _ref(runtime, integration.id)
    assert ref.expires_on_source == "graph"
    assert ref.expires_on == datetime.fromisoformat(secret["endDateTime"].replace("Z", "+00:00"))
    alerts = await _alerts(runtime, integration.id)
    assert sorted(a.mark for a in alerts if a.mark is not None) == [14, 30]
    assert all(a.expires_on_source == "graph" and a.days_left == 10 for a in alerts)


async def test_assumed_expiry_when_the_app_may_not_read_itself(stack, scenario, runtime) -> None:
    # The host identity's app has no Application.Read.All in its home tenant: Graph answers 403.
    host = scenario["hostIdentity"]
    integration = await _integration(runtime, tenant_id=host["tenantId"], app_id=host["clientId"],
                                     value=host["clientSecret"])
    clock = ManualClock(datetime.now(UTC))
    await check_secret_expiry(runtime, clock=clock)
    ref = await _ref(runtime, integration.id)
    assert ref.expires_on_source == "assumed"
    stored = await runtime.secrets.get_properties(ref.name)
    assert ref.expires_on == stored.created_on + timedelta(days=180)
    assert await _alerts(runtime, integration.id) == []

    clock.advance(timedelta(days=170))  # 10 days left, by the assumption
    await check_secret_expiry(runtime, clock=clock)
    alerts = await _alerts(runtime, integration.id)
    assert sorted(a.mark for a in alerts) == [14, 30]
    assert all("assumed" in a.message and a.expires_on_source == "assumed" for a in alerts)


async def test_an_expired_secret_found_at_sync_time_alerts_at_once(stack, scenario, runtime, receiver) -> None:
    _use_webhook(runtime, receiver, "generic")
    app = _app(scenario, "sync-app")
    secret = await _new_sim_secret(stack, app["appId"], -1)
    integration = await _integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])
    credential = AppCredential(app["appId"], SecretStr(secret["value"]), "sync app")
    with pytest.raises(ActionableError) as caught:
        await runtime.tokens.get_token(app["homeTenantId"], credential, runtime.settings.cloud.graph_scope)
    assert caught.value.code is ErrorCode.SECRET_EXPIRED

    alert = await raise_credential_alert(runtime, integration, AppRole.SYNC, caught.value)

    assert alert is not None and alert.kind is AlertKind.SECRET_EXPIRED and alert.delivered
    stored = await runtime.integrations.get_integration(integration.id)
    assert stored.status is IntegrationStatus.ERROR and stored.error.code == "secretExpired"
    (body,) = receiver.about(integration.id)
    assert body["kind"] == "secretExpired" and body["integrationId"] == integration.id
    assert secret["value"] not in "".join(receiver.bodies)


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("generic", lambda b: b["kind"] == "secretExpiring" and b["daysLeft"] == 20),
        ("teams", lambda b: b["type"] == "message"
         and b["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"),
        ("slack", lambda b: isinstance(b["text"], str) and b["blocks"][0]["type"] == "header"),
    ],
)
async def test_each_webhook_format_reaches_a_real_receiver(
    stack, scenario, runtime, receiver, fmt: str, check: Callable[[dict[str, Any]], bool]
) -> None:
    _use_webhook(runtime, receiver, fmt)
    app = _app(scenario, "sync-app")
    secret = await _new_sim_secret(stack, app["appId"], 20)
    integration = await _integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])
    await check_secret_expiry(runtime, clock=ManualClock(datetime.now(UTC)))
    (body,) = receiver.about(integration.id)
    assert check(body)
    assert secret["value"] not in json.dumps(body) and secret["hint"] not in json.dumps(body)


async def test_a_failing_webhook_recovers_and_delivers_exactly_once(stack, scenario, runtime, receiver) -> None:
    _use_webhook(runtime, receiver, "teams")
    app = _app(scenario, "sync-app")
    secret = await _new_sim_secret(stack, app["appId"], 25)
    integration = await _integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])
    receiver.statuses = [500] * 20  # everything fails on the first run
    clock = ManualClock(datetime.now(UTC))
    await check_secret_expiry(runtime, clock=clock)
    (alert,) = await _alerts(runtime, integration.id)
    assert not alert.delivered and alert.last_delivery_error == "HTTP 500"

    receiver.statuses = []
    clock.advance(timedelta(hours=24))
    await check_secret_expiry(runtime, clock=clock)
    await check_secret_expiry(runtime, clock=clock)
    (alert,) = await _alerts(runtime, integration.id)
    assert alert.delivered
    assert len(receiver.about(integration.id)) == 2  # the failed attempt, then the one delivery
