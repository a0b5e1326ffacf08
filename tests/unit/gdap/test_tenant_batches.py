"""`TenantStore.replace_many_if_unchanged`: what goes into each entity-group transaction (one partition,
at most 100 operations, each If-Match its own ETag) and what a failed transaction reports."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableTransactionError, UpdateMode

from shared.models import CustomerTenant
from shared.stores.integrations import TenantStore

pytestmark = pytest.mark.unit


class FakeTable:
    """Records each transaction; fails the ones holding a row in `conflicts`, as Table Storage answers 412."""

    def __init__(self, conflicts: set[str]) -> None:
        self.conflicts = conflicts
        self.transactions: list[list[Any]] = []

    async def submit_transaction(self, operations: list[Any]) -> list[dict[str, Any]]:
        self.transactions.append(operations)
        for n, (_, entity, _) in enumerate(operations):
            if entity["RowKey"] in self.conflicts:
                raise TableTransactionError(message=f"{n}:UpdateConditionNotSatisfied")
        return [{} for _ in operations]


class FakeTables:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def client(self, name: str) -> FakeTable:
        return self.table


def _writes(integration_id: str, count: int) -> list[tuple[CustomerTenant, str]]:
    return [(CustomerTenant(integration_id=integration_id, tenant_id=f"{integration_id}-{n:04d}"), f'W/"etag-{n}"')
            for n in range(count)]


async def test_one_partition_and_at_most_100_to_a_transaction_each_if_match_its_etag():
    table = FakeTable(conflicts=set())
    writes = [*_writes("a", 150), *_writes("b", 20)]

    written = await TenantStore(FakeTables(table)).replace_many_if_unchanged(writes)  # type: ignore[arg-type]

    assert written == [True] * 170
    assert sorted(len(t) for t in table.transactions) == [20, 50, 100]
    for transaction in table.transactions:
        assert len({entity["PartitionKey"] for _, entity, _ in transaction}) == 1
    sent = {entity["RowKey"]: (kind, options) for t in table.transactions for kind, entity, options in t}
    assert len(sent) == 170
    for tenant, etag in writes:
        assert sent[tenant.tenant_id] == ("update", {"mode": UpdateMode.REPLACE, "etag": etag,
                                                     "match_condition": MatchConditions.IfNotModified})


async def test_a_failed_transaction_reports_its_rows_unwritten_and_only_those():
    writes = _writes("a", 250)
    table = FakeTable(conflicts={writes[120][0].tenant_id})

    written = await TenantStore(FakeTables(table)).replace_many_if_unchanged(writes)  # type: ignore[arg-type]

    assert written == [True] * 100 + [False] * 100 + [True] * 50
    assert len(table.transactions) == 3  # no retry here: the caller updates those rows one by one
