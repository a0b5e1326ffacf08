"""The sliding-window limiter and the per-tenant, per-app limits that keep memsync under Microsoft's throttling."""

from __future__ import annotations

import asyncio
import random

import pytest

from shared.ratelimit import (
    AREA_LIMITS,
    DEFENDER_LIMIT,
    DEFENDER_VULNERABILITY_LIMITS,
    GROUPS_PER_PERIOD,
    INTUNE_APPS_LIMIT,
    INTUNE_DEVICES_LIMIT,
    RateLimits,
    SlidingWindowLimiter,
    WindowedLimiter,
)
from tests.unit.faketime import FakeTime

pytestmark = pytest.mark.unit


async def test_a_fresh_limiter_lets_a_burst_of_its_capacity_through_without_waiting():
    t = FakeTime(1000.0)
    limiter = SlidingWindowLimiter(5, 1.0, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        await limiter.acquire()
    assert t.slept == [] and limiter.waited_seconds == 0


async def test_beyond_the_capacity_a_request_waits_until_the_oldest_leaves_the_window():
    t = FakeTime(1000.0)
    limiter = SlidingWindowLimiter(10, 20.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(30):
        await limiter.acquire()
        stamps.append(t.now)
    assert stamps == [1000.0] * 10 + [1020.0] * 10 + [1040.0] * 10


def _max_in_window(stamps: list[float], window: float) -> int:
    return max(sum(1 for s in stamps[i:] if s < start + window) for i, start in enumerate(stamps))


async def test_no_window_of_a_period_holds_more_than_capacity():
    t = FakeTime(1000.0)
    limiter = SlidingWindowLimiter(10, 20.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(40):
        await limiter.acquire()
        stamps.append(t.now)
    assert _max_in_window(stamps, 20.0) <= 10


async def test_irregular_callers_never_exceed_the_window_and_keep_near_the_limit():
    rng = random.Random(7)
    t = FakeTime(1000.0)
    limiter = SlidingWindowLimiter(50, 20.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(2_000):
        t.now += rng.choice((0.0, 0.0, 0.01, 0.05, 0.3, 1.7))  # bursts, trickles and pauses
        await limiter.acquire()
        stamps.append(t.now)
        assert len(limiter._groups) <= GROUPS_PER_PERIOD + 1  # memory stays bounded, whatever the traffic
    assert _max_in_window(stamps, 20.0) <= 50
    # Callers that always have work: the sustained rate stays within 1% of capacity / period.
    t = FakeTime(1000.0)
    limiter = SlidingWindowLimiter(50, 20.0, clock=t.clock, sleep=t.sleep)
    for _ in range(1_000):
        t.now += 0.013
        await limiter.acquire()
    assert 1_000 / (t.now - 1000.0) >= 0.99 * 50 / 20.0


async def test_concurrent_callers_share_one_bucket():
    t = FakeTime(1000.0)
    limiter = SlidingWindowLimiter(4, 1.0, clock=t.clock, sleep=t.sleep)
    await asyncio.gather(*(limiter.acquire() for _ in range(12)))
    assert t.now - 1000.0 == pytest.approx(2.0)  # 4 at once, then 4 a second later, then 4 more
    assert limiter.waited_seconds == pytest.approx(2.0)


def test_rejects_a_limiter_that_could_never_admit():
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 1.0)
    with pytest.raises(ValueError):
        SlidingWindowLimiter(1, 0.0)


def test_limits_stay_under_microsofts_published_ones():
    # Intune devices 2000 / 20 s, apps 1000 / 20 s per app per tenant; Defender 100 / minute.
    assert INTUNE_DEVICES_LIMIT[0] / INTUNE_DEVICES_LIMIT[1] < 2000 / 20
    assert INTUNE_APPS_LIMIT[0] / INTUNE_APPS_LIMIT[1] < 1000 / 20
    assert DEFENDER_LIMIT[0] / DEFENDER_LIMIT[1] < 100 / 60
    assert INTUNE_DEVICES_LIMIT[0] < 2000 and INTUNE_APPS_LIMIT[0] < 1000 and DEFENDER_LIMIT[0] < 100


def test_one_limiter_per_area_tenant_and_app():
    limits = RateLimits()
    a = limits.bucket("intuneDevices", "T1", "App")
    assert limits.bucket("intuneDevices", "t1", "app") is a  # ids compare case-insensitively
    assert limits.bucket("intuneDevices", "t2", "app") is not a
    assert limits.bucket("intuneDevices", "t1", "other-app") is not a
    assert limits.bucket("intuneApps", "t1", "app") is not a
    assert limits.bucket("defender", "t1", "app").capacity == DEFENDER_LIMIT[0]
    assert limits.bucket("intuneApps", "t1", "app").capacity == INTUNE_APPS_LIMIT[0]


async def test_two_windows_hold_both_the_per_minute_and_the_per_hour_limit():
    # Defender's vulnerability reads: so many a minute and so many an hour (shared.ratelimit).
    t = FakeTime(0.0)
    limiter = WindowedLimiter([SlidingWindowLimiter(5, 60.0, clock=t.clock, sleep=t.sleep),
                               SlidingWindowLimiter(12, 3600.0, clock=t.clock, sleep=t.sleep)])
    stamps = []
    for _ in range(14):
        await limiter.acquire()
        stamps.append(t.now)
    # 5 a minute until the hour's 12 are spent; the 13th waits for the hour to pass.
    assert stamps[:12] == [0.0] * 5 + [60.0] * 5 + [120.0] * 2
    assert stamps[12] == 3600.0 and stamps[13] == 3600.0
    for a in stamps:
        assert sum(1 for b in stamps if a <= b < a + 60.0) <= 5
        assert sum(1 for b in stamps if a <= b < a + 3600.0) <= 12


def test_the_vulnerability_area_has_both_published_windows_with_a_margin():
    # 50 calls per minute and 1500 per hour (get-discovered-vulnerabilities); 10% left for other tools.
    assert AREA_LIMITS["defenderVulnerabilities"] == DEFENDER_VULNERABILITY_LIMITS
    (per_minute, minute), (per_hour, hour) = sorted(DEFENDER_VULNERABILITY_LIMITS, key=lambda w: w[1])
    assert (minute, hour) == (60.0, 3600.0) and per_minute < 50 and per_hour < 1500
    bucket = RateLimits().bucket("defenderVulnerabilities", "t1", "app")
    assert isinstance(bucket, WindowedLimiter) and [w.period for w in bucket.windows] == [3600.0, 60.0]
