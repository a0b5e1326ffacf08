"""Intune detected apps (Graph v1.0) -> memsync's Software asset (docs/api.md, Software title).

https://learn.microsoft.com/graph/api/resources/intune-devices-detectedapp
"""

from __future__ import annotations

from typing import Any

from shared.mapping.devices import safe_id
from shared.mapping.text import SkippedRecord, storable

DETECTED_APP_SELECT: tuple[str, ...] = (
    "id",
    "displayName",
    "version",
    "publisher",
    "platform",
    "sizeInByte",
    "deviceCount",
)

SOFTWARE_FIELDS: tuple[str, ...] = (
    "id",
    "tenantId",
    "displayName",
    "version",
    "publisher",
    "platform",
    "sizeInByte",
    "deviceCount",
)


def map_software(raw: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    """One detectedApp -> the Software fields. Raises `SkippedRecord` for an unusable record."""
    if not isinstance(raw, dict):
        raise SkippedRecord("record is not an object")
    app: dict[str, Any] = {"id": safe_id(raw.get("id")), "tenantId": tenant_id}
    for name in ("displayName", "version", "publisher", "platform"):
        app[name] = storable(raw, name, display=name in ("displayName", "publisher"))
    for name in ("sizeInByte", "deviceCount"):
        value = raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value != int(value)):
            raise SkippedRecord(f"{name} is not a whole number")
        app[name] = None if value is None else int(value)
    return app
