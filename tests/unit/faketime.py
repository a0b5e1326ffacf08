"""A clock for unit tests that moves only when the code under test sleeps (or the test moves it): no real
waiting, exact arithmetic. Pass `clock` and `sleep` where the code takes them."""

from __future__ import annotations

import asyncio


class FakeTime:
    def __init__(self, now: float = 0.0, *, yield_on_sleep: bool = False) -> None:
        self.now = now
        self.slept: list[float] = []
        # Let other tasks run at each sleep, as a real wait would (several clients sleeping concurrently).
        self._yield = yield_on_sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self._yield:
            await asyncio.sleep(0)
