"""Defender for Endpoint vulnerabilities per machine and software -> memsync's vulnerability (docs/api.md),
and the per-device summary a device answer carries.

`GET /api/vulnerabilities/machinesVulnerabilities` lists one record per (machine, CVE, product version):
`id` (`{machineId}-_-{cveId}-_-{vendor}-_-{product}-_-{version}-_-{fixingKbId}`), `cveId`, `machineId`,
`fixingKbId` (null without a fixing KB), `productName`, `productVendor`, `productVersion`, `severity`.
https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines
Severity levels (Low, Medium, High, Critical): https://learn.microsoft.com/defender-endpoint/api/vulnerability
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.mapping.text import SkippedRecord, storable

VULNERABILITY_FIELDS: tuple[str, ...] = (
    "id",
    "tenantId",
    "machineId",
    "cveId",
    "productName",
    "productVendor",
    "productVersion",
    "severity",
    "fixingKbId",
)

# Defender's severity levels, most severe first; the summary counts each under its lower-case name.
SEVERITIES: tuple[str, ...] = ("Critical", "High", "Medium", "Low")
SUMMARY_FIELDS: tuple[str, ...] = ("total", "critical", "high", "medium", "low", "topCves")
TOP_CVES = 5

# A Defender id joins five names with "-_-": longer than Intune's ids, so a row key of its own rules
# (Table Storage: at most 1 KiB, no "/", "\", "#", "?" or control characters; memsync: printable ASCII
# that does not start with "~", which sorts after every asset).
_ROW_KEY = re.compile(r"^[!-}][ -~]{0,511}$")
_FORBIDDEN_IN_KEY = re.compile(r"[/\\#?]")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def _row_key(value: Any) -> str:
    if not isinstance(value, str) or not _ROW_KEY.match(value) or _FORBIDDEN_IN_KEY.search(value):
        raise SkippedRecord("id is missing or not a usable identifier")
    return value


def severity_of(value: str | None) -> str | None:
    """Defender's severity in its own spelling ("High"), whatever the case it came in; other values as sent."""
    if value is None:
        return None
    for name in SEVERITIES:
        if value.lower() == name.lower():
            return name
    return value


def map_vulnerability(raw: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    """One machine vulnerability -> the vulnerability fields. Raises `SkippedRecord` for a record without
    a usable id or machine id, or with a field of the wrong type."""
    if not isinstance(raw, dict):
        raise SkippedRecord("record is not an object")
    out: dict[str, Any] = {"id": _row_key(raw.get("id")), "tenantId": tenant_id}
    machine = storable(raw, "machineId")
    if not machine:
        raise SkippedRecord("machineId is missing")
    out["machineId"] = machine.lower()
    for name in ("cveId", "productVersion", "fixingKbId"):
        out[name] = storable(raw, name)
    for name in ("productName", "productVendor"):
        out[name] = storable(raw, name, display=True)
    out["severity"] = severity_of(storable(raw, "severity"))
    return {name: out[name] for name in VULNERABILITY_FIELDS}


@dataclass
class _Machine:
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    worst: list[tuple[int, str]] = field(default_factory=list)  # (severity rank, CVE id), at most TOP_CVES


class VulnerabilityTally:
    """Per Defender machine: how many vulnerabilities of each severity, and the most severe CVEs (each
    CVE once, however many products it affects). Fed the mapped records as the listing streams."""

    def __init__(self) -> None:
        self._machines: dict[str, _Machine] = {}

    def __len__(self) -> int:
        return len(self._machines)

    def add(self, vulnerability: dict[str, Any]) -> None:
        machine = self._machines.setdefault(vulnerability["machineId"], _Machine())
        machine.total += 1
        severity = vulnerability.get("severity")
        if severity in _RANK:
            machine.counts[severity] = machine.counts.get(severity, 0) + 1
        cve = vulnerability.get("cveId")
        if cve and all(c != cve for _, c in machine.worst):
            machine.worst.append((_RANK.get(severity or "", len(SEVERITIES)), cve))
            # Most severe first; among equals the newest CVE.
            machine.worst.sort(key=lambda rc: (rc[0], _cve_order(rc[1])))
            del machine.worst[TOP_CVES:]

    def summary(self, machine_id: str | None) -> dict[str, Any] | None:
        """The device answer's `vulnerabilities`: counts by severity, total, top CVEs; None when Defender
        lists nothing for the machine."""
        machine = self._machines.get(machine_id.lower()) if machine_id else None
        if machine is None:
            return None
        out: dict[str, Any] = {"total": machine.total}
        for name in SEVERITIES:
            out[name.lower()] = machine.counts.get(name, 0)
        out["topCves"] = [cve for _, cve in machine.worst]
        return out

    def totals(self) -> dict[str, int]:
        """The tenant's counts by severity (its status's `facts.vulnerabilities`)."""
        out = {name.lower(): 0 for name in SEVERITIES}
        for machine in self._machines.values():
            for name, n in machine.counts.items():
                out[name.lower()] += n
        return out


def _cve_order(cve: str) -> tuple[int, int]:
    """Newest first: CVE-2024-12345 before CVE-2024-1234 before CVE-2023-9999 (year, then number)."""
    parts = cve.split("-")
    year = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
    number = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    return (-year, -number)
