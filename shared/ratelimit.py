"""Request limiters that keep memsync under Microsoft's published per-app, per-tenant limits.

Intune device endpoints: 2000 requests per 20 s per app per tenant; app endpoints 1000 per 20 s
(https://learn.microsoft.com/graph/throttling-limits#intune-service-limits). Defender for Endpoint:
100 calls per minute (https://learn.microsoft.com/defender-endpoint/api/get-machines). Staying under them
makes 429 the exception rather than the routine.

Intune counts a sliding window, so the limiter does too: no `period` seconds ever hold more than `capacity`
admissions. A token bucket that starts full and refills at `capacity / period` does not give that (its burst
plus a period's refill is 2 x capacity in one window); one with a smaller burst does, but its sustained rate
is then below the limit. A log of admission times is exact and keeps the full rate; to keep it small,
admissions less than `period / GROUPS_PER_PERIOD` apart share one entry that expires a period after the
*latest* of them (conservative: an entry lives at most that much longer than its earliest admission).
So a limiter holds at most about GROUPS_PER_PERIOD entries, and sustains >= 99% of `capacity / period`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

GROUPS_PER_PERIOD = 100


class _Group:
    """Admissions from `first` to `last` (less than one group width apart): `count` of them."""

    __slots__ = ("count", "first", "last")

    def __init__(self, at: float) -> None:
        self.first = self.last = at
        self.count = 1


class SlidingWindowLimiter:
    """At most `capacity` requests in any `period` seconds; `acquire` waits until one more fits."""

    def __init__(
        self,
        capacity: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if capacity <= 0 or period <= 0:
            raise ValueError("capacity and period must be positive")
        self.capacity = capacity
        self.period = period
        self._width = period / GROUPS_PER_PERIOD
        self._groups: deque[_Group] = deque()
        self._admitted = 0  # the sum of the groups' counts
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _expire(self, now: float) -> None:
        while self._groups and self._groups[0].last + self.period <= now:
            self._admitted -= self._groups.popleft().count

    async def acquire(self) -> None:
        async with self._lock:
            now = self._clock()
            self._expire(now)
            while self._admitted >= self.capacity:
                wait = self._groups[0].last + self.period - now
                self.waited_seconds += wait
                await self._sleep(wait)
                now = self._clock()
                self._expire(now)
            newest = self._groups[-1] if self._groups else None
            if newest is not None and now - newest.first < self._width:
                newest.last = max(newest.last, now)
                newest.count += 1
            else:
                self._groups.append(_Group(now))
            self._admitted += 1


# Published limits, (capacity, period seconds). A margin of 10% leaves room for other tools of the tenant.
INTUNE_DEVICES_LIMIT = (1800, 20.0)
INTUNE_APPS_LIMIT = (900, 20.0)
DEFENDER_LIMIT = (90, 60.0)
GRAPH_DIRECTORY_LIMIT = (1800, 20.0)

# Every area a client is built for, and its limit. A name not listed here is a programming error: `bucket`
# refuses it rather than lending it another area's limit.
AREA_LIMITS: dict[str, tuple[int, float]] = {
    "intuneDevices": INTUNE_DEVICES_LIMIT,
    "intuneApps": INTUNE_APPS_LIMIT,
    "defender": DEFENDER_LIMIT,
    "graphDirectory": GRAPH_DIRECTORY_LIMIT,  # /organization in a customer tenant
    "partnerDirectory": GRAPH_DIRECTORY_LIMIT,  # Graph and Partner Center in the partner tenant
}


class RateLimits:
    """One limiter per (service area, tenant, app), kept for the life of the worker process."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str, str], SlidingWindowLimiter] = {}

    def bucket(self, area: str, tenant_id: str, app_id: str) -> SlidingWindowLimiter:
        key = (area, tenant_id.lower(), app_id.lower())
        found = self._limiters.get(key)
        if found is None:
            try:
                capacity, period = AREA_LIMITS[area]
            except KeyError:
                raise KeyError(f"no rate limit is declared for the area {area!r} (shared.ratelimit.AREA_LIMITS)"
                               ) from None
            found = self._limiters[key] = SlidingWindowLimiter(capacity, period)
        return found
