"""The sync queue (docs/api.md, The sync queue): one job per tenant, base64 text as the Functions host expects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import sdk
from shared.settings import SYNC_QUEUE

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.queue.aio import QueueClient

    from shared.settings import Settings

Trigger = Literal["schedule", "registration", "manual"]
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class SyncJob(BaseModel):
    """The queue message: exactly the four documented fields, nothing secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    integration_id: str = Field(alias="integrationId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    tenant_id: str = Field(alias="tenantId", pattern=_GUID)
    run_id: str = Field(alias="runId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    trigger: Trigger

    def to_message(self) -> str:
        return self.model_dump_json(by_alias=True)


def queue_client(settings: Settings, credential: AsyncTokenCredential | None, name: str = SYNC_QUEUE) -> QueueClient:
    """Async client whose messages are base64, the host's default `messageEncoding`."""
    encode, decode = sdk.BinaryBase64EncodePolicy(), sdk.BinaryBase64DecodePolicy()
    if settings.storage_connection_string is not None:
        return sdk.QueueClient.from_connection_string(
            settings.storage_connection_string.get_secret_value(), name,
            message_encode_policy=encode, message_decode_policy=decode,
        )
    if credential is None:
        raise ValueError("identity-based storage needs memsync's credential")
    endpoint = settings.storage_queue_service_uri or f"https://{settings.storage_account_name}.queue.core.windows.net"
    return sdk.QueueClient(account_url=endpoint, queue_name=name, credential=credential,
                           message_encode_policy=encode, message_decode_policy=decode)


class SyncQueue:
    """Enqueues sync jobs, many at once."""

    def __init__(self, client: QueueClient, *, concurrency: int = 32) -> None:
        self._client = client
        self._concurrency = asyncio.Semaphore(concurrency)
        self._created = False

    async def _ensure(self) -> None:
        if self._created:
            return
        with contextlib.suppress(sdk.ResourceExistsError):
            await self._client.create_queue()
        self._created = True

    async def enqueue(self, jobs: list[SyncJob], *, delays: Mapping[str, int] | None = None) -> int:
        """Send each job; one whose tenant id is in `delays` stays invisible for that many seconds (Put
        Message's visibilitytimeout, at most 7 days:
        https://learn.microsoft.com/rest/api/storageservices/put-message)."""
        await self._ensure()
        delays = delays or {}

        async def send(job: SyncJob) -> None:
            wait = delays.get(job.tenant_id.lower())
            async with self._concurrency:
                await self._client.send_message(job.to_message().encode(), visibility_timeout=wait or None)

        await asyncio.gather(*(send(j) for j in jobs))
        return len(jobs)

    async def close(self) -> None:
        await self._client.close()
