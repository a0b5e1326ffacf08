"""Invoke a user function the way the host + Python worker do.

* arguments are matched to parameters by binding name; ``context`` gets a Context;
* ``async def`` functions run on the host's event loop, plain functions in a thread
  pool sized like the worker's (PYTHON_THREADPOOL_THREAD_COUNT)
  https://learn.microsoft.com/azure/azure-functions/python-scale-performance-reference#use-multiple-language-worker-processes
* every invocation is logged "Executing ..." / "Executed ... (Succeeded|Failed ...)" with
  its id, and log records emitted while it runs carry that id (contextvar + Filter);
* functionTimeout is enforced (async functions are cancelled; a sync function's thread
  cannot be killed, so it is abandoned and the invocation fails)
  https://learn.microsoft.com/azure/azure-functions/functions-host-json#functiontimeout
* output bindings are only flushed when the function succeeds, as the host does.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc

from .app_loader import FunctionSpec, QueueOutputSpec

log = logging.getLogger("devstack.functions_host")

invocation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)
function_name_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("function_name", default=None)


class InvocationContextFilter(logging.Filter):
    """Stamp records with ``invocation_id`` / ``function_name`` of the running invocation."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "invocation_id"):
            record.invocation_id = invocation_id_var.get()
        if not hasattr(record, "function_name"):
            record.function_name = function_name_var.get()
        return True


class Out(func.Out[Any]):
    """Concrete ``func.Out`` handed to output-binding parameters."""

    def __init__(self) -> None:
        self._value: Any = None
        self.is_set = False

    def set(self, val: Any) -> None:
        self._value = val
        self.is_set = True

    def get(self) -> Any:
        return self._value


class _TraceContext(azf_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(azf_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class Context(azf_abc.Context):
    """Concrete ``func.Context`` (the worker passes one to a ``context`` parameter)."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]  # base is mis-annotated
        return self._tls

    @property
    def trace_context(self) -> azf_abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> azf_abc.RetryContext:
        return _RetryContext()


@dataclass
class InvocationResult:
    invocation_id: str
    succeeded: bool
    return_value: Any = None
    error: BaseException | None = None
    duration_ms: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)


class OutputConversionError(TypeError):
    """A value set on a queue output binding has a type the binding cannot send."""


def queue_output_messages(value: Any) -> list[str | bytes]:
    """Normalise a queue output value to messages (str/bytes/QueueMessage or a list of them).

    Same types the worker's QueueMessageOutConverter accepts.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, collections.abc.Iterable) and not isinstance(value, collections.abc.Mapping):
        out: list[str | bytes] = []
        for item in value:
            if isinstance(item, (str, bytes)):
                out.append(item)
            elif isinstance(item, func.QueueMessage):
                out.append(item.get_body())
            else:
                raise OutputConversionError(
                    f"invalid data type in output queue message list: {type(item).__name__}"
                )
        return out
    raise OutputConversionError(
        f"queue output expects str, bytes, QueueMessage or a list of them, got {type(value).__name__}"
    )


OutputSink = Callable[[QueueOutputSpec, list[str | bytes]], Awaitable[None]]


class Invoker:
    def __init__(
        self,
        *,
        function_timeout: timedelta | None,
        output_sink: OutputSink,
        app_dir: str,
        thread_count: int | None = None,
    ) -> None:
        self.function_timeout = function_timeout
        self.output_sink = output_sink
        self.app_dir = app_dir
        if thread_count is None:
            raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
            thread_count = int(raw) if raw else min(32, (os.cpu_count() or 1) + 4)
        self.executor = ThreadPoolExecutor(max_workers=thread_count, thread_name_prefix="func-sync")
        self.in_flight: set[asyncio.Task[Any]] = set()

    def shutdown(self) -> None:
        # Do not wait: a timed-out sync function may still be running in a thread.
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        reason: str,
        *,
        invocation_id: str | None = None,
    ) -> InvocationResult:
        """Run one invocation; never raises for user errors (they become Failed results)."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            return await self._invoke(spec, trigger_value, reason, invocation_id or str(uuid.uuid4()))
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _invoke(
        self, spec: FunctionSpec, trigger_value: Any, reason: str, inv_id: str
    ) -> InvocationResult:
        id_token = invocation_id_var.set(inv_id)
        name_token = function_name_var.set(spec.name)
        started = time.monotonic()
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, inv_id)
        outs: dict[str, Out] = {o.name: Out() for o in spec.queue_outputs if o.name != "$return"}
        kwargs: dict[str, Any] = {}
        for p in spec.params:
            if p == spec.trigger_param:
                kwargs[p] = trigger_value
            elif p in outs:
                kwargs[p] = outs[p]
            elif p == "context":
                kwargs[p] = Context(inv_id, spec.name, self.app_dir)
        result = InvocationResult(inv_id, False)
        try:
            result.return_value = await self._call(spec, kwargs, inv_id)
            # Flush output bindings only after success (the host discards them on failure).
            for o in spec.queue_outputs:
                value = result.return_value if o.name == "$return" else outs[o.name].get()
                messages = queue_output_messages(value)
                if messages:
                    await self.output_sink(o, messages)
                result.outputs[o.name] = value
            result.succeeded = True
        except asyncio.CancelledError:
            result.error = asyncio.CancelledError("invocation cancelled (host shutting down)")
            self._log_done(spec, inv_id, started, result)
            raise
        except Exception as exc:
            result.error = exc
            # Same wording as the host's failure log; the traceback stays server-side.
            log.error(
                "Exception while executing function: Functions.%s. Result: Failure Exception: %s: %s",
                spec.name,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        finally:
            invocation_id_var.reset(id_token)
            function_name_var.reset(name_token)
        self._log_done(spec, inv_id, started, result)
        return result

    def _log_done(self, spec: FunctionSpec, inv_id: str, started: float, result: InvocationResult) -> None:
        result.duration_ms = int((time.monotonic() - started) * 1000)
        status = "Succeeded" if result.succeeded else "Failed"
        log.log(
            logging.INFO if result.succeeded else logging.ERROR,
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
            spec.name,
            status,
            inv_id,
            result.duration_ms,
            extra={"invocation_id": inv_id, "function_name": spec.name},
        )

    async def _call(self, spec: FunctionSpec, kwargs: dict[str, Any], inv_id: str) -> Any:
        timeout = self.function_timeout.total_seconds() if self.function_timeout else None
        if spec.is_async:
            awaitable: Awaitable[Any] = spec.func(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()  # so function logs carry the invocation id
            awaitable = loop.run_in_executor(self.executor, lambda: ctx.run(spec.func, **kwargs))
        cm = asyncio.timeout(timeout)
        try:
            async with cm:
                return await awaitable
        except TimeoutError as exc:
            if not cm.expired():
                raise  # the function itself raised TimeoutError
            log.error(
                "Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). "
                "Initiating cancellation.",
                self.function_timeout,
                spec.name,
                inv_id,
            )
            raise FunctionTimeoutError(f"function timed out after {self.function_timeout}") from exc


class FunctionTimeoutError(TimeoutError):
    """functionTimeout elapsed."""
