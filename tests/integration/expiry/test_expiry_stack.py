"""Secret expiry against real Azurite tables and the simulator's Key Vault, Entra and Graph.

Service-level: each test builds its integration straight into the stores (the registration API is
another area's), runs `check_secret_expiry` / `raise_credential_alert` in this process with the stack's
settings, and reads the results back from Azurite. Webhooks are real aiohttp receivers on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from shared.auth import AppCredential
from shared.clock import ManualClock
from shared.errors import ActionableError, ErrorCode
from shared.models import AppRole, IntegrationStatus
from shared.services.alerting import raise_credential_alert
from shared.services.expiry import check_secret_expiry
from shared.stores.alerts import AlertKind
from tests.integration.expiry.support import (
    app_of,
    new_sim_secret,
    secret_alerts,
    secret_ref,
    stored_integration,
    use_webhook,
)

pytestmark = pytest.mark.integration
SCENARIO = "demo"


async def test_graph_read_expiry_raises_the_most_urgent_mark_reached(stack, scenario, runtime) -> None:
    app = app_of(scenario, "sync-app")
    secret = await new_sim_secret(stack, app["appId"], 10)  # Graph will say: 10 days left
    integration = await stored_integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])

    report = await check_secret_expiry(runtime, clock=ManualClock(datetime.now(UTC)))

    assert not [f for f in report.failures if integration.id in f]
    ref = await secret_ref(runtime, integration.id)
    assert ref.expires_on_source == "graph"
    assert ref.expires_on == datetime.fromisoformat(secret["endDateTime"].replace("Z", "+00:00"))
    (alert,) = await secret_alerts(runtime, integration.id)  # 10 days left: the 14-day mark alone, not 30 as well
    assert alert.mark == 14 and alert.expires_on_source == "graph" and alert.days_left == 10


async def test_assumed_expiry_when_the_app_may_not_read_itself(stack, scenario, runtime) -> None:
    # The host identity's app has no Application.Read.All in its home tenant: Graph answers 403.
    host = scenario["hostIdentity"]
    integration = await stored_integration(runtime, tenant_id=host["tenantId"], app_id=host["clientId"],
                                     value=host["clientSecret"])
    clock = ManualClock(datetime.now(UTC))
    await check_secret_expiry(runtime, clock=clock)
    ref = await secret_ref(runtime, integration.id)
    assert ref.expires_on_source == "assumed"
    stored = await runtime.secrets.get_properties(ref.name)
    assert ref.expires_on == stored.created_on + timedelta(days=180)
    assert await secret_alerts(runtime, integration.id) == []

    clock.advance(timedelta(days=170))  # 10 days left, by the assumption
    await check_secret_expiry(runtime, clock=clock)
    (alert,) = await secret_alerts(runtime, integration.id)
    assert alert.mark == 14 and "assumed" in alert.message and alert.expires_on_source == "assumed"


async def test_an_expired_secret_found_at_sync_time_alerts_at_once(stack, scenario, runtime, receiver) -> None:
    use_webhook(runtime, receiver, "generic")
    app = app_of(scenario, "sync-app")
    secret = await new_sim_secret(stack, app["appId"], -1)
    integration = await stored_integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
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
    use_webhook(runtime, receiver, fmt)
    app = app_of(scenario, "sync-app")
    secret = await new_sim_secret(stack, app["appId"], 20)
    integration = await stored_integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])
    await check_secret_expiry(runtime, clock=ManualClock(datetime.now(UTC)))
    (body,) = receiver.about(integration.id)
    assert check(body)
    assert secret["value"] not in json.dumps(body) and secret["hint"] not in json.dumps(body)


async def test_a_failing_webhook_recovers_and_delivers_exactly_once(stack, scenario, runtime, receiver) -> None:
    use_webhook(runtime, receiver, "teams")
    app = app_of(scenario, "sync-app")
    secret = await new_sim_secret(stack, app["appId"], 25)
    integration = await stored_integration(runtime, tenant_id=app["homeTenantId"], app_id=app["appId"],
                                     value=secret["value"])
    receiver.statuses = [500] * 20  # everything fails on the first run
    clock = ManualClock(datetime.now(UTC))
    await check_secret_expiry(runtime, clock=clock)
    (alert,) = await secret_alerts(runtime, integration.id)
    assert not alert.delivered and alert.last_delivery_error == "HTTP 500"

    receiver.statuses = []
    clock.advance(timedelta(hours=24))
    await check_secret_expiry(runtime, clock=clock)
    await check_secret_expiry(runtime, clock=clock)
    (alert,) = await secret_alerts(runtime, integration.id)
    assert alert.delivered
    assert len(receiver.about(integration.id)) == 2  # the failed attempt, then the one delivery
