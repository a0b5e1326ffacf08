"""Bad queue messages and integration isolation, with two MSP-side integrations over shared tenants.

Integrations (scenario two_integrations.json): A, multi-tenant through the MSP's partner tenant (its sync
app in contoso and northwind); B, single-tenant for outsider with outsider's own app; C, single-tenant for
contoso with that second app. So contoso belongs to A and C, each with its own app and secret.

- Malformed messages on `memsync-sync` (not base64, not JSON, wrong types, unknown integration, a tenant
  of another integration, ...) are refused with a logged reason and never crash the worker; only the
  message that is not base64 (which the host cannot even hand to the function) is poisoned; none of them
  causes a token request or a Key Vault read (the simulator's request log).
- A job for tenant X under integration A reads only A's secret, asks tokens only as A's app, and writes
  only A's partitions; the same tenant under C is kept apart.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from shared.clients.keyvault import secret_name
from shared.http import CallStats
from shared.models import AppRole, Integration
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import sync_tenant
from shared.stores.tables import ALL_TABLES
from tests.integration.support import (
    POISON_QUEUE,
    SYNC_QUEUE,
    all_devices,
    assert_devices_match_truth,
    decoded,
    figure,
    job,
    last_seq,
    queue,
    queue_contents,
    queue_length,
    requests_since,
    store_integration,
    truth,
    wait_until,
)

pytestmark = pytest.mark.integration
SCENARIO = str(Path(__file__).with_name("two_integrations.json"))


def _tenant(scenario: dict[str, Any], key: str) -> str:
    return str(next(t["tenantId"] for t in scenario["tenants"] if t["key"] == key))


@pytest.fixture(scope="module")
async def integrations(module_runtime, scenario) -> Mapping[str, Integration]:
    """A, B and C (the module docstring), stored once for the module, their tenants recorded."""
    stored: dict[str, Integration] = {}
    for name, registration in zip("ABC", scenario["registrations"], strict=True):
        integration = await store_integration(module_runtime, registration)
        discovery = await discover_customers(module_runtime, integration, CallStats())
        assert discovery.complete
        await record_tenants(module_runtime, integration, discovery)
        stored[name] = integration
    return MappingProxyType(stored)


@pytest.fixture
async def contoso_under_a_and_c(runtime, scenario, integrations) -> str:
    """Contoso's tenant id, just synced under A and under C: a copy of its assets in each."""
    contoso = _tenant(scenario, "contoso")
    for name in "AC":
        result = await sync_tenant(runtime, job(integrations[name], contoso))
        assert result.outcome == "ok", (name, result.reason)
    return contoso


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _job_text(integration_id: Any, tenant_id: Any, **extra: Any) -> str:
    body = {"integrationId": integration_id, "tenantId": tenant_id, "runId": str(uuid.uuid4()),
            "trigger": "manual", **extra}
    return _b64(json.dumps(body).encode())


async def test_malformed_messages_are_refused_with_a_reason(stack, scenario, integrations, request):
    a, b = integrations["A"], integrations["B"]
    contoso, outsider = _tenant(scenario, "contoso"), _tenant(scenario, "outsider")
    not_base64 = "this is {not} base64 !!"
    unparseable = [  # (raw message text, what the log says)
        (_b64(b"this is not JSON"), "not JSON"),
        (_b64(b"\xff\xfe\x00 not utf-8"), "not JSON"),
        (_b64(b"[1, 2, 3]"), "not an object"),
        (_b64(b'"a string"'), "not an object"),
        (_b64(json.dumps({"integrationId": 5, "tenantId": True, "runId": None, "trigger": "x"}).encode()),
         "not a sync job"),
        (_job_text(a.id, contoso, secret="extra field"), "not a sync job"),
        (_job_text("../../etc/passwd", contoso), "not a sync job"),
        (_job_text(a.id, "not-a-guid"), "not a sync job"),
        (_job_text(a.id, contoso, trigger="everything"), "not a sync job"),
        (_b64(b"{" * 20_000), "not JSON"),
        (_b64(b""), "not JSON"),
    ]
    ignored = [  # well-formed jobs that name something that is not theirs
        _job_text(str(uuid.uuid4()), contoso),  # unknown integration
        _job_text(a.id, outsider),  # outsider is B's tenant, not A's
        _job_text(b.id, contoso),  # B is single-tenant for outsider
        _job_text(a.id, str(uuid.uuid4())),  # a tenant nobody has
    ]
    seq = last_seq(stack)
    log_before = stack.host_log.read_text(errors="replace")
    with queue(stack, SYNC_QUEUE, base64_messages=False) as client:
        client.send_message(not_base64)
        for text, _ in unparseable:
            client.send_message(text)
        for text in ignored:
            client.send_message(text)
    wait_until(lambda: queue_length(stack, SYNC_QUEUE) == 0, 60, 0.2, "the queue to empty")
    wait_until(lambda: queue_contents(stack, POISON_QUEUE), 30, 0.2, "the poison queue")

    log = stack.host_log.read_text(errors="replace")[len(log_before):]
    wait_until(lambda: stack.host_log.read_text(errors="replace")[len(log_before):].count(
        "Executed 'Functions.sync_tenant'") >= len(unparseable) + len(ignored), 30, 0.2, "every invocation")
    log = stack.host_log.read_text(errors="replace")[len(log_before):]
    assert "Executed 'Functions.sync_tenant' (Failed" not in log, "a bad message crashed the worker"
    refusals = [line for line in log.splitlines() if "completed without a sync" in line]
    assert len(refusals) == len(unparseable), refusals
    for _, reason in unparseable:
        assert any(reason in line for line in refusals), reason
    assert "{{{{" not in log, "a refusal echoed the message body"
    assert log.count("not run: the tenant is not one of this integration's tenants") + log.count(
        "ignored: the integration does not exist") == len(ignored), log
    assert "cannot be decoded with messageEncoding 'base64'" in log

    # Only the message the host could not decode was poisoned; the rest could never succeed either, and
    # were completed (not retried five times) after their reason was logged.
    poisoned = queue_contents(stack, POISON_QUEUE)
    assert [decoded(p) for p in poisoned] == [not_base64]

    # Not one of them reached Entra, Graph, Defender or Key Vault.
    reached = [(e["service"], e["path"]) for e in requests_since(stack, seq) if e["service"] != "sim"]
    assert reached == [], reached
    figure(request, "badMessagesSent", 1 + len(unparseable) + len(ignored))
    figure(request, "badMessagesRefused", 1 + len(unparseable) + len(ignored))


def _entities(stack) -> dict[tuple[str, str, str], str]:
    from azure.data.tables import TableServiceClient

    out = {}
    with TableServiceClient.from_connection_string(stack.storage_connection_string) as service:
        for table in ALL_TABLES:
            for entity in service.get_table_client(table).list_entities():
                out[(table, entity["PartitionKey"], entity["RowKey"])] = repr(sorted(dict(entity).items()))
    return out


@pytest.mark.parametrize("name", ["A", "C"])
async def test_a_job_uses_only_its_own_integration(stack, scenario, runtime, integrations, name, request):
    integration = integrations[name]
    others = [i for n, i in integrations.items() if n != name]
    contoso = _tenant(scenario, "contoso")
    before = _entities(stack)
    seq = last_seq(stack)
    result = await sync_tenant(runtime, job(integration, contoso))
    assert result.outcome == "ok", result.reason
    log = requests_since(stack, seq)

    # Key Vault: only this integration's sync secret was read.
    vault_paths = {e["path"] for e in log if e["service"] == "vault"}
    own = secret_name(integration.id, AppRole.SYNC)
    assert vault_paths and all(own in p for p in vault_paths), vault_paths
    for other in others:
        assert not any(other.id in p for p in vault_paths)
    # Entra: tokens only as this integration's sync app, only in contoso.
    host = (scenario["hostIdentity"]["tenantId"], scenario["hostIdentity"]["clientId"])
    tokens = {(e["tenantId"], e["appId"]) for e in log if e["service"] == "entra" and e["path"].endswith("/token")}
    assert (contoso, integration.sync_app_id) in tokens
    assert tokens <= {(contoso, integration.sync_app_id), host}, tokens
    # Graph and Defender: as this app, in contoso only.
    data_calls = {(e["tenantId"], e["appId"]) for e in log if e["service"] in ("graph", "defender")}
    assert data_calls == {(contoso, integration.sync_app_id)}, data_calls

    # Table Storage: every entity written or changed is this integration's.
    after = _entities(stack)
    touched = [key for key, value in after.items() if before.get(key) != value]
    assert touched
    for table, partition, row in touched:
        assert partition.startswith(integration.id) or (row == integration.id), (table, partition, row)
    assert all(before[k] == after[k] for k in before if not k[1].startswith(integration.id))

    devices = await all_devices(runtime, integration.id, contoso, top=1000)
    assert_devices_match_truth(devices, truth(stack, contoso), include_defender=True)
    figure(request, "isolationChecks", 1)


async def test_the_same_tenant_under_two_integrations_is_stored_apart(stack, runtime, integrations,
                                                                     contoso_under_a_and_c):
    contoso = contoso_under_a_and_c
    a, c = integrations["A"], integrations["C"]
    from shared.stores.assets import AssetStore

    store = AssetStore(runtime.tables)
    await store.delete_assets(c.id)  # C's copy goes; A's stays whole
    assert await all_devices(runtime, c.id, contoso) == {}
    assert_devices_match_truth(await all_devices(runtime, a.id, contoso, top=1000), truth(stack, contoso),
                               include_defender=True)
