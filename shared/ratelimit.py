"""Token buckets that keep memsync under Microsoft's published per-app, per-tenant limits.

Intune device endpoints: 2000 requests per 20 s per app per tenant; app endpoints 1000 per 20 s
(https://learn.microsoft.com/graph/throttling-limits#intune-service-limits). Defender for Endpoint:
100 calls per minute (https://learn.microsoft.com/defender-endpoint/api/get-machines). Staying under them
makes 429 the exception rather than the routine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`capacity` requests per `period` seconds, refilled continuously; `acquire` waits for a token."""

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
        self.rate = capacity / period
        self._tokens = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                self.waited_seconds += wait
                await self._sleep(wait)
                self._refill()
            self._tokens -= 1


# Published limits, (capacity, period seconds). A margin of 10% leaves room for other tools of the tenant.
INTUNE_DEVICES_LIMIT = (1800, 20.0)
INTUNE_APPS_LIMIT = (900, 20.0)
DEFENDER_LIMIT = (90, 60.0)
GRAPH_DIRECTORY_LIMIT = (1800, 20.0)


class RateLimits:
    """One bucket per (service area, tenant, app), kept for the life of the worker process."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def bucket(self, area: str, tenant_id: str, app_id: str) -> TokenBucket:
        key = (area, tenant_id.lower(), app_id.lower())
        found = self._buckets.get(key)
        if found is None:
            capacity, period = {
                "intuneDevices": INTUNE_DEVICES_LIMIT,
                "intuneApps": INTUNE_APPS_LIMIT,
                "defender": DEFENDER_LIMIT,
            }.get(area, GRAPH_DIRECTORY_LIMIT)
            found = self._buckets[key] = TokenBucket(capacity, period)
        return found
