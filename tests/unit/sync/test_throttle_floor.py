"""`Retry-After: 0` is not a retry storm: a server-named wait has a floor, and one tenant's sync makes at
most `MAX_THROTTLED_RETRIES` throttled retries in all, whichever of its clients meets the 429s; past them
it gives way as throttled. httpx.MockTransport, an injected clock and sleep: nothing really waits."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.clients.defender import DefenderClient
from shared.clients.graph import GraphClient, graph_error
from shared.errors import ErrorCode, throttled
from shared.http import (
    MAX_THROTTLED_RETRIES,
    MIN_RETRY_AFTER_SECONDS,
    ApiClient,
    Budget,
    CallStats,
    RetriableApiError,
    parse_retry_after,
)
from tests.unit.faketime import FakeTime

from .samples import sample_json

pytestmark = pytest.mark.unit
GRAPH = "https://graph.test/v1.0"
DEFENDER = "https://defender.test"
SYNC_BUDGET = 8 * 60.0
# Far more requests than any bounded policy sends: the old loop is stopped here instead of spinning forever.
STORM = 10 * MAX_THROTTLED_RETRIES


class Throttling:
    """A service that answers every request 429 with the given Retry-After (None: no header)."""

    def __init__(self, retry_after: str | None = "0", status: int = 429) -> None:
        self.retry_after = retry_after
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > STORM:
            raise RuntimeError(f"retry storm: {len(self.requests)} requests and still retrying")
        headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
        return httpx.Response(self.status, headers=headers,
                              json=sample_json("graph-throttling-429-response-body.json"))


async def _token(fresh: bool) -> str:
    return "token"


def client(server: Throttling, *, service: str, budget: Budget, stats: CallStats, time: FakeTime) -> ApiClient:
    return ApiClient(httpx.AsyncClient(transport=httpx.MockTransport(server)), service=service, token=_token,
                     budget=budget, stats=stats, sleep=time.sleep)


def one_sync(time: FakeTime) -> tuple[Budget, CallStats]:
    """What `sync_tenant` builds once per job and hands to every client of the tenant's sync."""
    return Budget(SYNC_BUDGET, clock=time.clock), CallStats()


@pytest.mark.parametrize("retry_after", ["0", "-1", "0.001", "0.5"])
async def test_retry_after_below_the_floor_forever_ends_at_the_ceiling_as_throttled(retry_after):
    time = FakeTime(yield_on_sleep=True)
    budget, stats = one_sync(time)
    server = Throttling(retry_after)
    graph = GraphClient(GRAPH, directory=client(server, service="intuneDevices", budget=budget, stats=stats,
                                                 time=time))
    with pytest.raises(RetriableApiError) as raised:
        async for _ in graph.managed_devices():
            pass
    assert len(server.requests) == MAX_THROTTLED_RETRIES + 1
    assert len(time.slept) == MAX_THROTTLED_RETRIES
    assert min(time.slept) >= MIN_RETRY_AFTER_SECONDS
    # The ceiling ended it, long before the time budget would have.
    assert time.now == pytest.approx(MAX_THROTTLED_RETRIES * MIN_RETRY_AFTER_SECONDS)
    assert budget.remaining() > SYNC_BUDGET / 2
    exc = raised.value
    assert exc.throttled and exc.status == 429 and "throttled retries are spent" in str(exc)
    assert stats.requests == MAX_THROTTLED_RETRIES + 1
    assert stats.throttled == stats.retries == budget.throttled_retries == MAX_THROTTLED_RETRIES
    assert stats.to_json()["throttled"] == MAX_THROTTLED_RETRIES
    # The tenant's error: the one the time budget's exhaustion gives, message and action unchanged.
    error = graph_error(exc, area="devices", tenant_id="t", app_id="a")
    assert error.code == ErrorCode.THROTTLED and error.retriable
    assert error.info == throttled("Microsoft Graph").info


async def test_the_ceiling_is_per_tenant_sync_shared_by_its_graph_and_defender_clients():
    time = FakeTime(yield_on_sleep=True)
    budget, stats = one_sync(time)
    graph_server, defender_server = Throttling("0"), Throttling("0")
    graph = GraphClient(GRAPH, directory=client(graph_server, service="intuneDevices", budget=budget,
                                                stats=stats, time=time))
    defender = DefenderClient(DEFENDER, client(defender_server, service="defender", budget=budget,
                                               stats=stats, time=time))

    async def drain(pages) -> None:
        async for _ in pages:
            pass

    outcomes = await asyncio.gather(drain(graph.managed_devices()), drain(defender.machines()),
                                    return_exceptions=True)
    assert all(isinstance(o, RetriableApiError) and o.throttled for o in outcomes), outcomes
    graph_sent, defender_sent = len(graph_server.requests), len(defender_server.requests)
    # Together, not each: every retry of either client is one of the sync's MAX_THROTTLED_RETRIES.
    assert graph_sent + defender_sent == MAX_THROTTLED_RETRIES + 2
    assert graph_sent > 1 and defender_sent > 1  # both were throttled and both retried
    assert stats.throttled == budget.throttled_retries == MAX_THROTTLED_RETRIES
    assert min(time.slept) >= MIN_RETRY_AFTER_SECONDS


async def test_a_client_meeting_429_after_another_spent_the_ceiling_gives_way_at_once():
    time = FakeTime(yield_on_sleep=True)
    budget, stats = one_sync(time)
    defender_server = Throttling("0")
    defender = client(defender_server, service="defender", budget=budget, stats=stats, time=time)
    with pytest.raises(RetriableApiError):
        await defender.get_json(f"{DEFENDER}/api/machines")
    graph_server = Throttling("0")
    graph = client(graph_server, service="intuneDevices", budget=budget, stats=stats, time=time)
    with pytest.raises(RetriableApiError) as raised:
        await graph.get_json(f"{GRAPH}/deviceManagement/managedDevices")
    assert raised.value.throttled and len(graph_server.requests) == 1

    # The next sync of the tenant (a new job, a new budget) starts with the full allowance again.
    next_budget, next_stats = one_sync(time)
    again = Throttling("0")
    with pytest.raises(RetriableApiError):
        await client(again, service="intuneDevices", budget=next_budget, stats=next_stats,
                     time=time).get_json(f"{GRAPH}/deviceManagement/managedDevices")
    assert len(again.requests) == MAX_THROTTLED_RETRIES + 1


async def test_a_throttled_request_that_recovers_does_not_give_way():
    time = FakeTime(yield_on_sleep=True)
    budget, stats = one_sync(time)
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}) for _ in range(5)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json={"value": []}))

    api = ApiClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)), service="intuneDevices",
                    token=_token, budget=budget, stats=stats, sleep=time.sleep)
    assert await api.get_json(f"{GRAPH}/deviceManagement/managedDevices") == {"value": []}
    assert time.slept == [MIN_RETRY_AFTER_SECONDS] * 5
    assert stats.throttled == budget.throttled_retries == 5


async def test_without_retry_after_the_backoff_is_as_before_and_counts_toward_the_ceiling():
    time = FakeTime(yield_on_sleep=True)
    budget, stats = Budget(MAX_THROTTLED_RETRIES * 30.0, clock=time.clock), CallStats()  # time enough for all
    server = Throttling(None)
    api = client(server, service="defender", budget=budget, stats=stats, time=time)
    with pytest.raises(RetriableApiError) as raised:
        await api.get_json(f"{DEFENDER}/api/machines")
    assert raised.value.throttled and len(server.requests) == MAX_THROTTLED_RETRIES + 1
    first, second = time.slept[:2]
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0  # full jitter over 0.5 s x 2^n, capped at 30 s
    assert max(time.slept) <= 30.0


async def test_a_503_with_retry_after_0_waits_the_floor_and_spends_no_throttled_retry():
    time = FakeTime(yield_on_sleep=True)
    budget, stats = one_sync(time)
    server = Throttling("0", status=503)
    with pytest.raises(RetriableApiError) as raised:
        await client(server, service="intuneDevices", budget=budget, stats=stats,
                     time=time).get_json(f"{GRAPH}/deviceManagement/managedDevices")
    assert not raised.value.throttled and raised.value.status == 503
    assert len(server.requests) == 6  # the client's max_attempts, as before
    assert time.slept == [MIN_RETRY_AFTER_SECONDS] * 5
    assert budget.throttled_retries == 0 and stats.throttled == 0


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("-3", 0.0), ("2.128", 2.128), ("nan", None),
                                                ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("", None)])
def test_retry_after_is_read_as_sent(value, seconds):
    assert parse_retry_after(value) == seconds

