"""Request limiters that keep memsync under Microsoft's published per-app, per-tenant limits.

Intune device endpoints: 2000 requests per 20 s per app per tenant; app endpoints 1000 per 20 s
(https://learn.microsoft.com/graph/throttling-limits#intune-service-limits). Defender for Endpoint:
100 calls per minute (https://learn.microsoft.com/defender-endpoint/api/get-machines); its vulnerability
APIs 50 calls per minute *and* 1500 per hour
(https://learn.microsoft.com/defender-endpoint/api/get-discovered-vulnerabilities, the limit Microsoft
states for the vulnerability reads; https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines
is the listing memsync makes). Staying under them makes 429 the exception rather than the routine. An area
may have several windows (`AREA_LIMITS`); a request then waits until every one of them admits it.

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


class WindowedLimiter:
    """Several sliding windows at once (50 a minute and 1500 an hour): a request waits for each, the
    longest first, so the short window's admission is taken last, when the request really goes."""

    def __init__(self, windows: list[SlidingWindowLimiter]) -> None:
        self.windows = sorted(windows, key=lambda w: -w.period)

    async def acquire(self) -> None:
        for window in self.windows:
            await window.acquire()


Limiter = SlidingWindowLimiter | WindowedLimiter
Window = tuple[int, float]  # (capacity, period seconds)

# Published limits. A margin of 10% leaves room for other tools of the tenant.
INTUNE_DEVICES_LIMIT: Window = (1800, 20.0)
INTUNE_APPS_LIMIT: Window = (900, 20.0)
DEFENDER_LIMIT: Window = (90, 60.0)
DEFENDER_VULNERABILITY_LIMITS: tuple[Window, ...] = ((45, 60.0), (1350, 3600.0))
GRAPH_DIRECTORY_LIMIT: Window = (1800, 20.0)

# Every area a client is built for, and its windows. A name not listed here is a programming error:
# `bucket` refuses it rather than lending it another area's limit.
AREA_LIMITS: dict[str, tuple[Window, ...]] = {
    "intuneDevices": (INTUNE_DEVICES_LIMIT,),
    "intuneApps": (INTUNE_APPS_LIMIT,),
    "defender": (DEFENDER_LIMIT,),
    "defenderVulnerabilities": DEFENDER_VULNERABILITY_LIMITS,
    "graphDirectory": (GRAPH_DIRECTORY_LIMIT,),  # /organization, /devices, /subscribedSkus in a customer tenant
    "partnerDirectory": (GRAPH_DIRECTORY_LIMIT,),  # Graph and Partner Center in the partner tenant
}


class RateLimits:
    """One limiter per (service area, tenant, app), kept for the life of the worker process."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str, str], Limiter] = {}

    def bucket(self, area: str, tenant_id: str, app_id: str) -> Limiter:
        key = (area, tenant_id.lower(), app_id.lower())
        found = self._limiters.get(key)
        if found is None:
            try:
                windows = AREA_LIMITS[area]
            except KeyError:
                raise KeyError(f"no rate limit is declared for the area {area!r} (shared.ratelimit.AREA_LIMITS)"
                               ) from None
            limiters = [SlidingWindowLimiter(capacity, period) for capacity, period in windows]
            found = self._limiters[key] = limiters[0] if len(limiters) == 1 else WindowedLimiter(limiters)
        return found
