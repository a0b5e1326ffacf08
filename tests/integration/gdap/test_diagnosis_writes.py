"""How the fan-out stores access diagnoses, against Azurite: the changed tenants replaced in ETag-guarded
entity-group transactions, each written once, and a row that changed after the listing left to the
one-by-one guarded read-change-write, which keeps the other writer's change."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from typing import Any

import pytest

from shared.http import CallStats
from shared.models import CustomerTenant, Integration, IntegrationKind, TenantStatus
from shared.services.diagnosis import PENDING, diagnose_integration
from shared.stores.integrations import TenantStore
from shared.stores.tables import Tables, utcnow

pytestmark = pytest.mark.integration

CUSTOMERS = 150  # two transactions: 100 and 50


class RacingTenants(TenantStore):
    """The real store, recording what it writes; once the diagnosis has listed the rows, a "sync" writes
    one of them before the transactions go out."""

    def __init__(self, tables: Tables, raced: str) -> None:
        super().__init__(tables)
        self.raced = raced
        self.listings = 0
        self.batched: list[str] = []
        self.one_by_one: list[str] = []

    async def list_tenants_with_etags(self, integration_id: str) -> list[tuple[CustomerTenant, str]]:
        self.listings += 1
        return await super().list_tenants_with_etags(integration_id)

    async def replace_many_if_unchanged(self, writes: list[tuple[CustomerTenant, str]], **kw: Any) -> list[bool]:
        integration_id = writes[0][0].integration_id
        current = await self.get_tenant(integration_id, self.raced)
        assert current is not None
        await self.upsert_tenant(current.model_copy(update={"status": TenantStatus.SYNCING,
                                                            "last_run_id": "concurrent-sync"}))
        written = await super().replace_many_if_unchanged(writes, **kw)
        self.batched += [t.tenant_id for (t, _), ok in zip(writes, written, strict=True) if ok]
        return written

    async def replace_if_unchanged(self, tenant: CustomerTenant, etag: str) -> bool:
        self.one_by_one.append(tenant.tenant_id)
        return await super().replace_if_unchanged(tenant, etag)


async def test_changed_tenants_are_written_once_in_transactions_and_a_raced_row_falls_back(runtime):
    integration = Integration(
        id=str(uuid.uuid4()), kind=IntegrationKind.MULTI_TENANT, display_name="Batch MSP",
        partner_tenant_id=str(uuid.uuid4()), partner_app_id=str(uuid.uuid4()), sync_app_id=str(uuid.uuid4()),
        created_at=utcnow(),
    )  # never stored: no partner secret, so the GDAP listing is skipped and the verdicts are "pending"
    tenants = [CustomerTenant(integration_id=integration.id, tenant_id=f"{n:08x}-0000-4000-8000-000000000000",
                              discovered_by=["partnerCenter"], relationship="reseller")
               for n in range(CUSTOMERS)]
    assert all(await runtime.tenants.create_many_if_absent(tenants))
    raced = tenants[120].tenant_id  # in the second transaction
    store = RacingTenants(runtime.tables, raced)
    rt = dataclasses.replace(runtime, tenants=store)

    recorded = await diagnose_integration(rt, integration, tenants, CallStats())

    first, second = [t.tenant_id for t in tenants[:100]], [t.tenant_id for t in tenants[100:]]
    assert store.listings == 1
    assert store.batched == first  # the first transaction went through whole
    assert Counter(store.one_by_one) == Counter(second)  # the failed one's rows, each written once
    stored = {t.tenant_id: t for t in await runtime.tenants.list_tenants(integration.id)}
    assert [t.tenant_id for t in recorded] == [t.tenant_id for t in tenants]
    for tenant in recorded:
        assert tenant.access is not None
        assert tenant.access.verdict == PENDING
        assert stored[tenant.tenant_id] == tenant
    # The fallback read the row again: the concurrent sync's write is kept, with the diagnosis beside it.
    assert stored[raced].status == TenantStatus.SYNCING
    assert stored[raced].last_run_id == "concurrent-sync"

    # Nothing changed since: no listing, no writes.
    again = RacingTenants(runtime.tables, raced)
    assert await diagnose_integration(dataclasses.replace(runtime, tenants=again), integration, recorded,
                                      CallStats()) == recorded
    assert (again.listings, again.batched, again.one_by_one) == (0, [], [])
    await runtime.tenants.delete_tenants(integration.id)
