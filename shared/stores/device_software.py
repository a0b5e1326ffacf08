"""Per-device installed software in Table Storage (`memsyncDeviceSoftware`).

Partition = the assets' partition (`{integration_id}_{tenant_id}`). Rows (see `shared.mapping.inventory`):
`d|{deviceId}|000` holds a device's app ids, `a|{appId}|000` an app's device ids, in string columns
`ids0..idsN` of at most 30,000 characters, further parts `001`, `002`, ... when one row would pass the
1 MiB entity limit. Each row carries `contentHash`: the sync loads the partition's hashes (one query of
two columns), writes only rows whose hash changed and deletes rows no longer in a complete inventory.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared import sdk
from shared.mapping.inventory import Side, ids_of, prefix_end, row_prefix
from shared.stores.assets import partition_key
from shared.stores.tables import DEVICE_SOFTWARE_TABLE, Tables, TransactionPipeline, odata_quote

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

log = logging.getLogger(__name__)

# A transaction's body may hold at most 4 MiB; an app's row can hold ~1 MB of ids, so batches close early.
BATCH_MAX_CHARS = 1_500_000  # UTF-16 in the payload: ~3 MB


class EntityWriter:
    """Upserts (REPLACE) and deletes of one partition's rows through a `TransactionPipeline`."""

    def __init__(self, table: TableClient) -> None:
        self._pipeline = TransactionPipeline(table, label="device software rows", max_chars=BATCH_MAX_CHARS)

    async def upsert(self, entity: dict[str, Any]) -> None:
        await self._pipeline.add(("upsert", entity, {"mode": sdk.UpdateMode.REPLACE}))

    async def delete(self, partition: str, row_key: str) -> None:
        await self._pipeline.add(("delete", {"PartitionKey": partition, "RowKey": row_key}, {}))

    async def close(self) -> None:
        await self._pipeline.close()


class DeviceSoftwareStore:
    def __init__(self, tables: Tables) -> None:
        self._table = tables.client(DEVICE_SOFTWARE_TABLE)

    @property
    def table(self) -> TableClient:
        return self._table

    async def load_hashes(self, integration_id: str, tenant_id: str) -> dict[str, str]:
        """Row key -> content hash of every row of the tenant's inventory (one query, two columns)."""
        query = f"PartitionKey eq {odata_quote(partition_key(integration_id, tenant_id))}"
        hashes: dict[str, str] = {}
        async for entity in self._table.query_entities(query, select=["RowKey", "contentHash"],
                                                       results_per_page=1000):
            hashes[entity["RowKey"]] = str(entity.get("contentHash") or "")
        return hashes

    def writer(self) -> EntityWriter:
        return EntityWriter(self._table)

    async def ids(self, integration_id: str, tenant_id: str, side: Side, item_id: str) -> list[str] | None:
        """The ids stored for one device (its apps) or app (its devices), in order; None when none are."""
        prefix = row_prefix(side, item_id)
        query = (f"PartitionKey eq {odata_quote(partition_key(integration_id, tenant_id))} and "
                 f"RowKey ge {odata_quote(prefix)} and RowKey lt {odata_quote(prefix_end(prefix))}")
        found = False
        out: list[str] = []
        async for entity in self._table.query_entities(query, results_per_page=100):
            found = True
            out.extend(ids_of(entity))
        return out if found else None


def page_after(ids: Iterable[str], after: str | None, top: int) -> tuple[list[str], str | None]:
    """`top` ids after `after` (ids are stored sorted) and the last one shown when more follow."""
    ordered = sorted(ids)
    start = 0
    if after is not None:
        start = bisect.bisect_right(ordered, after)
    page = ordered[start:start + top]
    more = start + top < len(ordered)
    return page, (page[-1] if more and page else None)
