"""Integrations and their customer tenants in Table Storage (never a secret value)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import sdk
from shared.models import CustomerTenant, Integration
from shared.stores.tables import (
    INTEGRATIONS_TABLE,
    TENANTS_TABLE,
    Tables,
    dumps,
    guarded_update,
    iso,
    loads,
    odata_quote,
    parse_iso,
    utcnow,
)

_INTEGRATION_PK = "integration"
# Registration claims (docs/data-model.md): one row per (home tenant, sync app), in a partition of their own
# so that no query of the integrations' partition ever meets them.
_CLAIM_PK = "claim"
# An entity-group transaction holds at most 100 operations, all in one partition:
# https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
TRANSACTION_MAX = 100
TRANSACTIONS_IN_FLIGHT = 4


def claim_key(home_tenant_id: str, sync_app_id: str) -> str:
    """The claim's RowKey: `{home tenant id}_{sync app id}`, both lower-case GUIDs."""
    return f"{home_tenant_id.lower()}_{sync_app_id.lower()}"


@dataclass(frozen=True)
class RegistrationClaim:
    """The row that makes (home tenant, sync app) one integration's: who holds it, since when, its ETag."""

    integration_id: str
    claimed_at: datetime
    etag: str


class IntegrationStore:
    def __init__(self, tables: Tables) -> None:
        self._table = tables.client(INTEGRATIONS_TABLE)

    @staticmethod
    def _to_entity(integration: Integration) -> dict[str, Any]:
        return {
            "PartitionKey": _INTEGRATION_PK,
            "RowKey": integration.id,
            "record": integration.model_dump_json(by_alias=True),
            "status": integration.status.value,
            "homeTenantId": integration.home_tenant_id.lower(),
            "syncAppId": integration.sync_app_id.lower(),
        }

    @staticmethod
    def _from_entity(entity: dict[str, Any]) -> Integration:
        return Integration.model_validate_json(entity["record"])

    async def upsert_integration(self, integration: Integration) -> None:
        await self._table.upsert_entity(self._to_entity(integration), mode=sdk.UpdateMode.REPLACE)

    async def create_integration(self, integration: Integration) -> None:
        """Raises azure.core.exceptions.ResourceExistsError when the id is taken."""
        await self._table.create_entity(self._to_entity(integration))

    async def get_integration(self, integration_id: str) -> Integration | None:
        try:
            entity = await self._table.get_entity(_INTEGRATION_PK, integration_id)
        except sdk.ResourceNotFoundError:
            return None
        return self._from_entity(entity)

    async def get_integration_with_etag(self, integration_id: str) -> tuple[Integration, str] | None:
        try:
            entity = await self._table.get_entity(_INTEGRATION_PK, integration_id)
        except sdk.ResourceNotFoundError:
            return None
        return self._from_entity(entity), str(entity.metadata["etag"])

    async def replace_integration_if_unchanged(self, integration: Integration, etag: str) -> bool:
        """ETag-guarded write: False when someone else wrote (or deleted) it since it was read."""
        try:
            await self._table.update_entity(
                self._to_entity(integration), mode=sdk.UpdateMode.REPLACE, etag=etag,
                match_condition=sdk.MatchConditions.IfNotModified,
            )
        except (sdk.ResourceModifiedError, sdk.ResourceNotFoundError):
            return False
        return True

    async def update(
        self, integration_id: str, change: Callable[[Integration], Integration | None]
    ) -> Integration | None:
        """The integration after `change` (a pure function of the stored record; None for no write),
        written under its ETag and retried on lost races (`guarded_update`); None when there is none."""
        return await guarded_update(
            lambda: self.get_integration_with_etag(integration_id), self.replace_integration_if_unchanged,
            change, f"integration {integration_id}",
        )

    async def list_integrations(self) -> list[Integration]:
        query = f"PartitionKey eq {odata_quote(_INTEGRATION_PK)}"
        return [self._from_entity(e) async for e in self._table.query_entities(query)]

    async def list_by_sync_app(self, sync_app_id: str) -> list[Integration]:
        """Every integration (any kind and status) whose sync app is `sync_app_id`."""
        query = (
            f"PartitionKey eq {odata_quote(_INTEGRATION_PK)} and syncAppId eq {odata_quote(sync_app_id.lower())}"
        )
        return [self._from_entity(e) async for e in self._table.query_entities(query)]

    async def delete_integration(self, integration_id: str) -> None:
        await self._table.delete_entity(_INTEGRATION_PK, integration_id)

    # -- registration claims -----------------------------------------------------------------------
    # Insert Entity fails with 409 (EntityAlreadyExists) when the row exists, so of any number of racing
    # inserts of one claim the storage service lets exactly one succeed:
    # https://learn.microsoft.com/rest/api/storageservices/insert-entity

    @staticmethod
    def _claim_entity(home_tenant_id: str, sync_app_id: str, integration_id: str) -> dict[str, Any]:
        return {
            "PartitionKey": _CLAIM_PK,
            "RowKey": claim_key(home_tenant_id, sync_app_id),
            "integrationId": integration_id,
            "claimedAt": iso(utcnow()),
        }

    async def create_claim(self, home_tenant_id: str, sync_app_id: str, integration_id: str) -> str | None:
        """Insert the claim for `integration_id`; its ETag, or None when the pair is claimed already."""
        try:
            written = await self._table.create_entity(self._claim_entity(home_tenant_id, sync_app_id, integration_id))
        except sdk.ResourceExistsError:
            return None
        return str(written["etag"])

    async def get_claim(self, home_tenant_id: str, sync_app_id: str) -> RegistrationClaim | None:
        try:
            entity = await self._table.get_entity(_CLAIM_PK, claim_key(home_tenant_id, sync_app_id))
        except sdk.ResourceNotFoundError:
            return None
        return RegistrationClaim(
            integration_id=str(entity["integrationId"]),
            claimed_at=parse_iso(entity.get("claimedAt")) or datetime.min.replace(tzinfo=UTC),
            etag=str(entity.metadata["etag"]),
        )

    async def replace_claim_if_unchanged(
        self, home_tenant_id: str, sync_app_id: str, integration_id: str, etag: str
    ) -> str | None:
        """Hand the claim to `integration_id`, If-Match `etag`: the new ETag, or None when the claim changed
        (or was released) since it was read, so of racing takeovers one wins."""
        try:
            written = await self._table.update_entity(
                self._claim_entity(home_tenant_id, sync_app_id, integration_id), mode=sdk.UpdateMode.REPLACE,
                etag=etag, match_condition=sdk.MatchConditions.IfNotModified,
            )
        except (sdk.ResourceModifiedError, sdk.ResourceNotFoundError):
            return None
        return str(written["etag"])

    async def release_claim(self, home_tenant_id: str, sync_app_id: str, integration_id: str) -> bool:
        """Delete the claim if it still names `integration_id` (If-Match the ETag it was read with, so a
        claim another registration took over meanwhile stays); False when it names another or is gone."""
        claim = await self.get_claim(home_tenant_id, sync_app_id)
        if claim is None or claim.integration_id != integration_id:
            return False
        try:
            await self._table.delete_entity(
                _CLAIM_PK, claim_key(home_tenant_id, sync_app_id), etag=claim.etag,
                match_condition=sdk.MatchConditions.IfNotModified,
            )
        except sdk.ResourceModifiedError:
            return False
        return True


class TenantStore:
    """Customer tenants per integration: partition = integration id, row = tenant id."""

    def __init__(self, tables: Tables) -> None:
        self._table = tables.client(TENANTS_TABLE)

    @staticmethod
    def _to_entity(tenant: CustomerTenant) -> dict[str, Any]:
        return {
            "PartitionKey": tenant.integration_id,
            "RowKey": tenant.tenant_id.lower(),
            "record": tenant.model_dump_json(by_alias=True),
            "status": tenant.status.value,
        }

    @staticmethod
    def _from_entity(entity: dict[str, Any]) -> CustomerTenant:
        return CustomerTenant.model_validate_json(entity["record"])

    async def get_tenant(self, integration_id: str, tenant_id: str) -> CustomerTenant | None:
        found = await self.get_tenant_with_etag(integration_id, tenant_id)
        return None if found is None else found[0]

    async def get_tenant_with_etag(
        self, integration_id: str, tenant_id: str
    ) -> tuple[CustomerTenant, str] | None:
        try:
            entity = await self._table.get_entity(integration_id, tenant_id.lower())
        except sdk.ResourceNotFoundError:
            return None
        return self._from_entity(entity), str(entity.metadata["etag"])

    async def list_tenants(self, integration_id: str) -> list[CustomerTenant]:
        return [tenant for tenant, _ in await self.list_tenants_with_etags(integration_id)]

    async def list_tenants_with_etags(self, integration_id: str) -> list[tuple[CustomerTenant, str]]:
        """Every tenant of the integration with its ETag, for `replace_many_if_unchanged`."""
        query = f"PartitionKey eq {odata_quote(integration_id)}"
        return [(self._from_entity(e), str(e.metadata["etag"])) async for e in self._table.query_entities(query)]

    async def iter_tenant_page(
        self, integration_id: str, *, top: int, continuation: Any = None
    ) -> AsyncIterator[tuple[list[CustomerTenant], Any]]:
        query = f"PartitionKey eq {odata_quote(integration_id)}"
        pages = self._table.query_entities(query, results_per_page=top).by_page(continuation_token=continuation)
        async for page in pages:
            yield [self._from_entity(e) async for e in page], pages.continuation_token  # type: ignore[attr-defined]
            return

    async def upsert_tenant(self, tenant: CustomerTenant) -> None:
        await self._table.upsert_entity(self._to_entity(tenant), mode=sdk.UpdateMode.REPLACE)

    async def replace_if_unchanged(self, tenant: CustomerTenant, etag: str) -> bool:
        """ETag-guarded write: False when someone else wrote the tenant since we read it."""
        try:
            await self._table.update_entity(
                self._to_entity(tenant), mode=sdk.UpdateMode.REPLACE, etag=etag,
                match_condition=sdk.MatchConditions.IfNotModified,
            )
        except sdk.ResourceModifiedError:
            return False
        return True

    async def update(
        self, integration_id: str, tenant_id: str, change: Callable[[CustomerTenant], CustomerTenant | None]
    ) -> CustomerTenant | None:
        """The tenant after `change` (a pure function of the stored record; None for no write), written
        under its ETag and retried on lost races (`guarded_update`); None when there is no such tenant."""
        return await guarded_update(
            lambda: self.get_tenant_with_etag(integration_id, tenant_id), self.replace_if_unchanged,
            change, f"tenant {tenant_id} of integration {integration_id}",
        )

    async def create_if_absent(self, tenant: CustomerTenant) -> bool:
        try:
            await self._table.create_entity(self._to_entity(tenant))
        except sdk.ResourceExistsError:
            return False
        return True

    async def create_many_if_absent(
        self, tenants: list[CustomerTenant], *, in_flight: int = TRANSACTIONS_IN_FLIGHT
    ) -> list[bool]:
        """Create new tenants' rows, 100 to a transaction (one partition per integration), `in_flight`
        transactions at a time; returns, per tenant in order, whether this call created its row.

        A transaction is all or nothing: when one row of it exists already (another fan-out created it
        since the caller listed the tenants), that transaction's rows are created one by one instead, and
        an existing row is left as it is (False), for the caller's ETag-guarded update.
        """
        created = [False] * len(tenants)
        by_partition: dict[str, list[int]] = {}
        for n, tenant in enumerate(tenants):
            by_partition.setdefault(tenant.integration_id, []).append(n)
        chunks = [rows[i:i + TRANSACTION_MAX] for rows in by_partition.values()
                  for i in range(0, len(rows), TRANSACTION_MAX)]
        slots = asyncio.Semaphore(in_flight)

        async def submit(chunk: list[int]) -> None:
            async with slots:
                try:
                    await self._table.submit_transaction([("create", self._to_entity(tenants[n])) for n in chunk])
                except sdk.TableTransactionError:
                    for n in chunk:
                        created[n] = await self.create_if_absent(tenants[n])
                    return
            for n in chunk:
                created[n] = True

        await asyncio.gather(*(submit(chunk) for chunk in chunks))
        return created

    async def replace_many_if_unchanged(
        self, writes: list[tuple[CustomerTenant, str]], *, in_flight: int = TRANSACTIONS_IN_FLIGHT
    ) -> list[bool]:
        """ETag-guarded replace of many tenants (each with the ETag it was read with), 100 to a transaction
        (one partition per integration), `in_flight` transactions at a time; returns, per write in order,
        whether this call wrote it.

        A transaction is all or nothing: when one of its rows changed (or was deleted) since it was read,
        none of its rows is written (False for each), for the caller's one-by-one ETag-guarded update.
        """
        written = [False] * len(writes)
        by_partition: dict[str, list[int]] = {}
        for n, (tenant, _) in enumerate(writes):
            by_partition.setdefault(tenant.integration_id, []).append(n)
        chunks = [rows[i:i + TRANSACTION_MAX] for rows in by_partition.values()
                  for i in range(0, len(rows), TRANSACTION_MAX)]
        slots = asyncio.Semaphore(in_flight)

        async def submit(chunk: list[int]) -> None:
            operations: list[Any] = [
                ("update", self._to_entity(writes[n][0]),
                 {"mode": sdk.UpdateMode.REPLACE, "etag": writes[n][1],
                  "match_condition": sdk.MatchConditions.IfNotModified})
                for n in chunk
            ]
            async with slots:
                try:
                    await self._table.submit_transaction(operations)
                except sdk.TableTransactionError:
                    return
            for n in chunk:
                written[n] = True

        await asyncio.gather(*(submit(chunk) for chunk in chunks))
        return written

    async def delete_tenants(self, integration_id: str) -> None:
        for tenant in await self.list_tenants(integration_id):
            await self._table.delete_entity(integration_id, tenant.tenant_id.lower())


__all__ = ["IntegrationStore", "RegistrationClaim", "TenantStore", "claim_key", "dumps", "loads"]
