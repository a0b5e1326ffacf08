"""raise_credential_alert (a sync or registration met AADSTS7000222/7000215) and resolve_secret_alerts
(a successful rotation)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import from_aadsts, permission_missing
from shared.models import AppRole, IntegrationStatus
from shared.services.alerting import raise_credential_alert, resolve_secret_alerts
from shared.services.expiry import check_secret_expiry
from shared.stores.alerts import AlertKind, AlertStatus
from tests.unit.expiry.conftest import PARTNER_TENANT, SYNC_APP, Env, no_graph

pytestmark = pytest.mark.unit


def expired_error():
    return from_aadsts(7000222, app_id=SYNC_APP, tenant_id=PARTNER_TENANT, app_label="sync app")


async def test_an_expired_secret_met_by_a_sync_alerts_at_once_and_marks_the_integration(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=90), source="given")
    alert = await raise_credential_alert(env.rt, integration, AppRole.SYNC, expired_error(), clock=env.clock)

    assert alert is not None and alert.kind is AlertKind.SECRET_EXPIRED
    assert alert.days_left == 90  # whatever the calendar says, Entra said expired
    assert alert.integration_id == integration.id and alert.app_id == SYNC_APP
    assert f"PUT /api/integrations/{integration.id}/secrets" in alert.action
    assert "{id}" not in alert.action
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None and stored.status is IntegrationStatus.ERROR
    assert stored.error is not None and stored.error.code == "secretExpired"
    # delivered at once
    assert [b["id"] for b in env.receiver.bodies] == [alert.id]
    assert alert.delivered


async def test_the_same_failure_again_raises_nothing_new(env: Env) -> None:
    integration = await env.add_integration()
    first = await raise_credential_alert(env.rt, integration, AppRole.SYNC, expired_error(), clock=env.clock)
    env.clock.advance(timedelta(hours=6))
    again = await raise_credential_alert(env.rt, integration, AppRole.SYNC, expired_error(), clock=env.clock)
    assert first is not None and again is not None and again.id == first.id
    assert len(env.all_alerts()) == 1 and len(env.receiver.requests) == 1


async def test_the_timers_expiry_mark_and_the_syncs_expired_alert_are_one_alert(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=1), source="given")
    await raise_credential_alert(env.rt, integration, AppRole.SYNC, expired_error(), clock=env.clock)
    env.clock.advance(timedelta(days=2))
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    # mark 0 is the alert the sync already raised; no earlier mark is raised beside it
    (alert,) = env.all_alerts()
    assert alert.mark is None and alert.kind is AlertKind.SECRET_EXPIRED and alert.status is AlertStatus.OPEN
    assert len(env.receiver.requests) == 1


async def test_entras_refusal_supersedes_the_open_calendar_alert(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=5), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (seven,) = env.all_alerts()
    assert seven.mark == 7

    invalid = from_aadsts(7000215, app_id=SYNC_APP, tenant_id=PARTNER_TENANT, app_label="sync app")
    alert = await raise_credential_alert(env.rt, integration, AppRole.SYNC, invalid, clock=env.clock)
    assert alert is not None and alert.kind is AlertKind.SECRET_INVALID
    by_id = {a.id: a for a in env.all_alerts()}
    assert by_id[seven.id].status is AlertStatus.RESOLVED
    assert by_id[seven.id].resolved_reason == "superseded: Entra ID refuses the secret as not valid"

    # Later marks do not reopen the noise while Entra's refusal stands.
    env.clock.advance(timedelta(days=3))
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.alerts_raised == 0
    assert [a.kind for a in env.all_alerts() if a.status is AlertStatus.OPEN] == [AlertKind.SECRET_INVALID]


async def test_an_invalid_secret_raises_secret_invalid(env: Env) -> None:
    integration = await env.add_integration(roles=(AppRole.PARTNER, AppRole.SYNC))
    error = from_aadsts(7000215, app_id=integration.partner_app_id or "", tenant_id=PARTNER_TENANT,
                        app_label="partner app")
    alert = await raise_credential_alert(env.rt, integration, AppRole.PARTNER, error, clock=env.clock)
    assert alert is not None and alert.kind is AlertKind.SECRET_INVALID and alert.role is AppRole.PARTNER
    assert "(AADSTS7000215)" in alert.message


async def test_other_errors_are_not_credential_alerts(env: Env) -> None:
    integration = await env.add_integration()
    error = permission_missing(["DeviceManagementManagedDevices.Read.All"], app_id=SYNC_APP, tenant_id=PARTNER_TENANT)
    assert await raise_credential_alert(env.rt, integration, AppRole.SYNC, error, clock=env.clock) is None
    assert env.all_alerts() == []


async def test_a_failing_webhook_never_fails_the_sync(env: Env) -> None:
    integration = await env.add_integration()
    env.receiver.statuses = [500]
    alert = await raise_credential_alert(env.rt, integration, AppRole.SYNC, expired_error(), clock=env.clock)
    assert alert is not None and not alert.delivered and alert.last_delivery_error == "HTTP 500"
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.delivery.delivered == 1
    assert [b["id"] for b in env.receiver.bodies] == [alert.id, alert.id]


async def test_rotation_resolves_the_old_versions_alerts_only(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=10), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    await raise_credential_alert(env.rt, integration, AppRole.SYNC, expired_error(), clock=env.clock)
    # The 14-day alert, superseded by Entra's answer (expired), which stays open.
    assert sorted(a.status.value for a in env.all_alerts()) == ["open", "resolved"]

    # The registration service stores the new version, updates the SecretRef, then resolves.
    ref = integration.secrets[0]
    new_version = env.vault.put(ref.name, "Nw1-rotated-secret-value-55555", created_on=env.clock.now(),
                                expires_on=env.clock.now() + timedelta(days=365))
    rotated = integration.model_copy(update={"secrets": [ref.model_copy(update={
        "version": new_version, "expires_on": env.clock.now() + timedelta(days=365)})]})
    await env.rt.integrations.upsert_integration(rotated)
    resolved = await resolve_secret_alerts(env.rt, rotated, AppRole.SYNC, clock=env.clock)

    assert resolved == 1
    assert {a.status for a in env.all_alerts()} == {AlertStatus.RESOLVED}
    expired = next(a for a in env.all_alerts() if a.kind is AlertKind.SECRET_EXPIRED)
    assert expired.resolved_at == env.clock.now() and expired.resolved_reason == "secret replaced by a new version"
    assert await resolve_secret_alerts(env.rt, rotated, AppRole.SYNC, clock=env.clock) == 0
