"""The process's long-lived clients, built once from the settings and handed to the services.

The trigger layer (`functions/`) is the composition root: it builds one `Runtime` per worker process on
first use and passes its parts down. Tests build their own `Runtime` (or its parts) explicitly; nothing
here is a module-level singleton that a test would have to reset.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.auth import TenantTokens, host_credential
from shared.clients.apis import Apis, Service
from shared.clients.keyvault import SecretStore, SigningKeys, secret_client
from shared.http import new_http_client
from shared.ratelimit import RateLimits
from shared.settings import load_settings
from shared.stores.integrations import IntegrationStore, TenantStore
from shared.stores.queues import SyncQueue, queue_client
from shared.stores.tables import Tables, table_service

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.auth import AppCredential
    from shared.http import ApiClient, Budget, CallStats
    from shared.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    credential: AsyncTokenCredential
    tables: Tables
    integrations: IntegrationStore
    tenants: TenantStore
    secrets: SecretStore
    queue: SyncQueue
    http: httpx.AsyncClient
    tokens: TenantTokens
    limits: RateLimits = field(default_factory=RateLimits)
    # The API's continuation key (a Key Vault secret), read on first use and kept for the process.
    continuation_keys: SigningKeys = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.continuation_keys = SigningKeys(self.secrets)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        credential = host_credential(settings)
        storage_credential = None if settings.storage_connection_string is not None else credential
        tables = Tables(table_service(settings, storage_credential))
        return cls(
            settings=settings,
            credential=credential,
            tables=tables,
            integrations=IntegrationStore(tables),
            tenants=TenantStore(tables),
            secrets=SecretStore(secret_client(settings.key_vault_url, credential)),
            queue=SyncQueue(queue_client(settings, storage_credential)),
            http=new_http_client(),
            tokens=TenantTokens(settings),
        )

    @property
    def apis(self) -> Apis:
        return Apis(self.settings, self.http, self.tokens, self.limits)

    def api(
        self, tenant_id: str, app: AppCredential, area: str, budget: Budget, stats: CallStats, *,
        service: Service = "graph", label: str | None = None,
    ) -> ApiClient:
        """An app-only client for Microsoft's `service` in `tenant_id` (`shared.clients.apis`)."""
        return self.apis.api(tenant_id, app, area, budget, stats, service=service, label=label)

    async def start(self) -> Runtime:
        await self.tables.ensure()
        return self

    async def close(self) -> None:
        await asyncio.gather(
            self.tables.close(), self.secrets.close(), self.queue.close(), self.http.aclose(),
            self.tokens.close(), self.credential.close(), return_exceptions=True,
        )


class RuntimeHolder:
    """Lazily builds the worker process's `Runtime` from the environment, once."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Runtime:
        if self._runtime is not None:
            return self._runtime
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runtime is None:
                self._runtime = await Runtime.build(load_settings()).start()
        return self._runtime
