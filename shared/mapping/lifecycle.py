"""Operating-system end of support: a device's Windows release matched to the date Microsoft stops servicing it.

The dates are a file beside this module, `os_lifecycle.json`, read once at import: one row per product,
release and edition group, each with the build number of the release and the Microsoft page its date comes
from (`tests/unit/sync/test_lifecycle_data.py` checks every row):

- Windows 10 and Windows 11, the end of servicing of each feature update, from the lifecycle pages
  https://learn.microsoft.com/lifecycle/products/windows-11-home-and-pro and
  https://learn.microsoft.com/lifecycle/products/windows-11-enterprise-and-education (and Windows 10's
  two). Editions differ: a Windows 11 release is serviced 24 months for Home and Pro (with Pro Education,
  Pro for Workstations and SE) and 36 months for Enterprise and Education; Windows 10 22H2 ended on
  2025-10-14 for every edition.
- Windows Server, the end of extended support of each long-term servicing release
  (https://learn.microsoft.com/lifecycle/products/windows-server-2022 and its siblings).

A device is matched by its build, the third part of the `osVersion` Intune reports (`10.0.22631.3880` is
build 22631, Windows 11 23H2; https://learn.microsoft.com/windows/release-health/windows11-release-information
lists the builds), and by its `operatingSystem`: Windows Server 2025 and Windows 11 24H2 share build
26100, so a device whose operatingSystem names a server is matched to Windows Server rows only, and any
other Windows device to Windows 10 and 11 rows only.

Intune's v1.0 managedDevice has no edition field memsync reads. Without an edition the verdict uses the
earliest end date among the release's edition groups (Home and Pro's, for Windows 11): the conservative
answer, so an Enterprise device may be reported ended up to a year before Microsoft stops servicing it;
`endsOn` says which date was used and `source` names the page with the others. Long-Term Servicing Channel
editions share their build with a general release (Windows 10 Enterprise LTSC 2021 is 19044, as 21H2) and
are not told apart either. Extended Security Updates bought for Windows 10 do not count as support here.

iOS, iPadOS, macOS and Android are `unknown`: Apple publishes no end-of-support dates for its OS releases,
and Google none for Android versions (how long a phone gets updates is each manufacturer's policy for that
model). A Windows build the file does not list, and a version memsync cannot read, are `unknown` too.

For a day `today`, a matched release is `ended` after `endsOn` (the last day Microsoft services it: the
release's final Patch Tuesday), `endingSoon` from 180 days before `endsOn` up to that day, and `supported`
before that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

DATA_FILE = Path(__file__).with_name("os_lifecycle.json")
ENDING_SOON_DAYS = 180
OsStatus = Literal["supported", "endingSoon", "ended", "unknown"]
OS_STATUSES: tuple[OsStatus, ...] = ("supported", "endingSoon", "ended", "unknown")
# The members of a device's `osSupport` (`Entity.nested` on DEVICES: columns osSupportStatus, ...).
OS_SUPPORT_FIELDS: tuple[str, ...] = ("status", "endsOn", "release", "source")
PRODUCTS = ("Windows 10", "Windows 11", "Windows Server")
ALL_EDITIONS = "all"

# 10.0.<build>.<revision> as Intune reports a Windows osVersion (the revision is the monthly update).
_WINDOWS_VERSION = re.compile(r"^10\.0\.(\d{4,6})(?:\.\d{1,6})?$")


@dataclass(frozen=True)
class LifecycleRow:
    """One row of `os_lifecycle.json`: a release of a product, for one edition group."""

    product: str  # one of PRODUCTS
    release: str  # "23H2", "2022"
    build: int
    editions: str  # "Home/Pro", "Enterprise/Education", or "all"
    ends_on: date
    source: str

    @property
    def name(self) -> str:
        return f"{self.product} {self.release}"

    @property
    def server(self) -> bool:
        return self.product == "Windows Server"

    def covers(self, edition: str) -> bool:
        wanted = edition.strip().lower()
        group = self.editions.lower()
        return group == ALL_EDITIONS or wanted == group or wanted in group.split("/")


def load_rows(path: Path = DATA_FILE) -> tuple[LifecycleRow, ...]:
    """The file's rows; a row that cannot be read, or a build two releases of one kind claim, fails here
    (at import), not as a wrong verdict later."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows: list[LifecycleRow] = []
    for item in data["rows"]:
        if item["product"] not in PRODUCTS:
            raise ValueError(f"{path.name}: unknown product {item['product']!r}")
        rows.append(LifecycleRow(product=item["product"], release=item["release"], build=int(item["build"]),
                                 editions=item["editions"], ends_on=date.fromisoformat(item["endsOn"]),
                                 source=item["source"]))
    seen: dict[tuple[bool, int], str] = {}
    keys: set[tuple[str, str, str]] = set()
    for row in rows:
        if seen.setdefault((row.server, row.build), row.name) != row.name:
            raise ValueError(f"{path.name}: build {row.build} is both {seen[(row.server, row.build)]} and {row.name}")
        key = (row.product, row.release, row.editions)
        if key in keys:
            raise ValueError(f"{path.name}: {row.name} {row.editions} is listed twice")
        keys.add(key)
    return tuple(rows)


def _by_build(rows: tuple[LifecycleRow, ...]) -> dict[tuple[bool, int], tuple[LifecycleRow, ...]]:
    """(server?, build) -> the rows of that release, one per edition group."""
    index: dict[tuple[bool, int], tuple[LifecycleRow, ...]] = {}
    for row in rows:
        index[(row.server, row.build)] = (*index.get((row.server, row.build), ()), row)
    return index


ROWS: tuple[LifecycleRow, ...] = load_rows()
_BY_BUILD = _by_build(ROWS)

UNKNOWN: dict[str, Any] = {"status": "unknown", "endsOn": None, "release": None, "source": None}


def windows_build(os_version: Any) -> int | None:
    """The build of a Windows osVersion (`10.0.19045.4529` -> 19045); None for anything else."""
    if not isinstance(os_version, str):
        return None
    found = _WINDOWS_VERSION.match(os_version.strip())
    return int(found.group(1)) if found else None


def status_on(ends_on: date, today: date) -> OsStatus:
    if today > ends_on:
        return "ended"
    if (ends_on - today).days <= ENDING_SOON_DAYS:
        return "endingSoon"
    return "supported"


def matched_row(operating_system: Any, os_version: Any, *, edition: str | None = None) -> LifecycleRow | None:
    """The row a device's operatingSystem and osVersion name (the earliest end among the release's edition
    groups when the edition is not known, or names no group of the release); None when none does."""
    if not isinstance(operating_system, str) or not operating_system.strip().lower().startswith("windows"):
        return None
    build = windows_build(os_version)
    if build is None:
        return None
    rows = _BY_BUILD.get(("server" in operating_system.lower(), build), ())
    if edition:
        rows = tuple(r for r in rows if r.covers(edition)) or rows
    return min(rows, key=lambda r: r.ends_on, default=None)


def os_support(operating_system: Any, os_version: Any, *, today: date, edition: str | None = None) -> dict[str, Any]:
    """A device's `osSupport` on the day `today`: `status` (supported, endingSoon, ended, unknown),
    `endsOn` (YYYY-MM-DD), `release` ("Windows 11 23H2") and `source` (the Microsoft page of the date);
    `unknown` with nulls for a platform or build the file has no date for."""
    row = matched_row(operating_system, os_version, edition=edition)
    if row is None:
        return dict(UNKNOWN)
    return {"status": status_on(row.ends_on, today), "endsOn": row.ends_on.isoformat(), "release": row.name,
            "source": row.source}


def os_support_facts(device: dict[str, Any]) -> dict[str, int]:
    """A device's share of its tenant's `counts.facts.devices`: past, or within 180 days of, end of support."""
    status = (device.get("osSupport") or {}).get("status")
    return {"osEnded": 1 if status == "ended" else 0, "osEndingSoon": 1 if status == "endingSoon" else 0}


OS_SUPPORT_FACTS: tuple[str, ...] = ("osEnded", "osEndingSoon")
