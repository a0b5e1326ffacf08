"""In-memory stand-ins with the behaviour the expiry code relies on, for unit tests (no processes).

`MemoryTable` keeps Table Storage's semantics that matter here: create fails with ResourceExistsError
when the keys exist, updates are ETag-guarded (ResourceModifiedError), queries are `$filter`s of
`name eq value` clauses joined by `and` (values as @parameters or literals), results come in key order
and page with a {PartitionKey, RowKey} continuation like the real service.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from pydantic import SecretStr

from shared.clients.keyvault import SecretValue, StoredSecret

_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+(@\w+|'(?:[^']|'')*'|true|false)\s*$")
_etags = itertools.count(1)


class Entity(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, Any], etag: str) -> None:
        super().__init__(data)
        self.metadata = {"etag": etag}


def _predicate(query: str | None, parameters: dict[str, Any] | None):
    if not query:
        return lambda _e: True
    conditions = []
    for clause in query.split(" and "):
        match = _CLAUSE.match(clause)
        assert match, f"the fake table does not understand {clause!r}"
        name, raw = match.groups()
        if raw.startswith("@"):
            value = (parameters or {})[raw[1:]]
        elif raw in ("true", "false"):
            value = raw == "true"
        else:
            value = raw[1:-1].replace("''", "'")
        conditions.append((name, value))
    return lambda e: all(e.get(n) == v for n, v in conditions)


class _Pages:
    def __init__(self, rows: list[Entity], per_page: int, token: dict[str, str] | None) -> None:
        start = 0
        if token:
            key = (token.get("PartitionKey"), token.get("RowKey"))
            start = next((i for i, r in enumerate(rows) if (r["PartitionKey"], r["RowKey"]) >= key), len(rows))
        self._rows = rows[start:]
        self._per_page = per_page
        self.continuation_token: dict[str, str] | None = None
        self._done = False

    def __aiter__(self) -> _Pages:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        page, rest = self._rows[: self._per_page], self._rows[self._per_page:]
        self._rows = rest
        self.continuation_token = (
            {"PartitionKey": rest[0]["PartitionKey"], "RowKey": rest[0]["RowKey"]} if rest else None
        )
        self._done = not rest
        return _aiter(page)


async def _aiter(items: list[Any]) -> Any:
    for item in items:
        yield item


class _Query:
    def __init__(self, rows: list[Entity], per_page: int | None) -> None:
        self._rows = rows
        self._per_page = per_page or 1000

    def __aiter__(self) -> Any:
        return _aiter(self._rows).__aiter__()

    def by_page(self, continuation_token: dict[str, str] | None = None) -> _Pages:
        return _Pages(self._rows, self._per_page, continuation_token)


class MemoryTable:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Entity] = {}

    def _store(self, entity: dict[str, Any]) -> dict[str, Any]:
        etag = f'W/"{next(_etags)}"'
        self.rows[(entity["PartitionKey"], entity["RowKey"])] = Entity(dict(entity), etag)
        return {"etag": etag}

    async def create_entity(self, entity: dict[str, Any]) -> dict[str, Any]:
        if (entity["PartitionKey"], entity["RowKey"]) in self.rows:
            raise ResourceExistsError("The specified entity already exists.")
        return self._store(entity)

    async def upsert_entity(self, entity: dict[str, Any], mode: Any = None) -> dict[str, Any]:
        return self._store(entity)

    async def update_entity(self, entity: dict[str, Any], mode: Any = None, etag: str | None = None,
                            match_condition: Any = None) -> dict[str, Any]:
        current = self.rows.get((entity["PartitionKey"], entity["RowKey"]))
        if current is None:
            raise ResourceNotFoundError("not found")
        if match_condition == MatchConditions.IfNotModified and current.metadata["etag"] != etag:
            raise ResourceModifiedError("The update condition specified in the request was not satisfied.")
        return self._store(entity)

    async def get_entity(self, partition_key: str, row_key: str) -> Entity:
        try:
            return self.rows[(partition_key, row_key)]
        except KeyError:
            raise ResourceNotFoundError("The specified resource does not exist.") from None

    async def delete_entity(self, partition_key: str, row_key: str) -> None:
        self.rows.pop((partition_key, row_key), None)

    def _sorted(self) -> list[Entity]:
        return [self.rows[k] for k in sorted(self.rows)]

    def query_entities(self, query_filter: str, parameters: dict[str, Any] | None = None,
                       results_per_page: int | None = None, **_: Any) -> _Query:
        keep = _predicate(query_filter, parameters)
        return _Query([e for e in self._sorted() if keep(e)], results_per_page)

    def list_entities(self, results_per_page: int | None = None, **_: Any) -> _Query:
        return _Query(self._sorted(), results_per_page)


class MemoryTables:
    """Stands in for shared.stores.tables.Tables."""

    def __init__(self) -> None:
        self.tables: dict[str, MemoryTable] = {}

    def client(self, name: str) -> MemoryTable:
        return self.tables.setdefault(name, MemoryTable())


class MemoryVault:
    """Stands in for shared.clients.keyvault.SecretStore: names, versions, dates and values."""

    def __init__(self) -> None:
        self.current: dict[str, StoredSecret] = {}
        self.values: dict[tuple[str, str], str] = {}
        self.value_reads = 0
        self._versions = itertools.count(1)

    def put(self, name: str, value: str, *, created_on: datetime, expires_on: datetime | None = None) -> str:
        version = f"{next(self._versions):032x}"
        self.current[name] = StoredSecret(name, version, expires_on, created_on.astimezone(UTC), {})
        self.values[(name, version)] = value
        return version

    async def list_memsync_secrets(self) -> list[StoredSecret]:
        return list(self.current.values())

    async def get_secret(self, name: str, version: str | None = None) -> SecretStr:
        self.value_reads += 1
        version = version or self.current[name].version
        assert version is not None
        return SecretStr(self.values[(name, version)])

    async def get_properties(self, name: str) -> StoredSecret | None:
        return self.current.get(name)

    async def set_secret(self, name: str, value: SecretStr, *, expires_on: datetime | None, tags: dict[str, str],
                         content_type: str = "client-secret") -> str:
        return self.put(name, value.get_secret_value(), created_on=datetime.now(UTC), expires_on=expires_on)

    async def read_version(self, name: str, version: str | None = None) -> SecretValue | None:
        stored = self.current.get(name)
        version = version or (stored.version if stored else None)
        if version is None or (name, version) not in self.values:
            return None
        return SecretValue(version, SecretStr(self.values[(name, version)]))
