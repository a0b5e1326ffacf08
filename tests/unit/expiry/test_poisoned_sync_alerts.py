"""A sync job whose last delivery fails (the host then moves it to `memsync-sync-poison`, where it stays)
raises a `syncPoisoned` alert naming the integration and tenant: once per tenant until it syncs again,
delivered at once, resolved by the expiry check after the tenant's next successful sync. The worker raises
it (shared.services.tenant_sync; the last-delivery test is in tests/unit/sync/test_tenant_sync.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from shared.clients.webhook import webhook_body
from shared.models import CustomerTenant, Integration, TenantStatus
from shared.services.alerting import raise_poisoned_sync_alert
from shared.services.expiry import check_secret_expiry
from shared.stores.alerts import AlertKind, AlertStatus
from shared.stores.queues import SyncJob
from tests.unit.expiry.conftest import Env, no_graph

pytestmark = pytest.mark.unit

TENANT = "8f3c2a1e-0b6d-4c5e-9a7f-1d2e3f4a5b6c"


def job(integration: Integration, tenant_id: str = TENANT, run_id: str | None = None) -> SyncJob:
    return SyncJob.model_validate({"integrationId": integration.id, "tenantId": tenant_id,
                                   "runId": run_id or str(uuid.uuid4()), "trigger": "schedule"})


async def _with_tenant(env: Env) -> Integration:
    integration = await env.add_integration(expires_in=timedelta(days=300), source="given")
    await env.rt.tenants.upsert_tenant(CustomerTenant(
        integration_id=integration.id, tenant_id=TENANT, display_name="Northwind Traders", status=TenantStatus.ERROR))
    return integration


async def test_a_poisoned_job_raises_one_alert_naming_the_integration_and_tenant(env: Env) -> None:
    integration = await _with_tenant(env)
    first = job(integration)
    await raise_poisoned_sync_alert(env.rt, first, clock=env.clock)

    (alert,) = env.all_alerts()
    assert alert.kind is AlertKind.SYNC_POISONED and alert.status is AlertStatus.OPEN
    assert (alert.integration_id, alert.tenant_id) == (integration.id, TENANT)
    assert "Northwind Traders" in alert.message and TENANT in alert.message and integration.id in alert.message
    assert first.run_id in alert.message and "memsync-sync-poison" in alert.message
    assert f"POST /api/integrations/{integration.id}/sync" in alert.action and TENANT in alert.action
    (sent,) = env.receiver.bodies  # delivered at once
    assert sent["kind"] == "syncPoisoned" and sent["tenantId"] == TENANT and alert.delivered

    # The scheduled sync's next job for the tenant is poisoned too: the same alert, no second message.
    await raise_poisoned_sync_alert(env.rt, job(integration), clock=env.clock)
    assert len(env.all_alerts()) == 1 and len(env.receiver.bodies) == 1


async def test_the_check_resolves_it_once_the_tenant_synced_and_a_new_poisoning_alerts_again(env: Env) -> None:
    integration = await _with_tenant(env)
    first = await raise_poisoned_sync_alert(env.rt, job(integration), clock=env.clock)
    assert first is not None

    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert env.all_alerts()[0].status is AlertStatus.OPEN  # not synced since

    env.clock.advance(timedelta(hours=6))
    await env.rt.tenants.update(integration.id, TENANT, lambda t: t.model_copy(update={
        "status": TenantStatus.OK, "last_success_at": env.clock.now()}))
    env.clock.advance(timedelta(hours=1))
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (resolved,) = env.all_alerts()
    assert report.alerts_resolved == 1 and resolved.status is AlertStatus.RESOLVED
    assert (resolved.resolved_reason or "").startswith("the tenant synced successfully")

    second = await raise_poisoned_sync_alert(env.rt, job(integration), clock=env.clock)
    assert second is not None and second.id != first.id and second.status is AlertStatus.OPEN


async def test_deleting_the_integration_resolves_it(env: Env) -> None:
    integration = await _with_tenant(env)
    await raise_poisoned_sync_alert(env.rt, job(integration), clock=env.clock)
    await env.rt.integrations.delete_integration(integration.id)
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (alert,) = env.all_alerts()
    assert alert.status is AlertStatus.RESOLVED and alert.resolved_reason == "integration deleted"


async def test_jobs_naming_nothing_of_ours_raise_nothing(env: Env) -> None:
    integration = await _with_tenant(env)
    stranger = integration.model_copy(update={"id": str(uuid.uuid4())})
    assert await raise_poisoned_sync_alert(env.rt, job(stranger), clock=env.clock) is None
    other_tenant = "0b6d8f3c-2a1e-4c5e-9a7f-1d2e3f4a5b6c"
    assert await raise_poisoned_sync_alert(env.rt, job(integration, other_tenant), clock=env.clock) is None
    assert env.all_alerts() == []


async def test_the_webhook_card_names_the_tenant_not_an_expiry(env: Env) -> None:
    integration = await _with_tenant(env)
    alert = await raise_poisoned_sync_alert(env.rt, job(integration), clock=env.clock)
    assert alert is not None
    card = webhook_body(alert, "teams")["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts == {"Integration": f"{integration.display_name} ({integration.id})", "Tenant": TENANT,
                     "Alert ID": alert.id}
    assert card["body"][0]["text"].startswith("Tenant sync failed repeatedly: ")
