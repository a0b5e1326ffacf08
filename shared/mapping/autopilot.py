"""Windows Autopilot device identities (Graph v1.0) -> memsync's Autopilot device (docs/api.md).

Hardware registered for Autopilot, enrolled or not: what an MSP acts on before anyone enrols a machine.
https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity
https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-list
"""

from __future__ import annotations

from typing import Any

from shared.mapping.dates import normal_date
from shared.mapping.devices import is_placeholder_serial, join_key, normalise_serial, safe_id
from shared.mapping.text import SkippedRecord, storable

AUTOPILOT_SELECT: tuple[str, ...] = (
    "id",
    "serialNumber",
    "manufacturer",
    "model",
    "groupTag",
    "purchaseOrderIdentifier",
    "enrollmentState",
    "lastContactedDateTime",
    "managedDeviceId",
    "azureActiveDirectoryDeviceId",
    "displayName",
    "userPrincipalName",
    "skuNumber",
    "systemFamily",
)

# The enrollmentState values of Graph v1.0 (https://learn.microsoft.com/graph/api/resources/intune-enrollment-enrollmentstate;
# `blocked` is beta only).
ENROLLMENT_STATES: tuple[str, ...] = ("unknown", "enrolled", "pendingReset", "failed", "notContacted")

AUTOPILOT_FIELDS: tuple[str, ...] = (
    "id",
    "tenantId",
    "serialNumber",
    "serialPlaceholder",
    "manufacturer",
    "model",
    "groupTag",
    "purchaseOrderIdentifier",
    "enrollmentState",
    "enrolled",
    "lastContactedDateTime",
    "managedDeviceId",
    "azureActiveDirectoryDeviceId",
    "displayName",
    "userPrincipalName",
    "skuNumber",
    "systemFamily",
)

_DISPLAY = frozenset({"manufacturer", "model", "displayName", "userPrincipalName", "groupTag"})


def map_autopilot_device(raw: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    """One windowsAutopilotDeviceIdentity -> the Autopilot device fields. Raises `SkippedRecord` for a
    record without a usable id or with a field of the wrong type.

    `enrolled` is true when Intune manages the machine: `enrollmentState` is `enrolled` and
    `managedDeviceId` names a device (Graph reports the all-zero GUID for one never enrolled)."""
    if not isinstance(raw, dict):
        raise SkippedRecord("record is not an object")
    device: dict[str, Any] = {"id": safe_id(raw.get("id")), "tenantId": tenant_id}
    serial = normalise_serial(storable(raw, "serialNumber"))
    device["serialNumber"] = serial or None
    device["serialPlaceholder"] = is_placeholder_serial(serial)
    for name in ("manufacturer", "model", "groupTag", "purchaseOrderIdentifier", "enrollmentState",
                 "lastContactedDateTime", "displayName", "userPrincipalName", "skuNumber", "systemFamily"):
        device[name] = storable(raw, name, display=name in _DISPLAY)
    device["lastContactedDateTime"] = normal_date(device["lastContactedDateTime"])
    for name in ("managedDeviceId", "azureActiveDirectoryDeviceId"):
        value = storable(raw, name)
        device[name] = join_key(value)  # the all-zero GUID of an unenrolled identity is no id
    device["enrolled"] = device["enrollmentState"] == "enrolled" and device["managedDeviceId"] is not None
    return {name: device[name] for name in AUTOPILOT_FIELDS}
