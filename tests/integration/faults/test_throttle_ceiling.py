"""A tenant whose Graph and Defender answer every request 429 with `Retry-After: 0` (the simulator's
throttle fault) ends its sync throttled after a bounded number of requests: each retry waits at least
`MIN_RETRY_AFTER_SECONDS`, and the whole sync makes at most `MAX_THROTTLED_RETRIES` throttled retries,
whichever of its clients meets the 429s (`sync_tenant` in this process, against the simulator)."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest

from shared.errors import ErrorCode, throttled
from shared.http import MAX_THROTTLED_RETRIES, MIN_RETRY_AFTER_SECONDS, CallStats
from shared.models import TenantStatus
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import TransientSyncError, sync_tenant
from shared.stores.runs import RunStore
from tests.integration.support import job, last_seq, requests_since, store_integration

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # about 12 s: 50 retries a second apart, 4 readers
SCENARIO = "demo"
# First requests that are not retries: one per reader of the sync (organization, devices, software,
# Defender, the per-device software export), with room for a reader that starts a second request.
FIRST_REQUESTS = 8


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


async def test_retry_after_0_forever_ends_the_tenant_throttled_after_a_bounded_number_of_requests(
    stack, scenario, runtime, faults
):
    integration = await store_integration(runtime, scenario["registrations"][0])
    discovery = await discover_customers(runtime, integration, CallStats())
    assert discovery.complete
    await record_tenants(runtime, integration, discovery)
    tid = next(t["tenantId"] for t in scenario["tenants"] if t["key"] == "contoso")
    faults.add(
        {"service": "graph", "tenantId": tid, "kind": "throttle", "retryAfter": "0"},
        {"service": "defender", "tenantId": tid, "kind": "throttle", "retryAfter": 0},
    )
    seq = last_seq(stack)

    with pytest.raises(TransientSyncError) as raised:  # the host retries the message later
        await sync_tenant(runtime, job(integration, tid))

    assert raised.value.error.code == ErrorCode.THROTTLED
    assert raised.value.error.action == throttled("Microsoft Graph").info.action
    stored = await runtime.tenants.get_tenant(integration.id, tid)
    assert stored is not None and stored.status == TenantStatus.ERROR
    assert stored.error is not None and stored.error.code == ErrorCode.THROTTLED
    run = (await RunStore(runtime.tables).list_runs(integration.id, tid))[0]
    assert run["status"] == "error" and run["error"]["code"] == "throttled"
    assert run["throttled"] == MAX_THROTTLED_RETRIES, run["calls"]

    sent = [e for e in requests_since(stack, seq, tid) if e["service"] in ("graph", "defender")]
    assert all(e["status"] == 429 for e in sent)
    assert MAX_THROTTLED_RETRIES < len(sent) <= MAX_THROTTLED_RETRIES + FIRST_REQUESTS, len(sent)
    by_read: dict[str, list[datetime]] = {}
    for e in sent:
        by_read.setdefault(f"{e['service']} {e['path']}?{e['query']}", []).append(_at(e))
    assert sum(len(times) > 1 for times in by_read.values()) >= 2, by_read.keys()  # several readers retried
    for read, times in by_read.items():
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(g >= MIN_RETRY_AFTER_SECONDS * 0.95 for g in gaps), (read, gaps)
