"""Table Storage in memory, for unit tests of the services on memsync's real stores.

`MemoryTables` stands where `shared.stores.tables.Tables` stands; its clients offer the part of the
async `azure.data.tables.aio.TableClient` that memsync's stores call, with the service's semantics where
memsync depends on them: ETags that change on every write and `If-Match` refusals
(`ResourceModifiedError`), all-or-nothing entity-group transactions (`TableTransactionError`), creates
that refuse an existing row, and OData `$filter` expressions (`eq ne gt ge lt le`, `and or not`,
parentheses, `@name` parameters) evaluated on the stored rows in (PartitionKey, RowKey) order.
https://learn.microsoft.com/rest/api/storageservices/querying-tables-and-entities

The integration tests run the same stores against Azurite; this is for tests that must be fast and
exact about one service's logic (the tenant sync's listing, diff and removals).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

_etags = itertools.count(1)


class Entity(dict[str, Any]):
    """A row as the SDK returns it: a dict with `metadata` (the ETag)."""

    metadata: dict[str, Any]


def _plain(entity: dict[str, Any]) -> dict[str, Any]:
    """What the service stores: typed tuples `(value, EdmType)` become their value."""
    return {k: (v[0] if isinstance(v, tuple) else v) for k, v in entity.items()}


class MemoryTable:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.transactions = 0

    # -- single operations -----------------------------------------------------------------------

    def _read(self, key: tuple[str, str]) -> Entity:
        row, etag = self.rows[key]
        entity = Entity(copy.deepcopy(row))
        entity.metadata = {"etag": etag}
        return entity

    def _write(self, entity: dict[str, Any]) -> dict[str, Any]:
        etag = f'W/"datetime\'{next(_etags)}\'"'
        self.rows[(entity["PartitionKey"], entity["RowKey"])] = (_plain(copy.deepcopy(entity)), etag)
        return {"etag": etag}

    async def get_entity(self, partition_key: str, row_key: str, **_: Any) -> Entity:
        if (partition_key, row_key) not in self.rows:
            raise ResourceNotFoundError(message=f"{self.name}: no row {partition_key}/{row_key}")
        return self._read((partition_key, row_key))

    async def create_entity(self, entity: dict[str, Any], **_: Any) -> dict[str, Any]:
        if (entity["PartitionKey"], entity["RowKey"]) in self.rows:
            raise ResourceExistsError(message=f"{self.name}: the row exists")
        return self._write(entity)

    async def upsert_entity(self, entity: dict[str, Any], mode: UpdateMode = UpdateMode.MERGE, **_: Any
                            ) -> dict[str, Any]:
        key = (entity["PartitionKey"], entity["RowKey"])
        if mode == UpdateMode.MERGE and key in self.rows:
            entity = {**self.rows[key][0], **entity}
        return self._write(entity)

    async def update_entity(self, entity: dict[str, Any], mode: UpdateMode = UpdateMode.MERGE, *,
                            etag: str | None = None, match_condition: Any = None, **_: Any) -> dict[str, Any]:
        key = (entity["PartitionKey"], entity["RowKey"])
        if key not in self.rows:
            raise ResourceNotFoundError(message=f"{self.name}: no row {key}")
        if match_condition == MatchConditions.IfNotModified and self.rows[key][1] != etag:
            raise ResourceModifiedError(message=f"{self.name}: {key} changed (If-Match)")
        if mode == UpdateMode.MERGE:
            entity = {**self.rows[key][0], **entity}
        return self._write(entity)

    async def delete_entity(self, partition_key: str, row_key: str, *, etag: str | None = None,
                            match_condition: Any = None, **_: Any) -> None:
        key = (partition_key, row_key)
        if match_condition == MatchConditions.IfNotModified and key in self.rows and self.rows[key][1] != etag:
            raise ResourceModifiedError(message=f"{self.name}: {key} changed (If-Match)")
        self.rows.pop(key, None)  # the SDK does not raise for a missing row

    async def submit_transaction(self, operations: Iterable[Any]) -> list[dict[str, Any]]:
        """All or nothing: each operation runs on a copy, kept only when every one succeeded."""
        operations = list(operations)
        if len({op[1]["PartitionKey"] for op in operations}) > 1 or len(operations) > 100:
            raise TableTransactionError(message="a transaction holds at most 100 operations of one partition")
        saved = dict(self.rows)
        results = []
        try:
            for kind, entity, *rest in operations:
                options = rest[0] if rest else {}
                if kind == "create":
                    results.append(await self.create_entity(entity))
                elif kind == "upsert":
                    results.append(await self.upsert_entity(entity, **options))
                elif kind == "update":
                    results.append(await self.update_entity(entity, **options))
                elif kind == "delete":
                    await self.delete_entity(entity["PartitionKey"], entity["RowKey"])
                    results.append({})
                else:
                    raise ValueError(f"unknown transaction operation {kind!r}")
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            self.rows = saved
            raise TableTransactionError(message=f"transaction refused: {exc.message}") from None
        self.transactions += 1
        return results

    # -- queries ---------------------------------------------------------------------------------

    def query_entities(self, query_filter: str, *, select: list[str] | None = None,
                       parameters: dict[str, Any] | None = None, results_per_page: int | None = None,
                       **_: Any) -> Pager:
        matches = _compile(query_filter, parameters or {})
        return Pager(self, matches, select, results_per_page or 1000)

    def list_entities(self, *, select: list[str] | None = None, results_per_page: int | None = None,
                      **_: Any) -> Pager:
        return Pager(self, lambda row: True, select, results_per_page or 1000)

    async def close(self) -> None:
        return None


class Pager:
    """`AsyncItemPaged` enough for the stores: async iteration, and `by_page` with continuation."""

    def __init__(self, table: MemoryTable, matches: Any, select: list[str] | None, per_page: int) -> None:
        self._table, self._matches, self._select, self._per_page = table, matches, select, per_page
        self.continuation_token: dict[str, str] | None = None

    def _rows(self, after: tuple[str, str] | None) -> list[Entity]:
        out = []
        for key in sorted(self._table.rows):
            if after is not None and key < after:
                continue
            if self._matches(self._table.rows[key][0]):
                entity = self._table._read(key)
                if self._select is not None:
                    kept = Entity({k: v for k, v in entity.items() if k in self._select})
                    kept.metadata = entity.metadata
                    entity = kept
                out.append(entity)
        return out

    def __aiter__(self) -> AsyncIterator[Entity]:
        async def items() -> AsyncIterator[Entity]:
            for entity in self._rows(None):
                yield entity
        return items()

    def by_page(self, continuation_token: dict[str, str] | None = None) -> Pager:
        start = None if not continuation_token else (continuation_token["PartitionKey"], continuation_token["RowKey"])
        rows = self._rows(start)
        pager = self

        async def pages() -> AsyncIterator[AsyncIterator[Entity]]:
            for n in range(0, max(len(rows), 1), self._per_page):
                chunk = rows[n:n + self._per_page]
                rest = rows[n + self._per_page:]
                pager.continuation_token = (None if not rest else
                                            {"PartitionKey": rest[0]["PartitionKey"], "RowKey": rest[0]["RowKey"]})

                async def one(chunk: list[Entity] = chunk) -> AsyncIterator[Entity]:
                    for entity in chunk:
                        yield entity
                yield one()

        self._pages = pages()
        return self

    def __anext__(self) -> Any:
        return self._pages.__anext__()


class MemoryTables:
    """Stands for `shared.stores.tables.Tables`: one `MemoryTable` per name, made on first use."""

    def __init__(self) -> None:
        self.tables: dict[str, MemoryTable] = {}

    def client(self, name: str) -> MemoryTable:
        return self.tables.setdefault(name, MemoryTable(name))

    def rows(self, name: str, partition: str | None = None) -> dict[str, dict[str, Any]]:
        """Row key -> stored row, of one partition (or all rows keyed `pk/rk`)."""
        table = self.client(name)
        if partition is None:
            return {f"{pk}/{rk}": row for (pk, rk), (row, _) in table.rows.items()}
        return {rk: row for (pk, rk), (row, _) in table.rows.items() if pk == partition}

    async def ensure(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- OData $filter -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<typed>(?:datetime|guid|X)'[^']*')|(?P<num>-?\d+(?:\.\d+)?L?)"
                    r"|(?P<param>@\w+)|(?P<paren>[()])|(?P<word>[A-Za-z_][\w]*))")
_COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
            "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot read the filter at {text[position:]!r}")
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind or "")
        if kind == "str":
            out.append(("value", value[1:-1].replace("''", "'")))
        elif kind == "typed":
            out.append(("value", value[value.index("'") + 1:-1]))
        elif kind == "num":
            out.append(("value", float(value) if "." in value else int(value.rstrip("L"))))
        elif kind == "word" and value in ("true", "false"):
            out.append(("value", value == "true"))
        else:
            out.append((kind or "", value))
    return out


def _compile(text: str, parameters: dict[str, Any]) -> Any:
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, Any] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, Any]:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def operand() -> Any:
        kind, value = take()
        if kind == "value":
            return lambda row: value
        if kind == "param":
            return lambda row: parameters[value[1:]]
        if kind == "word":
            return lambda row: row.get(value)
        raise ValueError(f"unexpected {value!r} in the filter {text!r}")

    def primary() -> Any:
        token = peek()
        if token == ("paren", "("):
            take()
            inner = disjunction()
            if take() != ("paren", ")"):
                raise ValueError(f"unbalanced parentheses in {text!r}")
            return inner
        if token == ("word", "not"):
            take()
            negated = primary()
            return lambda row: not negated(row)
        left = operand()
        _, op = take()
        right = operand()
        compare = _COMPARE[op]

        def test(row: dict[str, Any]) -> bool:
            a, b = left(row), right(row)
            if a is None or b is None:  # a row without the property matches no comparison
                return False
            try:
                return bool(compare(a, b))
            except TypeError:
                return False
        return test

    def conjunction() -> Any:
        parts = [primary()]
        while peek() == ("word", "and"):
            take()
            parts.append(primary())
        return lambda row: all(p(row) for p in parts)

    def disjunction() -> Any:
        parts = [conjunction()]
        while peek() == ("word", "or"):
            take()
            parts.append(conjunction())
        return lambda row: any(p(row) for p in parts)

    matches = disjunction()
    if position != len(tokens):
        raise ValueError(f"cannot read the filter {text!r} past {tokens[position]!r}")
    return matches
