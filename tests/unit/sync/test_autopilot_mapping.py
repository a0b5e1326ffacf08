"""The Autopilot mapper on Graph v1.0's windowsAutopilotDeviceIdentity shape (the resource page's JSON
representation), and on the records it must refuse or keep apart."""

from __future__ import annotations

import pytest

from shared.mapping.autopilot import AUTOPILOT_FIELDS, map_autopilot_device
from shared.mapping.text import SkippedRecord

pytestmark = pytest.mark.unit
TENANT = "3f1c2a55-7d0e-4c1b-9a77-5b0f2f6c9e01"
# The properties of https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity
RAW = {
    "@odata.type": "#microsoft.graph.windowsAutopilotDeviceIdentity",
    "id": "a1b2c3d4-0000-4000-8000-000000000001",
    "groupTag": "Sales",
    "purchaseOrderIdentifier": "PO-2026-118",
    "serialNumber": " pf3abc12 ",
    "productKey": "not kept",
    "manufacturer": "LENOVO",
    "model": "ThinkPad T14 Gen 4",
    "enrollmentState": "enrolled",
    "lastContactedDateTime": "2026-11-20T08:15:00Z",
    "addressableUserName": "Ana",
    "userPrincipalName": "ana@contoso.com",
    "resourceName": "",
    "skuNumber": "21HD",
    "systemFamily": "ThinkPad T14 Gen 4",
    "azureActiveDirectoryDeviceId": "5E1D0C2B-0000-4000-8000-0000000000AA",
    "managedDeviceId": "7c0b8f5e-0000-4000-8000-0000000000bb",
    "displayName": "CT-LAP-0001",
}


def test_an_enrolled_identity_maps_every_field_in_order():
    device = map_autopilot_device(RAW, tenant_id=TENANT)
    assert tuple(device) == AUTOPILOT_FIELDS
    assert device["serialNumber"] == "PF3ABC12" and device["serialPlaceholder"] is False
    assert device["enrolled"] is True and device["managedDeviceId"] == "7c0b8f5e-0000-4000-8000-0000000000bb"
    assert device["azureActiveDirectoryDeviceId"] == "5e1d0c2b-0000-4000-8000-0000000000aa"
    assert "productKey" not in device  # a product key is a licence secret of sorts: never stored


def test_a_never_enrolled_identity_has_no_managed_device_and_a_placeholder_serial_is_flagged():
    raw = {**RAW, "enrollmentState": "notContacted", "managedDeviceId": "00000000-0000-0000-0000-000000000000",
           "serialNumber": "To be filled by O.E.M."}
    device = map_autopilot_device(raw, tenant_id=TENANT)
    assert device["enrolled"] is False and device["managedDeviceId"] is None
    assert device["serialPlaceholder"] is True


@pytest.mark.parametrize("bad", [{"id": None}, {"id": "a/b"}, {"serialNumber": 12345}, {"groupTag": ["x"]}])
def test_unreadable_records_are_skipped_with_a_reason(bad):
    with pytest.raises(SkippedRecord):
        map_autopilot_device({**RAW, **bad}, tenant_id=TENANT)
