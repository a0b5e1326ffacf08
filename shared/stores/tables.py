"""Table Storage access, from a connection string (Azurite) or memsync's managed identity (Azure).

Table names are fixed here; partition keys keep one integration's data apart from another's, and one
tenant's assets in one partition so that batch transactions (at most 100 operations, one partition)
cover them: https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared import sdk

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient, TableServiceClient

    from shared.settings import Settings

INTEGRATIONS_TABLE = "memsyncIntegrations"
TENANTS_TABLE = "memsyncTenants"
DEVICES_TABLE = "memsyncDevices"
SOFTWARE_TABLE = "memsyncSoftware"
DEVICE_SOFTWARE_TABLE = "memsyncDeviceSoftware"
AUTOPILOT_DEVICES_TABLE = "memsyncAutopilotDevices"
ENTRA_DEVICES_TABLE = "memsyncEntraDevices"
VULNERABILITIES_TABLE = "memsyncVulnerabilities"
LICENCES_TABLE = "memsyncLicences"
RUNS_TABLE = "memsyncRuns"
ALERTS_TABLE = "memsyncAlerts"
AUDIT_TABLE = "memsyncAudit"
log = logging.getLogger(__name__)

ALL_TABLES = (
    INTEGRATIONS_TABLE,
    TENANTS_TABLE,
    DEVICES_TABLE,
    SOFTWARE_TABLE,
    DEVICE_SOFTWARE_TABLE,
    AUTOPILOT_DEVICES_TABLE,
    ENTRA_DEVICES_TABLE,
    VULNERABILITIES_TABLE,
    LICENCES_TABLE,
    RUNS_TABLE,
    ALERTS_TABLE,
    AUDIT_TABLE,
)


def table_service(settings: Settings, credential: AsyncTokenCredential | None) -> TableServiceClient:
    """The async table service client for the configured storage."""
    if settings.storage_connection_string is not None:
        return sdk.TableServiceClient.from_connection_string(
            settings.storage_connection_string.get_secret_value()
        )
    if credential is None:
        raise ValueError("identity-based storage needs memsync's credential")
    endpoint = settings.storage_table_service_uri or (
        f"https://{settings.storage_account_name}.table.core.windows.net"
    )
    return sdk.TableServiceClient(endpoint=endpoint, credential=credential)


T = TypeVar("T")

# How often a guarded update re-reads and retries when someone else wrote the record in between. Writers
# of one record are few (the sync's lease, discovery, diagnosis, the expiry timer, an admin's request), so
# eight lost races in a row mean something is rewriting the row in a loop: better said than spun on.
WRITE_ATTEMPTS = 8


class Contended(RuntimeError):
    """The record changed between the read and the guarded write `WRITE_ATTEMPTS` times in a row."""


async def guarded_update(
    read: Callable[[], Awaitable[tuple[T, str] | None]],
    replace: Callable[[T, str], Awaitable[bool]],
    change: Callable[[T], T | None],
    what: str,
) -> T | None:
    """Optimistic concurrency for one record: read it with its ETag, apply `change`, write the result
    If-Match that ETag, and start again from a fresh read when someone wrote in between.
    (Update Entity with If-Match: https://learn.microsoft.com/rest/api/storageservices/update-entity2)

    `change` is a pure function of the stored record: it returns the record to write, or None (or the
    record unchanged) for no write; it may raise to abandon the update, and the exception reaches the
    caller untouched. Returns the record as stored after the call, or None when there is no such record.
    Raises `Contended` after `WRITE_ATTEMPTS` lost races.
    """
    for _ in range(WRITE_ATTEMPTS):
        found = await read()
        if found is None:
            return None
        current, etag = found
        updated = change(current)
        if updated is None or updated == current:
            return current
        if await replace(updated, etag):
            return updated
    raise Contended(f"{what} changed under {WRITE_ATTEMPTS} guarded writes in a row; not written")


async def unless_contended(update: Awaitable[T | None]) -> T | None:
    """`update`, or None (logged) when its record kept changing: for a write the next run makes again
    (a diagnosis, a discovery note, an expiry date, an alert's delivery state)."""
    try:
        return await update
    except Contended as exc:
        log.warning("%s; left for the next run", exc)
        return None


class Tables:
    """The table clients memsync uses, created once per process (tables are created if absent)."""

    def __init__(self, service: TableServiceClient) -> None:
        self.service = service
        self._ensured = False

    def client(self, name: str) -> TableClient:
        return self.service.get_table_client(name)

    async def ensure(self) -> None:
        if self._ensured:
            return

        for name in ALL_TABLES:
            with contextlib.suppress(sdk.ResourceExistsError):
                await self.service.create_table(name)
        self._ensured = True

    async def close(self) -> None:
        await self.service.close()


# Table Storage holds strings, numbers, bools and datetimes; nested JSON goes into string columns.
def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(value: Any, default: Any = None) -> Any:
    if not isinstance(value, str) or not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def odata_quote(value: str) -> str:
    """Quote a string literal for a table `$filter`: single quotes doubled (OData ABNF)."""
    return "'" + value.replace("'", "''") + "'"


# -- pipelined entity-group transactions -------------------------------------------------------------

BATCH_SIZE = 100  # the service's limit per entity-group transaction
BATCHES_IN_FLIGHT = 4
Operation = tuple[str, dict[str, Any], dict[str, Any]]  # (kind "upsert" | "delete", entity, options)


class TransactionPipeline:
    """Sends one partition's operations in transactions of up to 100, a few in flight at once.

    `add` waits when `in_flight` transactions are outstanding (back-pressure: a listing never runs far
    ahead of its writes). A transaction the service refuses as a whole (one bad entity, a row deleted
    meanwhile) is redone one operation at a time; an entity refused on its own with a 4xx is counted in
    `failed` and logged by key, never by content. `max_chars` closes a batch early so the body stays
    under the 4 MiB transaction limit.
    """

    def __init__(self, table: TableClient, *, label: str, in_flight: int = BATCHES_IN_FLIGHT,
                 max_chars: int | None = None) -> None:
        self.table = table
        self.label = label
        self.failed = 0
        self.transactions = 0
        self._in_flight = in_flight
        self._max_chars = max_chars
        self._buffer: list[Operation] = []
        self._buffer_chars = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._errors: list[BaseException] = []

    async def add(self, operation: Operation) -> None:
        if self._errors:
            raise self._errors[0]
        if self._max_chars is not None:
            chars = sum(len(v) for v in operation[1].values() if isinstance(v, str))
            if self._buffer and self._buffer_chars + chars > self._max_chars:
                await self._spawn()
            self._buffer_chars += chars
        self._buffer.append(operation)
        if len(self._buffer) >= BATCH_SIZE:
            await self._spawn()

    async def _spawn(self) -> None:
        if not self._buffer:
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._in_flight)
        chunk, self._buffer, self._buffer_chars = self._buffer, [], 0
        await self._slots.acquire()
        task = asyncio.create_task(self._submit(chunk))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        assert self._slots is not None
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(task.exception())  # type: ignore[arg-type]

    async def _submit(self, chunk: list[Operation]) -> None:
        self.transactions += 1
        try:
            await self.table.submit_transaction(chunk)
            return
        except sdk.TableTransactionError as exc:
            log.warning("transaction of %d operations in %s refused (%s); sending them one by one",
                        len(chunk), self.label, getattr(exc, "error_code", None))
        for operation in chunk:
            await self._one(operation)

    async def _one(self, operation: Operation) -> None:
        kind, entity, options = operation
        try:
            if kind == "delete":
                await self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
            else:
                await self.table.upsert_entity(entity, **options)
        except sdk.ResourceNotFoundError:
            if kind != "delete":  # deleting what is already gone is done
                raise
        except sdk.HttpResponseError as exc:
            if exc.status_code is None or not 400 <= exc.status_code < 500 or exc.status_code == 429:
                raise
            self.failed += 1
            log.warning("%s %s not stored: %s", self.label, entity["RowKey"],
                        getattr(exc, "error_code", None) or exc.status_code)

    async def close(self) -> None:
        """Send what is buffered and wait for every transaction; raises the first failure."""
        if not self._errors:
            await self._spawn()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._errors:
            raise self._errors[0]
