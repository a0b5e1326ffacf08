"""Timer trigger scheduler.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer
* invocations of one timer never overlap: the next occurrence is computed after the
  previous invocation completes ("If a function execution takes longer than the timer
  interval, another execution isn't triggered until after the current invocation completes");
* runOnStartup fires once when the host starts;
* useMonitor (schedule status persisted in storage) is not implemented: ``past_due`` is
  True when the invocation starts more than PAST_DUE_TOLERANCE after its scheduled time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from .app_loader import FunctionSpec, TimerTriggerSpec
from .invoke import InvocationResult
from .ncrontab import Schedule

log = logging.getLogger("devstack.functions_host")

PAST_DUE_TOLERANCE = timedelta(seconds=1)

Invoke = Callable[[FunctionSpec, Any, str], Coroutine[Any, Any, InvocationResult]]


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt else None


class TimerRunner:
    def __init__(
        self,
        spec: FunctionSpec,
        schedule: Schedule,
        invoke: Invoke,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert isinstance(spec.trigger, TimerTriggerSpec)
        self.spec = spec
        self.schedule = schedule
        self.invoke = invoke
        self.clock = clock
        self.last: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._current: asyncio.Task[InvocationResult] | None = None

    def describe(self, count: int = 5) -> list[datetime]:
        return self.schedule.occurrences(self.clock(), count)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer:{self.spec.name}")

    async def stop(self, drain_timeout: float) -> None:
        self._stopping.set()
        if self._current is not None and not self._current.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._current), drain_timeout)
            except TimeoutError:
                log.warning("Timer function '%s' still running at shutdown; cancelling it", self.spec.name)
                self._current.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _fire(self, scheduled: datetime, reason: str, is_past_due: bool, next_due: datetime) -> None:
        request = TimerRequest(
            past_due=is_past_due,
            schedule_status={
                "Last": _iso(self.last),
                "Next": _iso(next_due),
                "LastUpdated": _iso(self.clock()),
            },
            schedule={"AdjustForDST": True},
        )
        self.last = scheduled
        self._current = asyncio.create_task(self.invoke(self.spec, request, reason))
        await asyncio.shield(self._current)

    async def _run(self) -> None:
        trig = self.spec.trigger
        assert isinstance(trig, TimerTriggerSpec)
        now = self.clock()
        nxt = self.schedule.next_after(now)
        log.info(
            "The next 5 occurrences of the '%s' schedule (%s) will be: %s",
            self.spec.name,
            trig.schedule,
            ", ".join(o.isoformat() for o in self.schedule.occurrences(now, 5)),
        )
        if trig.run_on_startup:
            await self._fire(now, f"Timer fired at {now.isoformat()}", False, nxt)
        while not self._stopping.is_set():
            now = self.clock()
            delay = (nxt - now).total_seconds()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    break  # stopping
                except TimeoutError:
                    pass
            fired_at = self.clock()
            late = fired_at - nxt
            following = self.schedule.next_after(max(fired_at, nxt))
            await self._fire(
                nxt, f"Timer fired at {fired_at.isoformat()}", late > PAST_DUE_TOLERANCE, following
            )
            # Like the host, the next occurrence is computed from "now" after the invocation
            # completes: occurrences missed while it ran are skipped, not run in a burst.
            nxt = self.schedule.next_after(max(self.clock(), nxt))
