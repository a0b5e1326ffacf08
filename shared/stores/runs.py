"""Run records: one per sync attempt of one tenant (trigger, times, counts, call costs, error).

Partition = `f"{integration_id}_{tenant_id}"` like the assets; row = inverted start time + run id, so a
partition lists its newest runs first. A redelivered job writes a second record: each attempt is a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import sdk
from shared.mapping.changes import ChangeCounts, stamp
from shared.stores.assets import partition_key
from shared.stores.tables import RUNS_TABLE, Tables, dumps, loads, odata_quote

_MAX_MS = 10**15


@dataclass
class RunRecord:
    integration_id: str
    tenant_id: str
    run_id: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"  # running, ok, error, skipped
    devices: ChangeCounts = field(default_factory=ChangeCounts)
    software: ChangeCounts = field(default_factory=ChangeCounts)
    defender_machines: int = 0
    entities: dict[str, ChangeCounts] = field(default_factory=dict)  # other listed entities, by name
    calls: dict[str, Any] = field(default_factory=dict)  # CallStats.to_json()
    error: dict[str, str] | None = None
    notes: list[dict[str, str]] = field(default_factory=list)  # errors that did not fail the run
    attempt: int = 1

    @property
    def row_key(self) -> str:
        inverted = _MAX_MS - int(self.started_at.timestamp() * 1000)
        return f"{inverted:015d}-{self.run_id}-{self.attempt}"

    def to_json(self) -> dict[str, Any]:
        totals = ChangeCounts()
        totals += self.devices
        totals += self.software
        for counts in self.entities.values():
            totals += counts
        return {
            "integrationId": self.integration_id,
            "tenantId": self.tenant_id,
            "runId": self.run_id,
            "trigger": self.trigger,
            "status": self.status,
            "startedAt": stamp(self.started_at),
            "finishedAt": stamp(self.finished_at) if self.finished_at else None,
            "counts": {**totals.to_json(), "devices": self.devices.to_json(),
                       "software": self.software.to_json(), "defenderMachines": self.defender_machines,
                       **{name: counts.to_json() for name, counts in self.entities.items()}},
            "requests": self.calls.get("requests", 0),
            "retries": self.calls.get("retries", 0),
            "throttled": self.calls.get("throttled", 0),
            "throttledWaitSeconds": self.calls.get("throttledWaitSeconds", 0.0),
            "calls": self.calls,
            "error": self.error,
            "notes": self.notes,
            "attempt": self.attempt,
        }


class RunStore:
    def __init__(self, tables: Tables) -> None:
        self._table = tables.client(RUNS_TABLE)

    async def record(self, run: RunRecord) -> None:
        data = run.to_json()
        entity = {
            "PartitionKey": partition_key(run.integration_id, run.tenant_id),
            "RowKey": run.row_key,
            "runId": run.run_id,
            "trigger": run.trigger,
            "status": run.status,
            "startedAt": data["startedAt"],
            "finishedAt": data["finishedAt"],
            "requests": data["requests"],
            "retries": data["retries"],
            "throttled": data["throttled"],
            "errorCode": run.error["code"] if run.error else None,
            "record": dumps(data),
        }
        await self._table.upsert_entity({k: v for k, v in entity.items() if v is not None},
                                        mode=sdk.UpdateMode.REPLACE)

    async def list_runs(self, integration_id: str, tenant_id: str, *, top: int = 20) -> list[dict[str, Any]]:
        """The newest runs of a tenant first."""
        query = f"PartitionKey eq {odata_quote(partition_key(integration_id, tenant_id))}"
        runs: list[dict[str, Any]] = []
        async for entity in self._table.query_entities(query, results_per_page=min(top, 1000)):
            runs.append(loads(entity.get("record"), {}))
            if len(runs) >= top:
                break
        return runs
