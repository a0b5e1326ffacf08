"""Helpers of the expiry integration tests: a real webhook receiver, integrations stored straight into the
stores the way registration leaves them, secrets created in the simulator, alerts read back from Azurite."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from shared.clients.keyvault import secret_name
from shared.models import AppRole, Integration, IntegrationKind, SecretRef
from shared.stores.alerts import Alert, AlertStore


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


def use_webhook(rt: Any, receiver: Receiver, fmt: str) -> None:
    rt.settings = rt.settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url),
                                                 "alert_webhook_format": fmt})


def app_of(scenario: dict[str, Any], key: str) -> dict[str, Any]:
    return next(a for a in scenario["apps"] if a["key"] == key)


async def stored_integration(rt: Any, *, tenant_id: str, app_id: str, value: str) -> Integration:
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


async def secret_alerts(rt: Any, integration_id: str) -> list[Alert]:
    return [a for a, _ in await AlertStore(rt.tables).list_secret_alerts(integration_id, AppRole.SYNC)]


async def secret_ref(rt: Any, integration_id: str) -> SecretRef:
    stored = await rt.integrations.get_integration(integration_id)
    assert stored is not None
    ref = stored.secret(AppRole.SYNC)
    assert ref is not None
    return ref


async def new_sim_secret(stack: Any, app_id: str, days: float) -> dict[str, Any]:
    with stack.sim() as sim:
        response = sim.post(f"/apps/{app_id}/secrets", json={"expiresInDays": days, "displayName": "expiry test"})
        response.raise_for_status()
        return dict(response.json())
