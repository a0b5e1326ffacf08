"""Secret-expiry, credential, GDAP relationship and poisoned-sync alerts in Table Storage (ALERTS_TABLE).

Partition = integration id, row = alert id. An alert id is derived from what the alert is about (the Key
Vault secret's name and version, and the mark or kind; a tenant and its last successful sync for a
poisoned sync job), so `create_alert` of an alert that was already raised fails with ResourceExistsError
in the storage service itself: two timer runs, or a timer run and a sync worker, racing to raise the same
alert still raise it once.

No alert holds a secret value or any part of one (not even Microsoft's three-character hint).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared import sdk
from shared.models import AppRole, Camel, ExpiresOnSource
from shared.stores.tables import ALERTS_TABLE, Tables, guarded_update, iso

# Fixed namespace for alert ids (uuid5): the same secret version and mark always give the same id.
_ALERT_NAMESPACE = uuid.UUID("6f0d3c1e-3b7a-5e52-9a0c-6d656d73796e")


class AlertKind(StrEnum):
    SECRET_EXPIRING = "secretExpiring"  # alert kinds, not passwords
    SECRET_EXPIRED = "secretExpired"
    SECRET_INVALID = "secretInvalid"
    # GDAP (docs/gdap.md): a customer's GDAP relationship ends within 30 days, or has ended.
    RELATIONSHIP_EXPIRING = "relationshipExpiring"
    RELATIONSHIP_EXPIRED = "relationshipExpired"
    # A tenant's sync job failed on every delivery and the host moved it to `memsync-sync-poison`.
    SYNC_POISONED = "syncPoisoned"


# The kinds that are about one secret (one Key Vault secret of an integration): of these, a secret has at
# most one open alert, the most urgent (shared.services.alerting.secret_urgency).
SECRET_KINDS = frozenset({AlertKind.SECRET_EXPIRING, AlertKind.SECRET_EXPIRED, AlertKind.SECRET_INVALID})


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


def alert_id(secret_name: str, secret_version: str | None, key: str) -> str:
    """Deterministic id of one alert: `key` is `mark-N` for a calendar mark, or the alert kind."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{secret_name}/{secret_version or '-'}/{key}"))


class Alert(Camel):
    id: str
    integration_id: str
    integration_name: str
    kind: AlertKind
    role: AppRole
    app_id: str
    secret_name: str  # the Key Vault secret; for a relationship or poisoned-sync alert, what it is about
    secret_version: str | None = None
    mark: int | None = None  # the days-left mark that raised it; None for a credential failure
    expires_on: datetime | None = None
    expires_on_source: ExpiresOnSource | None = None
    days_left: int | None = None  # at the time it was raised
    status: AlertStatus = AlertStatus.OPEN
    raised_at: datetime
    resolved_at: datetime | None = None
    resolved_reason: str | None = None  # e.g. "superseded by the 7-day mark", "integration deleted"
    tenant_id: str | None = None  # the customer tenant a poisoned-sync (or relationship) alert is about
    message: str
    action: str
    delivered: bool = False
    delivered_at: datetime | None = None
    delivery_attempts: int = 0
    last_delivery_error: str | None = None  # an exception type or HTTP status, never a URL
    delivery_claimed_until: datetime | None = None  # a worker is posting it until then

    def to_api(self) -> dict[str, Any]:
        """The alert fields of docs/api.md (camelCase), plus a few extras; no delivery bookkeeping."""
        return {
            "id": self.id,
            "integrationId": self.integration_id,
            "integrationName": self.integration_name,
            "kind": self.kind.value,
            "role": self.role.value,
            "appId": self.app_id,
            "mark": self.mark,
            "expiresOn": iso(self.expires_on),
            "expiresOnSource": self.expires_on_source,
            "daysLeft": self.days_left,
            "status": self.status.value,
            "raisedAt": iso(self.raised_at),
            "resolvedAt": iso(self.resolved_at),
            "resolvedReason": self.resolved_reason,
            "tenantId": self.tenant_id,
            "message": self.message,
            "action": self.action,
            "delivered": self.delivered,
            "deliveredAt": iso(self.delivered_at),
        }


def table_position(value: Any) -> dict[str, str] | None:
    """A Table Storage continuation (next PartitionKey / RowKey) that came back from a client, or None."""
    if not isinstance(value, dict) or not value or set(value) - {"PartitionKey", "RowKey"}:
        return None
    if not all(isinstance(v, str) and len(v) <= 1024 for v in value.values()):
        return None
    return dict(value)


class AlertStore:
    def __init__(self, tables: Tables) -> None:
        self._table = tables.client(ALERTS_TABLE)

    @staticmethod
    def _to_entity(alert: Alert) -> dict[str, Any]:
        return {
            "PartitionKey": alert.integration_id,
            "RowKey": alert.id,
            "record": alert.model_dump_json(by_alias=True),
            "status": alert.status.value,
            "delivered": alert.delivered,
            "role": alert.role.value,
            "secretVersion": alert.secret_version or "",
            "kind": alert.kind.value,
        }

    @staticmethod
    def _from_entity(entity: Any) -> Alert:
        return Alert.model_validate_json(entity["record"])

    async def create_alert(self, alert: Alert) -> bool:
        """Insert; False when an alert with this id was already raised (by anyone, at any time)."""
        try:
            await self._table.create_entity(self._to_entity(alert))
        except sdk.ResourceExistsError:
            return False
        return True

    async def get_alert(self, integration_id: str, alert_id: str) -> tuple[Alert, str] | None:
        try:
            entity = await self._table.get_entity(integration_id, alert_id)
        except sdk.ResourceNotFoundError:
            return None
        return self._from_entity(entity), str(entity.metadata["etag"])

    async def replace_if_unchanged(self, alert: Alert, etag: str) -> str | None:
        """ETag-guarded write; returns the new ETag, or None when someone else wrote (or deleted) the
        alert since it was read."""
        try:
            metadata = await self._table.update_entity(
                self._to_entity(alert), mode=sdk.UpdateMode.REPLACE, etag=etag,
                match_condition=sdk.MatchConditions.IfNotModified,
            )
        except (sdk.ResourceModifiedError, sdk.ResourceNotFoundError):
            return None
        return str(metadata.get("etag") or "")

    async def update(
        self, integration_id: str, alert_id: str, change: Callable[[Alert], Alert | None]
    ) -> Alert | None:
        """The alert after `change` (a pure function of the stored alert; None for no write), written
        under its ETag and retried on lost races (`guarded_update`); None when there is no such alert."""
        async def replace(alert: Alert, etag: str) -> bool:
            return await self.replace_if_unchanged(alert, etag) is not None

        return await guarded_update(
            lambda: self.get_alert(integration_id, alert_id), replace, change, f"alert {alert_id}",
        )

    async def _query(self, query: str, parameters: dict[str, Any]) -> list[tuple[Alert, str]]:
        return [
            (self._from_entity(e), str(e.metadata["etag"]))
            async for e in self._table.query_entities(query, parameters=parameters)
        ]

    async def list_secret_alerts(self, integration_id: str, role: AppRole) -> list[tuple[Alert, str]]:
        """Every alert (open or resolved, any version) about one secret of one integration."""
        return await self._query(
            "PartitionKey eq @pk and role eq @role", {"pk": integration_id, "role": role.value}
        )

    async def list_open(self, integration_id: str | None = None) -> list[tuple[Alert, str]]:
        """Open alerts, of every integration or of one."""
        if integration_id is None:
            return await self._query("status eq @status", {"status": AlertStatus.OPEN.value})
        return await self._query("PartitionKey eq @pk and status eq @status",
                                 {"pk": integration_id, "status": AlertStatus.OPEN.value})

    async def list_undelivered(self) -> list[tuple[Alert, str]]:
        """Open alerts whose webhook delivery has not succeeded yet."""
        return await self._query(
            "status eq @status and delivered eq @delivered",
            {"status": AlertStatus.OPEN.value, "delivered": False},
        )

    async def list_page(
        self,
        *,
        top: int,
        integration_id: str | None = None,
        status: AlertStatus | None = None,
        continuation: Any = None,
    ) -> tuple[list[Alert], dict[str, str] | None]:
        """One page (at most `top`; a filtered page may hold fewer) and the table position of the next,
        None on the last page. Ordered by integration id, then alert id (Table Storage's key order)."""
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        if integration_id is not None:
            clauses.append("PartitionKey eq @pk")
            parameters["pk"] = integration_id
        if status is not None:
            clauses.append("status eq @status")
            parameters["status"] = status.value
        if clauses:
            entities = self._table.query_entities(
                " and ".join(clauses), parameters=parameters, results_per_page=top
            )
        else:
            entities = self._table.list_entities(results_per_page=top)
        # The tables SDK's continuation is a dict of next keys; its type hints say str.
        pages: Any = entities.by_page(continuation_token=table_position(continuation))  # type: ignore[arg-type]
        async for page in pages:
            alerts = [self._from_entity(e) async for e in page]
            return alerts, table_position(pages.continuation_token)
        return [], None
