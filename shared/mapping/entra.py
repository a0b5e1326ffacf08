"""Microsoft Entra ID devices (Graph v1.0 `device`) -> memsync's Entra device (docs/api.md).

Every device Entra ID knows, managed by Intune or not: what an MSP acts on is the ones Intune does not
manage (`isManaged` false), and the ones that stopped signing in.
https://learn.microsoft.com/graph/api/resources/device
https://learn.microsoft.com/graph/api/device-list
"""

from __future__ import annotations

from typing import Any

from shared.mapping.dates import normal_date
from shared.mapping.devices import join_key, safe_id
from shared.mapping.text import SkippedRecord, storable

ENTRA_DEVICE_SELECT: tuple[str, ...] = (
    "id",
    "deviceId",
    "displayName",
    "operatingSystem",
    "operatingSystemVersion",
    "trustType",
    "isManaged",
    "isCompliant",
    "accountEnabled",
    "approximateLastSignInDateTime",
    "registrationDateTime",
    "manufacturer",
    "model",
)

# The Entra device fields (docs/api.md) in order: what is selected, with the tenant after the id.
ENTRA_DEVICE_FIELDS: tuple[str, ...] = ("id", "tenantId", *ENTRA_DEVICE_SELECT[1:])

_DISPLAY = frozenset({"displayName", "manufacturer", "model"})


def _flag(raw: dict[str, Any], name: str) -> bool | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, bool):
        raise SkippedRecord(f"{name} is {type(value).__name__}, not a boolean")
    return value


def map_entra_device(raw: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    """One Entra ID device -> the Entra device fields. Raises `SkippedRecord` for a record without a
    usable id or with a field of the wrong type.

    `deviceId` is the id Intune and Defender know the device by (a managed device's `azureADDeviceId`);
    `isManaged` absent is read as false: Entra reports no management for it."""
    if not isinstance(raw, dict):
        raise SkippedRecord("record is not an object")
    device: dict[str, Any] = {"id": safe_id(raw.get("id")), "tenantId": tenant_id}
    device["deviceId"] = join_key(storable(raw, "deviceId"))
    for name in ("displayName", "operatingSystem", "operatingSystemVersion", "trustType",
                 "approximateLastSignInDateTime", "registrationDateTime", "manufacturer", "model"):
        device[name] = storable(raw, name, display=name in _DISPLAY)
    for name in ("approximateLastSignInDateTime", "registrationDateTime"):
        device[name] = normal_date(device[name])
    device["isManaged"] = bool(_flag(raw, "isManaged"))
    device["isCompliant"] = _flag(raw, "isCompliant")
    device["accountEnabled"] = _flag(raw, "accountEnabled")
    return {name: device[name] for name in ENTRA_DEVICE_FIELDS}
