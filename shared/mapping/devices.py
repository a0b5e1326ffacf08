"""Intune managed devices (Graph v1.0) and Defender machines -> memsync's Device asset (docs/api.md, Device).

Field names follow Graph v1.0: the owner is `managedDeviceOwnerType` there (`ownerType` is beta only).
https://learn.microsoft.com/graph/api/resources/intune-devices-manageddevice
Date-times are kept exactly as Microsoft wrote them (Intune gives 7 fractional digits and an offset),
so what is stored compares equal to what Graph returned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.mapping.dates import normal_date
from shared.mapping.lifecycle import os_support
from shared.mapping.text import SkippedRecord, storable

# The properties memsync reads from the list (its `$select`): exactly the Device's Intune fields (docs/api.md).
MANAGED_DEVICE_SELECT: tuple[str, ...] = (
    "id",
    "deviceName",
    "serialNumber",
    "manufacturer",
    "model",
    "operatingSystem",
    "osVersion",
    "complianceState",
    "managementAgent",
    "managedDeviceOwnerType",
    "enrolledDateTime",
    "lastSyncDateTime",
    "userPrincipalName",
    "azureADDeviceId",
    "totalStorageSpaceInBytes",
    "freeStorageSpaceInBytes",
    "physicalMemoryInBytes",
    "wiFiMacAddress",
    "ethernetMacAddress",
    "imei",
    "isEncrypted",
)

# Intune's complianceState values, in the order the API lists them:
# https://learn.microsoft.com/graph/api/resources/intune-devices-compliancestate
COMPLIANCE_STATES = ("unknown", "compliant", "noncompliant", "conflict", "error", "inGracePeriod", "configManager")

_STRING_FIELDS = (
    "deviceName",
    "manufacturer",
    "model",
    "operatingSystem",
    "osVersion",
    "complianceState",
    "managementAgent",
    "enrolledDateTime",
    "lastSyncDateTime",
    "userPrincipalName",
    "azureADDeviceId",
    "wiFiMacAddress",
    "ethernetMacAddress",
    "imei",
)
# Free text a person typed, bounded for display (see shared.mapping.text).
DISPLAY_FIELDS = frozenset({"deviceName", "manufacturer", "model", "userPrincipalName"})
_INT_FIELDS = ("totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "physicalMemoryInBytes")
_DATE_FIELDS = ("enrolledDateTime", "lastSyncDateTime")  # shared.mapping.dates

# Values firmware vendors leave in the SMBIOS serial field. Matching assets by these would merge
# unrelated machines, so they are flagged (`serialPlaceholder`), never trusted as an identity.
_PLACEHOLDER_SERIALS = frozenset(
    {
        "",
        "DEFAULT STRING",
        "TO BE FILLED BY O.E.M.",
        "TO BE FILLED BY OEM",
        "SYSTEM SERIAL NUMBER",
        "SERIAL NUMBER",
        "CHASSIS SERIAL NUMBER",
        "NONE",
        "N/A",
        "NA",
        "NULL",
        "UNKNOWN",
        "NOT SPECIFIED",
        "NOT APPLICABLE",
        "NOT AVAILABLE",
        "INVALID",
        "OEM",
        "O.E.M.",
        "123456789",
        "0123456789",
        "1234567890",
        "XXXXXXXXXX",
    }
)
_ALL_SAME = re.compile(r"^(.)\1*$")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]")
# Row keys may not hold / \ # ? or control characters (Table Storage naming rules); memsync also keeps
# them printable ASCII not starting with "~", so its own marker rows ("~...") sort after every asset.
_SAFE_ID = re.compile(r"^[!-}][ -~]{0,254}$")
_FORBIDDEN_IN_KEY = re.compile(r"[/\\#?]")


def normalise_serial(value: Any) -> str | None:
    """Serial numbers as compared across tools: trimmed and upper-cased; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SkippedRecord(f"serialNumber is {type(value).__name__}, not a string")
    return value.strip().upper()


def is_placeholder_serial(serial: str | None) -> bool:
    """True for the empty, the OEM defaults and the repeated-digit serials ("0", "00000000", ...)."""
    if serial is None:
        return True
    s = serial.strip().upper()
    if s in _PLACEHOLDER_SERIALS:
        return True
    # "0", "000000", "0000-0000", "FFFFFFFF", "--------": one character repeated is no identity.
    core = _NOT_ALNUM.sub("", s)
    return not core or bool(_ALL_SAME.match(core))


def safe_id(value: Any) -> str:
    if not isinstance(value, str) or not _SAFE_ID.match(value) or _FORBIDDEN_IN_KEY.search(value):
        raise SkippedRecord("id is missing or not a usable identifier")
    return value


def record_id(raw: Any) -> str | None:
    """The usable id of a listed record, or None: a record whose id is readable but whose other fields
    are not is still *present* (its stored copy is kept), one without a usable id cannot be placed."""
    try:
        return safe_id(raw.get("id")) if isinstance(raw, dict) else None
    except SkippedRecord:
        return None


def _string(raw: dict[str, Any], name: str) -> str | None:
    return storable(raw, name, display=name in DISPLAY_FIELDS)


def whole_number(raw: dict[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise SkippedRecord(f"{name} is {type(value).__name__}, not a whole number")
    return int(value)


JOINED_FIELDS: tuple[str, ...] = ("autopilot", "entraDevice", "vulnerabilities")
DEFENDER_FIELDS: tuple[str, ...] = ("machineId", "healthStatus", "riskScore", "exposureLevel",
                                    "onboardingStatus", "lastSeen")


@dataclass(frozen=True)
class DefenderSummary:
    """What memsync keeps of a Defender for Endpoint machine."""

    machine_id: str
    health_status: str | None
    risk_score: str | None
    exposure_level: str | None
    onboarding_status: str | None
    last_seen: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "machineId": self.machine_id,
            "healthStatus": self.health_status,
            "riskScore": self.risk_score,
            "exposureLevel": self.exposure_level,
            "onboardingStatus": self.onboarding_status,
            "lastSeen": self.last_seen,
        }


def join_key(device_id: Any) -> str | None:
    """An Entra device id as a join key; None for a missing one and for the all-zero GUID that
    unregistered devices report (joining on it would pair unrelated machines)."""
    if not isinstance(device_id, str):
        return None
    key = device_id.strip().lower()
    return key if key and key.strip("0-") else None


def defender_summary(machine: dict[str, Any]) -> tuple[str, DefenderSummary] | None:
    """(join key of its aadDeviceId, summary) of a machine, or None when it cannot be joined to Intune."""
    machine_id = machine.get("id")
    aad = join_key(machine.get("aadDeviceId"))
    if not isinstance(machine_id, str) or not machine_id or aad is None:
        return None

    def text(name: str) -> str | None:
        value = machine.get(name)
        return value if isinstance(value, str) else None

    summary = DefenderSummary(
        machine_id=machine_id,
        health_status=text("healthStatus"),
        risk_score=text("riskScore"),
        exposure_level=text("exposureLevel"),
        onboarding_status=text("onboardingStatus"),
        last_seen=normal_date(text("lastSeen")),
    )
    return aad, summary


class DefenderIndex:
    """Defender machines by Entra device id. A re-onboarded device has several machines: keep the
    one seen last (ISO-8601 UTC strings of one format order as their instants)."""

    def __init__(self) -> None:
        self._by_aad: dict[str, DefenderSummary] = {}

    def __len__(self) -> int:
        return len(self._by_aad)

    def add(self, machine: dict[str, Any]) -> bool:
        found = defender_summary(machine)
        if found is None:
            return False
        aad, summary = found
        current = self._by_aad.get(aad)
        if current is None or (summary.last_seen or "") > (current.last_seen or ""):
            self._by_aad[aad] = summary
        return True

    def match(self, azure_ad_device_id: str | None) -> DefenderSummary | None:
        key = join_key(azure_ad_device_id)
        return None if key is None else self._by_aad.get(key)


def map_device(
    raw: dict[str, Any],
    *,
    tenant_id: str,
    defender: dict[str, Any] | None = None,
    joins: Mapping[str, dict[str, Any] | None] | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """One Graph v1.0 managedDevice -> the Device fields of docs/api.md (without the bookkeeping dates),
    with the summaries of what joins it (`shared.mapping.joins`), each None when nothing does, and its
    `osSupport` on the sync's day `today` (`shared.mapping.lifecycle`; None when no day is given).

    Raises `SkippedRecord` for a record without a usable id or with fields of the wrong type.
    `physicalMemoryInBytes` 0 in a list response means "not listed" (FACTS.md), so it maps to None.
    """
    if not isinstance(raw, dict):
        raise SkippedRecord("record is not an object")
    device: dict[str, Any] = {"id": safe_id(raw.get("id")), "tenantId": tenant_id}
    for name in _STRING_FIELDS:
        device[name] = _string(raw, name)
    serial = normalise_serial(storable(raw, "serialNumber"))
    device["serialNumber"] = serial or None
    device["serialPlaceholder"] = is_placeholder_serial(serial)
    device["ownerType"] = _string(raw, "managedDeviceOwnerType")
    for name in _INT_FIELDS:
        device[name] = whole_number(raw, name)
    if device["physicalMemoryInBytes"] == 0:
        device["physicalMemoryInBytes"] = None
    encrypted = raw.get("isEncrypted")
    if encrypted is not None and not isinstance(encrypted, bool):
        raise SkippedRecord(f"isEncrypted is {type(encrypted).__name__}, not a boolean")
    device["isEncrypted"] = encrypted
    for name in _DATE_FIELDS:
        device[name] = normal_date(device[name])
    device["osSupport"] = (None if today is None
                           else os_support(device["operatingSystem"], device["osVersion"], today=today))
    device["defender"] = defender
    for name in JOINED_FIELDS:  # what describes the same machine (shared.mapping.joins), None when nothing
        device[name] = (joins or {}).get(name)
    return device


# The order of the Device fields (docs/api.md), for responses.
DEVICE_FIELDS: tuple[str, ...] = (
    "id",
    "tenantId",
    "deviceName",
    "serialNumber",
    "serialPlaceholder",
    "manufacturer",
    "model",
    "operatingSystem",
    "osVersion",
    "osSupport",
    "complianceState",
    "managementAgent",
    "ownerType",
    "enrolledDateTime",
    "lastSyncDateTime",
    "userPrincipalName",
    "azureADDeviceId",
    "totalStorageSpaceInBytes",
    "freeStorageSpaceInBytes",
    "physicalMemoryInBytes",
    "wiFiMacAddress",
    "ethernetMacAddress",
    "imei",
    "isEncrypted",
    "defender",
    "autopilot",
    "entraDevice",
    "vulnerabilities",
)
