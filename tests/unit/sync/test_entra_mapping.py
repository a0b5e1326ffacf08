"""The Entra ID device mapper on Graph v1.0's device shape (the resource page's properties)."""

from __future__ import annotations

import pytest

from shared.mapping.entra import ENTRA_DEVICE_FIELDS, map_entra_device
from shared.mapping.text import SkippedRecord

pytestmark = pytest.mark.unit
TENANT = "3f1c2a55-7d0e-4c1b-9a77-5b0f2f6c9e01"
# The properties of https://learn.microsoft.com/graph/api/resources/device
RAW = {
    "id": "0b4e7f3a-0000-4000-8000-000000000001",
    "deviceId": "5E1D0C2B-0000-4000-8000-0000000000AA",
    "displayName": "CT-LAP-0001",
    "operatingSystem": "Windows",
    "operatingSystemVersion": "10.0.26100.2314",
    "trustType": "AzureAd",
    "isManaged": True,
    "isCompliant": True,
    "accountEnabled": True,
    "approximateLastSignInDateTime": "2026-11-28T07:02:11Z",
    "registrationDateTime": "2025-03-04T10:00:00Z",
    "manufacturer": "LENOVO",
    "model": "ThinkPad T14 Gen 4",
    "alternativeSecurityIds": [{"type": 2, "key": "not kept"}],
}


def test_a_managed_device_maps_every_field_in_order_and_its_device_id_is_a_join_key():
    device = map_entra_device(RAW, tenant_id=TENANT)
    assert tuple(device) == ENTRA_DEVICE_FIELDS
    assert device["deviceId"] == "5e1d0c2b-0000-4000-8000-0000000000aa"
    assert device["isManaged"] is True and device["isCompliant"] is True
    assert "alternativeSecurityIds" not in device


def test_an_unmanaged_device_without_the_flags_reads_as_unmanaged():
    device = map_entra_device({k: v for k, v in RAW.items() if k not in ("isManaged", "isCompliant")},
                              tenant_id=TENANT)
    assert device["isManaged"] is False and device["isCompliant"] is None


@pytest.mark.parametrize("bad", [{"id": ""}, {"isManaged": "true"}, {"accountEnabled": 1},
                                 {"displayName": 5}])
def test_unreadable_records_are_skipped_with_a_reason(bad):
    with pytest.raises(SkippedRecord):
        map_entra_device({**RAW, **bad}, tenant_id=TENANT)
