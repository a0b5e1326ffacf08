"""The in-memory Table Storage used by unit tests keeps the service's rules the stores rely on."""

from __future__ import annotations

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import TableTransactionError, UpdateMode

from tests.unit.memtables import MemoryTable

pytestmark = pytest.mark.unit


async def _rows(table: MemoryTable, query: str, **parameters: object) -> list[str]:
    return [e["RowKey"] async for e in table.query_entities(query, parameters=parameters)]


async def test_filters_compare_combine_and_bind_parameters():
    table = MemoryTable("t")
    for pk, rk, n in [("a", "1", 1), ("a", "2", 5), ("a", "3", 9), ("b", "1", 5)]:
        await table.create_entity({"PartitionKey": pk, "RowKey": rk, "n": n, "s": f"it's {rk}"})
    assert await _rows(table, "PartitionKey eq 'a' and n ge 5") == ["2", "3"]
    assert await _rows(table, "PartitionKey eq @pk and (n lt 2 or n gt 8)", pk="a") == ["1", "3"]
    assert await _rows(table, "not (PartitionKey eq 'a') and s eq 'it''s 1'") == ["1"]
    assert await _rows(table, "missing eq 'x' or missing ne 'x'") == []


async def test_etags_guard_writes_and_transactions_are_all_or_nothing():
    table = MemoryTable("t")
    await table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    with pytest.raises(ResourceExistsError):
        await table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    read = await table.get_entity("p", "r")
    await table.update_entity({"PartitionKey": "p", "RowKey": "r", "v": 2}, mode=UpdateMode.REPLACE,
                              etag=read.metadata["etag"], match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError):
        await table.update_entity({"PartitionKey": "p", "RowKey": "r", "v": 3}, mode=UpdateMode.REPLACE,
                                  etag=read.metadata["etag"], match_condition=MatchConditions.IfNotModified)
    with pytest.raises(TableTransactionError):
        await table.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": "new"}),
                                        ("create", {"PartitionKey": "p", "RowKey": "r"})])
    assert sorted(rk for _, rk in table.rows) == ["r"]
    assert (await table.get_entity("p", "r"))["v"] == 2
