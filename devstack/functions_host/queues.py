"""Azure Storage queue trigger listener and queue output binding.

Semantics copied from the Storage Queues extension (5.x) that the real host runs:
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#polling-algorithm
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#concurrency
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json

* polling: 100 ms after a batch was found; when idle a randomised exponential back-off
  (200 ms, 400 ms, ...) up to maxPollingInterval. A message written by an output binding
  of this host to a queue it listens on wakes that listener at once (the host's
  "shared queue watcher" fast path);
* concurrency: a batch of up to batchSize is fetched whenever the number of messages in
  flight is at or below newBatchThreshold (so at most batchSize + newBatchThreshold);
* a message is leased for 10 minutes and the lease renewed while the function runs;
* success -> delete; failure -> if DequeueCount >= maxDequeueCount copy to
  ``<queue>-poison`` and delete, else make it visible again after visibilityTimeout;
* messageEncoding base64 (default) / none. A message that is not valid base64 is moved to
  the poison queue straight away without invoking the function, as the 5.x extension does
  (Azure/azure-sdk-for-net#18326), and the reason is logged (#21449 complained it was not).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueMessage as StorageQueueMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from .app_loader import FunctionSpec, QueueOutputSpec, QueueTriggerSpec
from .appsettings import storage_connection_string
from .hostconfig import QueuesOptions
from .invoke import InvocationResult

log = logging.getLogger("devstack.functions_host")

# The extension leases a dequeued message for 10 minutes and renews it at half-time.
MESSAGE_LEASE = timedelta(minutes=10)
# Minimum polling interval (docs: "waits 100 milliseconds and then checks again").
MIN_POLL = timedelta(milliseconds=100)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    AzureError,
    aiohttp.ClientError,
    OSError,
    asyncio.TimeoutError,
)


class MessageDecodeError(ValueError):
    """The raw message text is not valid for the configured messageEncoding."""


def encode_message(message: str | bytes, encoding: str) -> str:
    """Encode a message body as the host writes it to the queue."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageDecodeError("binary output needs messageEncoding 'base64'") from exc


def decode_message(raw: str, encoding: str) -> bytes:
    """Decode raw queue text to the body bytes handed to the function."""
    if encoding == "base64":
        # .NET's Convert.FromBase64String ignores white space; anything else is invalid.
        compact = re.sub(r"\s+", "", raw)
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MessageDecodeError(f"the message is not a valid Base-64 string ({exc})") from exc
    return raw.encode("utf-8")


class StorageClients:
    """Caches async queue clients per connection string; creates queues once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._services: dict[str, QueueServiceClient] = {}
        self._created: set[tuple[str, str]] = set()

    def connection(self, setting: str, where: str) -> str:
        return storage_connection_string(setting, self.env, where)

    def queue(self, conn: str, name: str) -> QueueClient:
        svc = self._services.get(conn)
        if svc is None:
            # No encode/decode policies: we handle messageEncoding ourselves so a bad
            # message can be detected per message instead of failing the whole batch.
            # The SDK's default retry waits 15 s+ between attempts; against a local Azurite
            # that is being restarted we want to recover within a second or two.
            svc = QueueServiceClient.from_connection_string(
                conn,
                # Passed through to the SDK's ExponentialRetry: 0.5 s, 2.5 s, 4.5 s.
                initial_backoff=0.5,
                increment_base=2,
                random_jitter_range=0,
                retry_total=3,
                connection_timeout=5,
                read_timeout=30,
            )
            self._services[conn] = svc
        return svc.get_queue_client(name)

    async def ensure_queue(self, conn: str, name: str, *, force: bool = False) -> QueueClient:
        client = self.queue(conn, name)
        if force or (conn, name) not in self._created:
            with contextlib.suppress(ResourceExistsError):  # already there: fine
                await client.create_queue()
            self._created.add((conn, name))
        return client

    def forget(self, conn: str, name: str) -> None:
        """Forget that a queue exists (e.g. after Azurite restarted in memory)."""
        self._created.discard((conn, name))

    async def close(self) -> None:
        for svc in self._services.values():
            try:
                await svc.close()
            except TRANSIENT_ERRORS as exc:
                log.debug("closing queue client: %s", exc)
        self._services.clear()


@dataclass(frozen=True)
class QueueKey:
    connection: str  # resolved connection string
    queue: str


class QueueOutputs:
    """The queue output binding: sends messages with the host's encoding."""

    def __init__(self, clients: StorageClients, encoding: str) -> None:
        self.clients = clients
        self.encoding = encoding
        self.on_sent: Callable[[QueueKey], None] = lambda key: None

    async def send(self, output: QueueOutputSpec, messages: list[str | bytes]) -> None:
        conn = self.clients.connection(output.connection, f"queue output '{output.name}'")
        client = await self.clients.ensure_queue(conn, output.queue_name)
        encoded = [encode_message(m, self.encoding) for m in messages]
        for text in encoded:
            try:
                await client.send_message(text)
            except ResourceNotFoundError:
                # Queue deleted (or Azurite restarted) since we created it: recreate once.
                client = await self.clients.ensure_queue(conn, output.queue_name, force=True)
                await client.send_message(text)
        self.on_sent(QueueKey(conn, output.queue_name))


Invoke = Callable[[FunctionSpec, Any, str], Awaitable[InvocationResult]]


class QueueListener:
    """Polls one queue for one queue-triggered function."""

    def __init__(
        self,
        spec: FunctionSpec,
        clients: StorageClients,
        options: QueuesOptions,
        invoke: Invoke,
    ) -> None:
        assert isinstance(spec.trigger, QueueTriggerSpec)
        self.spec = spec
        self.trigger: QueueTriggerSpec = spec.trigger
        self.clients = clients
        self.options = options
        self.invoke = invoke
        self.conn = clients.connection(self.trigger.connection, f"function '{spec.name}'")
        self.key = QueueKey(self.conn, self.trigger.queue_name)
        self.poison_name = f"{self.trigger.queue_name}-poison"
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"queue-listener:{self.spec.name}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, drain_timeout: float) -> None:
        """Stop polling; wait up to drain_timeout for in-flight messages to finish."""
        self._stopping.set()
        self._wake.set()
        if self._runner is not None:
            # Bounded: a poll stuck in SDK retries must not hold shutdown forever. Cancelling
            # mid-receive only delays those messages until their lease expires.
            _done, still = await asyncio.wait({self._runner}, timeout=drain_timeout)
            for t in still:
                t.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=drain_timeout)
            for t in pending:
                t.cancel()  # lease expires and the message becomes visible again
            if pending:
                log.warning(
                    "%d message(s) of '%s' still running at shutdown were cancelled",
                    len(pending),
                    self.spec.name,
                )
                await asyncio.gather(*pending, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # ------------------------------------------------------------------ polling
    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):  # timeout = the normal poll tick
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _run(self) -> None:
        idle_delay = MIN_POLL.total_seconds()
        max_delay = self.options.max_polling_interval.total_seconds()
        while not self._stopping.is_set():
            if self.in_flight > self.options.new_batch_threshold:
                self._slot_free.clear()
                await asyncio.wait(
                    [
                        asyncio.ensure_future(self._slot_free.wait()),
                        asyncio.ensure_future(self._stopping.wait()),
                    ],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                continue
            try:
                client = await self.clients.ensure_queue(self.conn, self.trigger.queue_name)
                messages = await self._receive(client)
            except ResourceNotFoundError:
                self.clients.forget(self.conn, self.trigger.queue_name)
                messages = []
            except TRANSIENT_ERRORS as exc:
                # Storage unreachable (e.g. Azurite restarting): keep the host alive and back off.
                log.warning(
                    "Queue '%s' poll failed for 'Functions.%s': %s",
                    self.trigger.queue_name,
                    self.spec.name,
                    exc,
                )
                self.clients.forget(self.conn, self.trigger.queue_name)
                messages = []
            if self._stopping.is_set():
                # Messages received during shutdown go back to the queue immediately.
                for m in messages:
                    await self._release(m, timedelta(0))
                break
            if messages:
                for m in messages:
                    task = asyncio.create_task(self._process(m), name=f"queue-msg:{m.id}")
                    self._tasks.add(task)
                    task.add_done_callback(self._on_done)
                idle_delay = MIN_POLL.total_seconds()
                await self._sleep(MIN_POLL.total_seconds())
            else:
                idle_delay = min(max_delay, idle_delay * 2)
                # Randomised back-off, as the extension's RandomizedExponentialBackoffStrategy.
                await self._sleep(min(max_delay, idle_delay * random.uniform(0.8, 1.0)))

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "Queue message handler crashed for 'Functions.%s'", self.spec.name, exc_info=task.exception()
            )

    async def _receive(self, client: QueueClient) -> list[StorageQueueMessage]:
        out: list[StorageQueueMessage] = []
        pager = client.receive_messages(
            messages_per_page=self.options.batch_size,
            max_messages=self.options.batch_size,
            visibility_timeout=int(MESSAGE_LEASE.total_seconds()),
        )
        async for m in pager:
            out.append(m)
        return out

    # --------------------------------------------------------------- processing
    async def _process(self, m: StorageQueueMessage) -> None:
        if (m.dequeue_count or 0) > self.options.max_dequeue_count:
            # A worker crashed mid-invocation often enough: poison without invoking.
            await self._poison(m, m.content)
            return
        try:
            body = decode_message(m.content or "", self.options.message_encoding)
        except MessageDecodeError as exc:
            log.error(
                "Message '%s' on queue '%s' cannot be decoded with messageEncoding '%s' (%s). "
                "Moving message to queue '%s' without invoking 'Functions.%s'.",
                m.id,
                self.trigger.queue_name,
                self.options.message_encoding,
                exc,
                self.poison_name,
                self.spec.name,
            )
            # Keep the text intact for a poison-queue consumer: encode it as the host would.
            await self._poison(m, encode_message(m.content or "", self.options.message_encoding))
            return

        # azure.functions.queue.QueueMessage is the worker's concrete class (with dequeue
        # count and times); func.QueueMessage is the slimmer base.
        qmsg = QueueMessage(  # type: ignore[no-untyped-call]
            id=m.id,
            body=body,
            dequeue_count=m.dequeue_count,
            expiration_time=m.expires_on,
            insertion_time=m.inserted_on,
            time_next_visible=m.next_visible_on,
            pop_receipt=m.pop_receipt,
        )
        lease = _Lease(self, m)
        lease.start()
        try:
            result = await self.invoke(
                self.spec, qmsg, f"New queue message detected on '{self.trigger.queue_name}'."
            )
        finally:
            await lease.stop()
        if result.succeeded:
            await self._delete(m)
        elif (m.dequeue_count or 0) >= self.options.max_dequeue_count:
            await self._poison(m, m.content)
        else:
            await self._release(m, self.options.visibility_timeout)

    async def _client(self) -> QueueClient:
        return await self.clients.ensure_queue(self.conn, self.trigger.queue_name)

    async def _delete(self, m: StorageQueueMessage) -> None:
        try:
            await (await self._client()).delete_message(m.id, m.pop_receipt)
        except ResourceNotFoundError:
            # Lease lost (pop receipt changed) or message gone: the host logs and moves on.
            log.warning("Message '%s' was already deleted or its lease expired", m.id)
        except TRANSIENT_ERRORS as exc:
            log.warning("Could not delete message '%s' (it will be delivered again): %s", m.id, exc)

    async def _release(self, m: StorageQueueMessage, delay: timedelta) -> None:
        try:
            await (await self._client()).update_message(
                m.id, m.pop_receipt, visibility_timeout=int(delay.total_seconds())
            )
        except ResourceNotFoundError:
            log.warning("Message '%s' vanished before it could be released", m.id)
        except TRANSIENT_ERRORS as exc:
            log.warning("Could not release message '%s' (visible again when its lease ends): %s", m.id, exc)

    async def _poison(self, m: StorageQueueMessage, text: str | None) -> None:
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self.poison_name,
        )
        try:
            poison = await self.clients.ensure_queue(self.conn, self.poison_name)
            await poison.send_message(text or "")
        except TRANSIENT_ERRORS as exc:
            # Keep the original: it is retried (and poisoned) later rather than lost.
            log.error("Could not move message '%s' to '%s': %s", m.id, self.poison_name, exc)
            await self._release(m, self.options.visibility_timeout)
            return
        await self._delete(m)


class _Lease:
    """Keeps a message invisible while its function runs (renewed every half lease)."""

    def __init__(self, listener: QueueListener, m: StorageQueueMessage) -> None:
        self.listener = listener
        self.m = m
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew(), name=f"lease:{self.m.id}:{uuid.uuid4().hex[:6]}")

    async def _renew(self) -> None:
        half = MESSAGE_LEASE.total_seconds() / 2
        while True:
            await asyncio.sleep(half)
            try:
                receipt = await (await self.listener._client()).update_message(
                    self.m.id, self.m.pop_receipt, visibility_timeout=int(MESSAGE_LEASE.total_seconds())
                )
                self.m.pop_receipt = receipt.pop_receipt
                self.m.next_visible_on = receipt.next_visible_on
            except TRANSIENT_ERRORS as exc:
                log.warning("Could not renew the lease of message '%s': %s", self.m.id, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
