"""The token bucket and the per-tenant, per-app limits that keep memsync under Microsoft's throttling."""

from __future__ import annotations

import asyncio

import pytest

from shared.ratelimit import DEFENDER_LIMIT, INTUNE_APPS_LIMIT, INTUNE_DEVICES_LIMIT, RateLimits, TokenBucket

pytestmark = pytest.mark.unit


class FakeTime:
    """A clock that only moves when the bucket sleeps: no real waiting, exact arithmetic."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_full_bucket_lets_a_burst_through_without_waiting():
    t = FakeTime()
    bucket = TokenBucket(5, 1.0, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        await bucket.acquire()
    assert t.slept == [] and bucket.waited_seconds == 0


async def test_beyond_the_burst_requests_are_spaced_at_the_rate():
    t = FakeTime()
    bucket = TokenBucket(10, 20.0, clock=t.clock, sleep=t.sleep)  # 0.5 requests per second
    stamps = []
    for _ in range(30):
        await bucket.acquire()
        stamps.append(t.now)
    assert stamps[9] == 1000.0  # the burst
    assert stamps[10:] == pytest.approx([1000.0 + 2.0 * i for i in range(1, 21)])
    # A token bucket admits its burst plus a period's refill in one window: at most 2 x capacity.
    assert _max_in_window(stamps, 20.0) <= 2 * 10


def _max_in_window(stamps: list[float], window: float) -> int:
    return max(sum(1 for s in stamps[i:] if s < start + window) for i, start in enumerate(stamps))


@pytest.mark.xfail(strict=True, reason="shared/ratelimit.py: a full bucket plus a period's refill admits up "
                   "to 2 x capacity in a sliding window; Intune counts a sliding window (see the bench report)")
async def test_no_window_of_a_period_holds_more_than_capacity():
    t = FakeTime()
    bucket = TokenBucket(10, 20.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(40):
        await bucket.acquire()
        stamps.append(t.now)
    assert _max_in_window(stamps, 20.0) <= 10


async def test_concurrent_callers_share_one_bucket():
    t = FakeTime()
    bucket = TokenBucket(4, 1.0, clock=t.clock, sleep=t.sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(12)))
    assert t.now - 1000.0 == pytest.approx(2.0)  # 8 beyond the burst at 4 per second
    assert bucket.waited_seconds == pytest.approx(2.0)


def test_rejects_a_bucket_that_could_never_refill():
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0.0)


def test_limits_stay_under_microsofts_published_ones():
    # Intune devices 2000 / 20 s, apps 1000 / 20 s per app per tenant; Defender 100 / minute.
    assert INTUNE_DEVICES_LIMIT[0] / INTUNE_DEVICES_LIMIT[1] < 2000 / 20
    assert INTUNE_APPS_LIMIT[0] / INTUNE_APPS_LIMIT[1] < 1000 / 20
    assert DEFENDER_LIMIT[0] / DEFENDER_LIMIT[1] < 100 / 60
    assert INTUNE_DEVICES_LIMIT[0] < 2000 and INTUNE_APPS_LIMIT[0] < 1000 and DEFENDER_LIMIT[0] < 100


def test_one_bucket_per_area_tenant_and_app():
    limits = RateLimits()
    a = limits.bucket("intuneDevices", "T1", "App")
    assert limits.bucket("intuneDevices", "t1", "app") is a  # ids compare case-insensitively
    assert limits.bucket("intuneDevices", "t2", "app") is not a
    assert limits.bucket("intuneDevices", "t1", "other-app") is not a
    assert limits.bucket("intuneApps", "t1", "app") is not a
    assert limits.bucket("defender", "t1", "app").capacity == DEFENDER_LIMIT[0]
    assert limits.bucket("intuneApps", "t1", "app").capacity == INTUNE_APPS_LIMIT[0]
