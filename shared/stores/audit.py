"""The audit trail: one append-only row per change asked of memsync's API, made or refused (docs/api.md,
`GET /api/audit`; docs/data-model.md, memsyncAudit).

One partition (`audit`): people's changes are few, and one partition pages newest first by row key
(inverted time in milliseconds, then a random id) and filters by integration and time on the server. Rows
are only ever inserted (`create_entity`: an existing key is an error, never an overwrite), and nothing
deletes them: not `DELETE /api/integrations/{id}`, not `purgeAssets`. They hold no secret value: the
request's field *names*, never its values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.mapping.changes import stamp
from shared.stores.tables import AUDIT_TABLE, Tables, dumps, loads, odata_quote

PARTITION = "audit"
_MAX_MS = 10**15


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    action: str  # e.g. integration.register, integration.change, integration.delete, tenant.consent
    outcome: str  # done, refused (4xx), failed (5xx)
    status: int  # the HTTP status answered
    actor_kind: str  # functionKey today; a signed-in person once sign-in exists
    actor_name: str
    actor_id: str | None = None
    integration_id: str | None = None
    tenant_id: str | None = None
    fields: list[str] = field(default_factory=list)  # the request's field names, never their values
    code: str | None = None  # the first errors[].code of a refusal
    address: str | None = None  # the client address the platform saw
    method: str = ""
    route: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def row_key(self) -> str:
        inverted = _MAX_MS - int(self.at.timestamp() * 1000)
        return f"{inverted:015d}-{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": stamp(self.at), "action": self.action, "outcome": self.outcome,
            "status": self.status, "actor": {"kind": self.actor_kind, "name": self.actor_name, "id": self.actor_id},
            "integrationId": self.integration_id, "tenantId": self.tenant_id, "fields": list(self.fields),
            "code": self.code, "address": self.address, "method": self.method, "route": self.route,
        }


def row_key_at(moment: datetime) -> str:
    """The time part of the row keys of `moment`'s millisecond (newer rows have smaller keys)."""
    return f"{_MAX_MS - int(moment.timestamp() * 1000):015d}"


class AuditStore:
    def __init__(self, tables: Tables) -> None:
        self._table = tables.client(AUDIT_TABLE)

    async def append(self, entry: AuditEntry) -> None:
        await self._table.create_entity({
            "PartitionKey": PARTITION, "RowKey": entry.row_key, "record": dumps(entry.to_json()),
            "action": entry.action, "outcome": entry.outcome, "at": entry.at,
            "integrationId": entry.integration_id or "", "tenantId": entry.tenant_id or "",
        })

    async def page(
        self, *, top: int, after: str | None = None, integration_id: str | None = None,
        since: datetime | None = None, until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first: up to `top` records after the row key `after`, and the last key shown when more
        follow. `since`/`until` bound the time (inclusive/exclusive), `integration_id` the integration."""
        clauses = [f"PartitionKey eq {odata_quote(PARTITION)}"]
        if after is not None:
            clauses.append(f"RowKey gt {odata_quote(after)}")
        # Newer rows have smaller keys; "-~" sorts after every key of that millisecond ("-" + hex id).
        if until is not None:  # before `until`: keys after every key of its millisecond
            clauses.append(f"RowKey gt {odata_quote(row_key_at(until) + '-~')}")
        if since is not None:  # at or after `since`: keys up to the last of its millisecond
            clauses.append(f"RowKey lt {odata_quote(row_key_at(since) + '-~')}")
        if integration_id is not None:
            clauses.append(f"integrationId eq {odata_quote(integration_id)}")
        out: list[dict[str, Any]] = []
        last: str | None = None
        async for entity in self._table.query_entities(" and ".join(clauses), results_per_page=min(top + 1, 1000)):
            if len(out) == top:
                return out, last
            out.append(loads(entity["record"]))
            last = entity["RowKey"]
        return out, None
