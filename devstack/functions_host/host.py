"""The host: loads the app, starts HTTP, timers and queue listeners, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from .app_loader import FunctionSpec, LoadedApp, QueueTriggerSpec, TimerTriggerSpec, load_app
from .hostconfig import HostConfig, load_host_json
from .http_server import HttpFrontEnd, describe_function, new_host_id
from .invoke import InvocationResult, Invoker
from .ncrontab import Schedule, ScheduleError, schedule_timezone
from .queues import QueueKey, QueueListener, QueueOutputs, StorageClients
from .timers import TimerRunner

log = logging.getLogger("devstack.functions_host")

MANUAL_REASON = "This function was programmatically called via the host APIs."


class FunctionsHost:
    def __init__(
        self,
        app_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 7071,
        function_key: str | None = None,
        env: Mapping[str, str] | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        self.app_dir = app_dir.resolve()
        self.bind_host = host
        self.port = port
        self.function_key = function_key
        self.env = os.environ if env is None else env
        self.drain_timeout = drain_timeout
        self.host_id = new_host_id()
        self.config: HostConfig | None = None
        self.app: LoadedApp | None = None
        self.invoker: Invoker | None = None
        self.clients: StorageClients | None = None
        self.timers: list[TimerRunner] = []
        self.listeners: list[QueueListener] = []
        self.front: HttpFrontEnd | None = None
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def _invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> InvocationResult:
        assert self.invoker is not None
        return await self.invoker.invoke(spec, trigger_value, reason)

    def _on_output_sent(self, key: QueueKey) -> None:
        for listener in self.listeners:
            if listener.key == key:
                listener.wake()

    async def _trigger_now(self, spec: FunctionSpec, text: str) -> None:
        """Admin API: run a timer/queue function now (fire-and-forget, like the host)."""
        value: Any
        if isinstance(spec.trigger, TimerTriggerSpec):
            value = TimerRequest(past_due=False)
        else:
            value = QueueMessage(id=None, body=text.encode(), dequeue_count=1)  # type: ignore[no-untyped-call]
        task = asyncio.create_task(self._invoke(spec, value, MANUAL_REASON))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        started = time.monotonic()
        self.config = load_host_json(self.app_dir, self.env)
        self.app = load_app(self.app_dir, self.env)
        for name, why in self.app.errors.items():
            log.error("The '%s' function is in error: %s", name, why)
        self.clients = StorageClients(self.env)
        outputs = QueueOutputs(self.clients, self.config.queues.message_encoding)
        outputs.on_sent = self._on_output_sent
        self.invoker = Invoker(
            function_timeout=self.config.function_timeout,
            output_sink=outputs.send,
            app_dir=str(self.app_dir),
        )
        # Validate everything (schedules, connections) before serving anything, so a bad
        # setting is a start-up error rather than a silent dead trigger.
        for spec in self.app.functions:
            if isinstance(spec.trigger, TimerTriggerSpec):
                # %SETTING% was resolved by the loader; resolve only once (no recursion).
                try:
                    schedule = Schedule(spec.trigger.schedule, schedule_timezone(self.env))
                except ScheduleError as exc:
                    raise ScheduleError(f"function '{spec.name}': {exc}") from exc
                self.timers.append(TimerRunner(spec, schedule, self._invoke))
            elif isinstance(spec.trigger, QueueTriggerSpec):
                self.listeners.append(QueueListener(spec, self.clients, self.config.queues, self._invoke))
            for out in spec.queue_outputs:
                self.clients.connection(out.connection, f"function '{spec.name}' output '{out.name}'")

        self.front = HttpFrontEnd(
            functions=self.app.functions,
            route_prefix=self.config.route_prefix,
            function_key=self.function_key,
            body_limit=self.config.request_body_limit,
            invoke=self._invoke,
            host_id=self.host_id,
            trigger_function=self._trigger_now,
        )
        self._runner = web.AppRunner(self.front.make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_host, self.port, shutdown_timeout=self.drain_timeout)
        await site.start()

        base = (
            f"http://{'localhost' if self.bind_host in ('127.0.0.1', '::1') else self.bind_host}:{self.port}"
        )
        lines = ["", "Functions:", ""]
        for spec in self.app.functions:
            lines.append(f"        {describe_function(spec, self.front, base)}")
            lines.append("")
        log.info("\n".join(lines))
        for timer in self.timers:
            timer.start()
        for listener in self.listeners:
            listener.start()
        log.info("Host started (%dms)", (time.monotonic() - started) * 1000)

    async def stop(self) -> None:
        """Stop triggers, drain in-flight invocations (bounded), close the server."""
        log.info("Stopping host...")
        if self.front is not None:
            self.front.state = "Stopping"
        await asyncio.gather(
            *(listener.stop(self.drain_timeout) for listener in self.listeners),
            *(timer.stop(self.drain_timeout) for timer in self.timers),
        )
        if self._background:
            await asyncio.wait(set(self._background), timeout=self.drain_timeout)
        if self._runner is not None:
            # Waits up to shutdown_timeout for in-flight HTTP requests.
            await self._runner.cleanup()
        if self.clients is not None:
            await self.clients.close()
        if self.invoker is not None:
            self.invoker.shutdown()
        log.info("Job host stopped")
