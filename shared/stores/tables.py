"""Table Storage access, from a connection string (Azurite) or memsync's managed identity (Azure).

Table names are fixed here; partition keys keep one integration's data apart from another's, and one
tenant's assets in one partition so that batch transactions (at most 100 operations, one partition)
cover them: https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient, TableServiceClient

    from shared.settings import Settings

INTEGRATIONS_TABLE = "memsyncIntegrations"
TENANTS_TABLE = "memsyncTenants"
DEVICES_TABLE = "memsyncDevices"
SOFTWARE_TABLE = "memsyncSoftware"
DEVICE_SOFTWARE_TABLE = "memsyncDeviceSoftware"
RUNS_TABLE = "memsyncRuns"
ALERTS_TABLE = "memsyncAlerts"
ALL_TABLES = (
    INTEGRATIONS_TABLE,
    TENANTS_TABLE,
    DEVICES_TABLE,
    SOFTWARE_TABLE,
    DEVICE_SOFTWARE_TABLE,
    RUNS_TABLE,
    ALERTS_TABLE,
)


def table_service(settings: Settings, credential: AsyncTokenCredential | None) -> TableServiceClient:
    """The async table service client for the configured storage."""
    from azure.data.tables.aio import TableServiceClient

    if settings.storage_connection_string is not None:
        return TableServiceClient.from_connection_string(
            settings.storage_connection_string.get_secret_value()
        )
    if credential is None:
        raise ValueError("identity-based storage needs memsync's credential")
    endpoint = settings.storage_table_service_uri or (
        f"https://{settings.storage_account_name}.table.core.windows.net"
    )
    return TableServiceClient(endpoint=endpoint, credential=credential)


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
        from azure.core.exceptions import ResourceExistsError

        for name in ALL_TABLES:
            with contextlib.suppress(ResourceExistsError):
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
