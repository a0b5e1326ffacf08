"""Devices and software of customer tenants in Table Storage, and the read API the HTTP layer pages.

Layout. Partition = `f"{integration_id}_{tenant_id}"`: one tenant of one integration, so two
integrations never share a partition, and a tenant's assets fit entity-group transactions (at most 100
operations, one partition: https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions).
Row = the Microsoft id. Each output field
(docs/api.md, Device and Software title) is its own typed column, and so is each member of an object
field (`Entity.nested`: a device's `defender.riskScore` is the column `defenderRiskScore`), so a BI tool
reads plain columns. Bookkeeping columns: `contentHash` (change detection), `layout`, `firstSeenAt`,
`lastSeenAt`, `removedAt` and `isRemoved` (Table Storage cannot filter on a missing property, so removal
also has a boolean to filter on), and `deviceNameLower` / `serialLower` for search.

Layout. `layout` is `LAYOUT` on every row written now. Rows of the first layout (no `layout`; the
Defender summary as JSON text in `defender`) are read as before, and the sync rewrites each one it
lists on its first run (`load_state` gives them no content hash, so they count as changed).

Each partition also holds one marker row, `~listing`, with the time of the last *complete* listing.
Asset row keys are printable ASCII that never start with "~" (see `shared.mapping.devices.safe_id`), so
the marker sorts after every asset and asset queries exclude it with `RowKey lt '~'`. An asset still
present reads `lastSeenAt` as the later of its stored value and that marker: an unchanged asset needs no
write to stay current.

Paging. Continuation tokens are opaque to callers: base64 of `{"v": 1, "after": <last row key handled>}`.
Within one partition rows come in row-key order, so "rows after this key" resumes exactly.

Search. Table Storage has no `contains`; `search` is a case-insensitive substring match on the device
name or serial number (software: the display name or publisher), applied while scanning the
tenant's partition in row-key order. A call examines at most `SEARCH_SCAN_LIMIT` rows: it may then return
fewer than `top` matches (even none) together with a `nextLink` that continues the scan. `removed` and
`complianceState` are server-side filters.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from shared import sdk
from shared.entities import ENTITIES, LISTED, Entity
from shared.entities import entity as declaration
from shared.mapping.changes import StoredState, WriteOp, later
from shared.mapping.dates import date_text, date_value
from shared.stores.tables import (
    BATCH_SIZE,
    RUNS_TABLE,
    Tables,
    TransactionPipeline,
    loads,
    odata_quote,
)

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

log = logging.getLogger(__name__)

AssetKind = str  # the name of a listed entity in shared.entities
MARKER_ROW = "~listing"
_ASSETS_ONLY = f"RowKey lt {odata_quote('~')}"
SEARCH_SCAN_LIMIT = 5000
MAX_TOP = 1000
_INT32 = range(-(2**31), 2**31)
_STATE_COLUMNS = ["RowKey", "contentHash", "layout", "firstSeenAt", "lastSeenAt", "removedAt"]
LAYOUT = 2  # the row layout written now; rows without `layout` are of the first one (module docstring)
_LEGACY_JSON = frozenset({"defender"})  # object fields the first layout stored as JSON text
_LIST_SEPARATOR = ", "
_BOOKKEEPING_DATES = ("firstSeenAt", "lastSeenAt", "removedAt")
def nested_column(name: str, member: str) -> str:
    """The column of one member of an object field: `defender` + `riskScore` -> `defenderRiskScore`."""
    return name + member[:1].upper() + member[1:]


def _nested_columns(kind: Entity) -> list[str]:
    return [nested_column(name, m) for name, members in kind.nested.items() for m in members]


def _flatten(
    name: str, members: tuple[str, ...], value: dict[str, Any] | None, dates: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not value:
        return {}
    out: dict[str, Any] = {}
    for member in members:
        item = value.get(member)
        if isinstance(item, list):
            item = _LIST_SEPARATOR.join(str(x) for x in item)
        if f"{name}.{member}" in dates:
            item = date_value(item)
        if item is not None:
            out[nested_column(name, member)] = _column_value(item)
    return out


def _unflatten(
    name: str, members: tuple[str, ...], entity: Mapping[str, Any], lists: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """An object field from its columns; None when its first member (its key: an id, a total) is absent.
    A row of the first layout holds some as JSON text instead."""
    if entity.get(nested_column(name, members[0])) is None:
        legacy = entity.get(name) if name in _LEGACY_JSON else None
        return loads(legacy) if isinstance(legacy, str) else None
    out: dict[str, Any] = {}
    for member in members:
        item = date_text(_plain(entity.get(nested_column(name, member))))
        if f"{name}.{member}" in lists:
            item = [x for x in item.split(_LIST_SEPARATOR) if x] if isinstance(item, str) else []
        out[member] = item
    return out


class InvalidQuery(ValueError):
    """A list parameter memsync cannot use (bad continuation, unknown complianceState, top out of range)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def partition_key(integration_id: str, tenant_id: str) -> str:
    return f"{integration_id}_{tenant_id.lower()}"


def encode_continuation(after_row_key: str) -> str:
    raw = json.dumps({"v": 1, "after": after_row_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continuation(token: str | None) -> str | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidQuery("continuation", "the continuation token is not one memsync issued") from exc
    after = data.get("after") if isinstance(data, dict) and data.get("v") == 1 else None
    if not isinstance(after, str) or not after:
        raise InvalidQuery("continuation", "the continuation token is not one memsync issued")
    return after


def _column_value(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
        return (value, sdk.EdmType.INT64)  # the SDK refuses a bare int beyond Int32
    return value


def _plain(value: Any) -> Any:
    """Values as stored, without the SDK's `EntityProperty` wrapper (Int64 comes back wrapped)."""
    return getattr(value, "value", value) if type(value).__name__ == "EntityProperty" else value


def _to_entity(kind: Entity, partition: str, op: WriteOp) -> dict[str, Any]:
    """The table entity of an add/change (whole, REPLACE) or a removal (a MERGE of the removal columns)."""
    if op.kind == "remove" or op.asset is None:
        return {"PartitionKey": partition, "RowKey": op.row_key, "removedAt": date_value(op.removed_at),
                "isRemoved": True, "lastSeenAt": date_value(op.last_seen_at)}
    asset = op.asset
    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": op.row_key}
    for name, value in asset.items():
        if name == "id" or value is None:
            continue
        members = kind.nested.get(name)
        if members is not None:
            entity.update(_flatten(name, members, value, kind.date_fields))
        elif name in kind.date_fields:
            entity[name] = date_value(value)
        else:
            entity[name] = _column_value(value)
    for name, column in kind.search.items():
        entity[column] = (asset.get(name) or "").lower()
    entity.update(contentHash=op.content_hash, layout=LAYOUT, firstSeenAt=date_value(op.first_seen_at),
                  lastSeenAt=date_value(op.last_seen_at), isRemoved=False)
    return {k: v for k, v in entity.items() if v is not None}


def _from_entity(kind: Entity, entity: dict[str, Any], listed_at: str | None) -> dict[str, Any]:
    """A stored entity -> the asset's camelCase output fields (see docs/data-model.md)."""
    out: dict[str, Any] = {}
    for name in kind.fields:
        if name == "id":
            out["id"] = entity["RowKey"]
        elif name in kind.nested:
            out[name] = _unflatten(name, kind.nested[name], entity, kind.list_fields)
        elif name in kind.flag_fields:
            out[name] = bool(entity.get(name, False))
        elif name in kind.date_fields:
            out[name] = date_text(entity.get(name))
        else:
            out[name] = _plain(entity.get(name))
    if kind.dates_out:
        first_seen, last_seen, removed_at = (date_text(entity.get(n), stamp_form=True) for n in _BOOKKEEPING_DATES)
        out["firstSeenAt"] = first_seen
        out["lastSeenAt"] = last_seen if removed_at else later(last_seen, listed_at)
        out["removedAt"] = removed_at
    return out


class PartitionWriter:
    """Writes one partition's `WriteOp`s through a `TransactionPipeline`."""

    def __init__(self, table: TableClient, kind: Entity, partition: str) -> None:
        self.kind = kind
        self.partition = partition
        self._pipeline = TransactionPipeline(table, label=f"{kind.name} in {partition}")

    @property
    def failed(self) -> int:
        """Entities the service refused one by one (too large, a bad value)."""
        return self._pipeline.failed

    async def add(self, op: WriteOp) -> None:
        mode = sdk.UpdateMode.MERGE if op.kind == "remove" else sdk.UpdateMode.REPLACE
        await self._pipeline.add(("upsert", _to_entity(self.kind, self.partition, op), {"mode": mode}))

    async def add_all(self, ops: Iterable[WriteOp]) -> None:
        for op in ops:
            await self.add(op)

    async def close(self) -> None:
        await self._pipeline.close()


class AssetStore:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._by_kind: dict[AssetKind, TableClient] = {e.name: tables.client(e.table) for e in LISTED}

    def table(self, kind: AssetKind) -> TableClient:
        return self._by_kind[declaration(kind).name]

    # -- the sync's side -------------------------------------------------------------------------

    async def load_state(
        self, kind: AssetKind, integration_id: str, tenant_id: str
    ) -> tuple[dict[str, StoredState], str | None]:
        """Stored state of a partition's assets (one query, few columns) and its last complete listing."""
        partition = partition_key(integration_id, tenant_id)
        table = self.table(kind)
        query = f"PartitionKey eq {odata_quote(partition)}"
        declared = declaration(kind)
        legacy = [name for name in declared.nested if name in _LEGACY_JSON]
        states: dict[str, StoredState] = {}
        listed_at: str | None = None
        select = [*_STATE_COLUMNS, *_nested_columns(declared), *legacy, "listedAt"]
        async for entity in table.query_entities(query, select=select, results_per_page=1000):
            if entity["RowKey"] == MARKER_ROW:
                listed_at = date_text(entity.get("listedAt"), stamp_form=True)
                continue
            current = _plain(entity.get("layout")) == LAYOUT
            first_seen, last_seen, removed_at = (date_text(entity.get(n), stamp_form=True)
                                                 for n in _BOOKKEEPING_DATES)
            states[entity["RowKey"]] = StoredState(
                # A row of an older layout has no hash to match: listed again, it is rewritten.
                content_hash=entity.get("contentHash") if current else None,
                first_seen_at=first_seen,
                last_seen_at=last_seen,
                removed_at=removed_at,
                nested={name: _unflatten(name, members, entity, declared.list_fields)
                        for name, members in declared.nested.items()},
            )
        return states, listed_at

    def writer(self, kind: AssetKind, integration_id: str, tenant_id: str) -> PartitionWriter:
        return PartitionWriter(self.table(kind), declaration(kind), partition_key(integration_id, tenant_id))

    async def mark_listed(self, kind: AssetKind, integration_id: str, tenant_id: str, at: str) -> None:
        """Record a complete listing of the partition (read back as present assets' `lastSeenAt`)."""
        entity = {"PartitionKey": partition_key(integration_id, tenant_id), "RowKey": MARKER_ROW,
                  "listedAt": date_value(at)}
        await self.table(kind).upsert_entity(entity, mode=sdk.UpdateMode.REPLACE)

    # -- the HTTP API's side ---------------------------------------------------------------------

    async def _listed_at(self, kind: AssetKind, partition: str) -> str | None:
        try:
            marker = await self.table(kind).get_entity(partition, MARKER_ROW)
        except sdk.ResourceNotFoundError:
            return None
        value = date_text(marker.get("listedAt"), stamp_form=True)
        return value if isinstance(value, str) else None

    async def _page(
        self,
        kind: AssetKind,
        partition: str,
        filters: list[str],
        *,
        top: int,
        continuation: str | None,
        search: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if not 1 <= top <= MAX_TOP:
            raise InvalidQuery("top", f"top must be between 1 and {MAX_TOP}")
        after = decode_continuation(continuation)
        clauses = [f"PartitionKey eq {odata_quote(partition)}", _ASSETS_ONLY, *filters]
        if after is not None:
            clauses.append(f"RowKey gt {odata_quote(after)}")
        declared = declaration(kind)
        needle = search.strip().lower() if search and search.strip() else None
        matches = _matcher(tuple(declared.search.values()), needle)
        listed_at = await self._listed_at(kind, partition)

        page: list[dict[str, Any]] = []
        handled: str | None = None  # every row up to this key was returned or rejected
        more = False
        examined = 0
        per_page = min(MAX_TOP, top + 1) if needle is None else MAX_TOP
        entities = self.table(kind).query_entities(" and ".join(clauses), results_per_page=per_page)
        async for entity in entities:
            examined += 1
            if matches(entity):
                if len(page) == top:
                    more = True  # one more match exists: the page is full and not the last
                    break
                page.append(_from_entity(declared, entity, listed_at))
            handled = entity["RowKey"]
            if needle is not None and examined >= SEARCH_SCAN_LIMIT:
                more = True
                break
        if more and handled is not None:
            return page, encode_continuation(handled)
        return page, None

    async def list_assets(
        self,
        kind: AssetKind,
        integration_id: str,
        tenant_id: str,
        *,
        top: int = 100,
        continuation: str | None = None,
        search: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of a tenant's assets of one entity and the continuation of the next (None on the last).

        `filters` holds values of the entity's declared filters (`shared.entities.Filter`), by parameter
        name; a bool filter that is absent takes its default, one that is None is not applied. An entity
        that cannot list removed rows lists only those of its last complete listing. Raises
        `InvalidQuery` for an unknown filter or value, a bad `top` or a foreign continuation.
        """
        declared = declaration(kind)
        given = dict(filters or {})
        clauses: list[str] = []
        for name in given:
            if declared.filter(name) is None:
                raise InvalidQuery(name, f"{name} is not a filter of {declared.name}")
        for spec in declared.filters:
            value = given.get(spec.param, spec.default) if spec.kind == "bool" else given.get(spec.param)
            if value is None:
                continue
            if spec.kind == "bool":
                clauses.append(f"{spec.column} eq {'true' if value else 'false'}")
            else:
                if value not in spec.values:
                    raise InvalidQuery(spec.param, f"{spec.param} must be one of " + ", ".join(sorted(spec.values)))
                clauses.append(f"{spec.column} eq {odata_quote(str(value))}")
        if not declared.lists_removed:
            clauses.append("isRemoved eq false")
        return await self._page(kind, partition_key(integration_id, tenant_id), clauses,
                                top=top, continuation=continuation, search=search)

    async def list_matching(
        self, kind: AssetKind, integration_id: str, tenant_id: str, column: str, value: str, *, top: int,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the present assets whose `column` equals `value` (a device's vulnerabilities by
        machine id), in row-key order after `after`, and the last row key shown when more follow."""
        if not 1 <= top <= MAX_TOP:
            raise InvalidQuery("top", f"top must be between 1 and {MAX_TOP}")
        declared = declaration(kind)
        partition = partition_key(integration_id, tenant_id)
        clauses = [f"PartitionKey eq {odata_quote(partition)}", _ASSETS_ONLY, "isRemoved eq false",
                   f"{column} eq {odata_quote(value)}"]
        if after is not None:
            clauses.append(f"RowKey gt {odata_quote(after)}")
        listed_at = await self._listed_at(kind, partition)
        page: list[dict[str, Any]] = []
        async for entity in self.table(kind).query_entities(" and ".join(clauses), results_per_page=top + 1):
            if len(page) == top:
                return page, page[-1]["id"]
            page.append(_from_entity(declared, entity, listed_at))
        return page, None

    async def get_asset(
        self, kind: AssetKind, integration_id: str, tenant_id: str, asset_id: str
    ) -> dict[str, Any] | None:
        """One device or app by its Microsoft id (also when removed); None when it was never stored."""
        if not asset_id or asset_id.startswith("~") or any(c in asset_id for c in "/\\#?"):
            return None
        partition = partition_key(integration_id, tenant_id)
        try:
            entity = await self.table(kind).get_entity(partition, asset_id)
        except sdk.ResourceNotFoundError:
            return None
        return _from_entity(ENTITIES[kind], entity, await self._listed_at(kind, partition))

    async def get_assets(
        self, kind: AssetKind, integration_id: str, tenant_id: str, ids: list[str], *, in_flight: int = 16
    ) -> list[dict[str, Any] | None]:
        """Several assets by id (point reads, `in_flight` at a time), in the order of `ids`."""
        declared = declaration(kind)
        partition = partition_key(integration_id, tenant_id)
        listed_at = await self._listed_at(kind, partition)
        slots = asyncio.Semaphore(in_flight)
        table = self.table(kind)

        async def one(asset_id: str) -> dict[str, Any] | None:
            if not asset_id or asset_id.startswith("~") or any(c in asset_id for c in "/\\#?"):
                return None
            async with slots:
                try:
                    entity = await table.get_entity(partition, asset_id)
                except sdk.ResourceNotFoundError:
                    return None
            return _from_entity(declared, entity, listed_at)

        return list(await asyncio.gather(*(one(i) for i in ids)))

    async def count_present(self, kind: AssetKind, integration_id: str, tenant_id: str) -> int:
        query = (f"PartitionKey eq {odata_quote(partition_key(integration_id, tenant_id))} and "
                 f"{_ASSETS_ONLY} and isRemoved eq false")
        return len([e async for e in self.table(kind).query_entities(query, select=["RowKey"])])

    async def delete_assets(self, integration_id: str) -> int:
        """Delete every device, app and run record of an integration (all its partitions)."""
        names = (*(e.table for e in ENTITIES.values()), RUNS_TABLE)
        counts = await asyncio.gather(
            *(_delete_prefix(self._tables.client(n), integration_id) for n in names)
        )
        return sum(counts)


def _matcher(columns: tuple[str, ...], needle: str | None) -> Callable[[dict[str, Any]], bool]:
    if needle is None:
        return lambda _entity: True

    def matches(entity: dict[str, Any]) -> bool:
        return any(needle in str(entity.get(c) or "") for c in columns)

    return matches


async def _delete_prefix(table: TableClient, integration_id: str) -> int:
    """Delete all entities whose partition starts with `{integration_id}_`, 100 per transaction."""
    # "_" + 1 is "`": the range holds exactly the partitions `{integration_id}_...`.
    query = (f"PartitionKey ge {odata_quote(integration_id + '_')} and "
             f"PartitionKey lt {odata_quote(integration_id + '`')}")
    deleted = 0
    batch: list[tuple[str, dict[str, Any]]] = []

    async def flush() -> None:
        nonlocal deleted, batch
        if batch:
            await table.submit_transaction(batch)
            deleted += len(batch)
            batch = []

    try:
        async for entity in _keys(table, query):
            if (batch and batch[0][1]["PartitionKey"] != entity["PartitionKey"]) or len(batch) == BATCH_SIZE:
                await flush()
            batch.append(("delete", entity))
        await flush()
    except sdk.ResourceNotFoundError:  # the table does not exist yet: nothing to delete
        return deleted
    return deleted


async def _keys(table: TableClient, query: str) -> AsyncIterator[dict[str, Any]]:
    async for entity in table.query_entities(query, select=["PartitionKey", "RowKey"], results_per_page=1000):
        yield {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}
