"""Microsoft Graph v1.0 `subscribedSku` -> memsync's licence (docs/api.md): what a customer pays for
(`prepaidUnits`) against what it uses (`consumedUnits`).
https://learn.microsoft.com/graph/api/resources/subscribedsku
https://learn.microsoft.com/graph/api/subscribedsku-list
https://learn.microsoft.com/graph/api/resources/licenseunitsdetail (prepaidUnits)
"""

from __future__ import annotations

from typing import Any

from shared.mapping.devices import safe_id, whole_number
from shared.mapping.text import SkippedRecord, storable

LICENCE_SELECT: tuple[str, ...] = (
    "id",
    "skuId",
    "skuPartNumber",
    "capabilityStatus",
    "appliesTo",
    "consumedUnits",
    "prepaidUnits",
)
PREPAID_UNITS: tuple[str, ...] = ("enabled", "suspended", "warning", "lockedOut")
LICENCE_FIELDS: tuple[str, ...] = ("id", "tenantId", *LICENCE_SELECT[1:])


def map_licence(raw: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    """One subscribedSku -> the licence fields. Raises `SkippedRecord` for a record without a usable id
    or with a field of the wrong type. `prepaidUnits` absent is read as no units."""
    if not isinstance(raw, dict):
        raise SkippedRecord("record is not an object")
    out: dict[str, Any] = {"id": safe_id(raw.get("id")), "tenantId": tenant_id}
    for name in ("skuId", "capabilityStatus", "appliesTo"):
        out[name] = storable(raw, name)
    out["skuPartNumber"] = storable(raw, "skuPartNumber", display=True)
    out["consumedUnits"] = whole_number(raw, "consumedUnits")
    prepaid = raw.get("prepaidUnits")
    if prepaid is not None and not isinstance(prepaid, dict):
        raise SkippedRecord(f"prepaidUnits is {type(prepaid).__name__}, not an object")
    out["prepaidUnits"] = {name: whole_number(prepaid or {}, name) or 0 for name in PREPAID_UNITS}
    return {name: out[name] for name in LICENCE_FIELDS}
