"""The tenant lease's clock: `leaseUntil` when the row has it, else ten minutes from the sync's start."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.models import CustomerTenant, TenantStatus
from shared.services.tenant_sync import LEASE_MINUTES, lease_expires, lease_live
from shared.stores.tables import utcnow

pytestmark = pytest.mark.unit


def tenant(**fields) -> CustomerTenant:
    return CustomerTenant(integration_id="i", tenant_id="t", **fields)


def test_a_lease_lapses_at_lease_until_not_at_the_start_plus_ten_minutes():
    now = utcnow()
    row = tenant(status=TenantStatus.SYNCING, last_sync_started_at=now - timedelta(minutes=30),
                 lease_id="a", lease_until=now + timedelta(minutes=1))
    assert lease_expires(row) == row.lease_until
    assert lease_live(row)
    assert not lease_live(row.model_copy(update={"lease_until": now - timedelta(seconds=1)}))


def test_a_row_without_lease_until_derives_it_from_the_start():
    now = utcnow()
    row = tenant(status=TenantStatus.SYNCING, last_sync_started_at=now - timedelta(minutes=LEASE_MINUTES - 1))
    assert lease_expires(row) == row.last_sync_started_at + timedelta(minutes=LEASE_MINUTES)
    assert lease_live(row)
    assert not lease_live(row.model_copy(update={"last_sync_started_at": now - timedelta(minutes=LEASE_MINUTES + 1)}))
    assert not lease_live(tenant(status=TenantStatus.SYNCING))


@pytest.mark.parametrize("status", [TenantStatus.OK, TenantStatus.ERROR, TenantStatus.PENDING])
def test_only_a_syncing_tenant_is_leased(status):
    row = tenant(status=status, last_sync_started_at=utcnow(), lease_id="a",
                 lease_until=utcnow() + timedelta(minutes=LEASE_MINUTES))
    assert not lease_live(row)


def test_the_lease_fields_round_trip_in_camel_case():
    row = tenant(status=TenantStatus.SYNCING, lease_id="a", lease_until=utcnow())
    data = row.model_dump(by_alias=True, mode="json")
    assert {"leaseId", "leaseUntil"} <= set(data)
    assert CustomerTenant.model_validate_json(row.model_dump_json(by_alias=True)) == row
    assert CustomerTenant.model_validate({"integrationId": "i", "tenantId": "t"}).lease_id is None  # old rows
