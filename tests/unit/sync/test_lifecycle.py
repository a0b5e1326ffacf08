"""Matching a device's operatingSystem and osVersion (as Intune reports them) to its release's end of support."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shared.entities import DEVICES
from shared.mapping.devices import map_device
from shared.mapping.lifecycle import ENDING_SOON_DAYS, os_support, os_support_facts, windows_build

pytestmark = pytest.mark.unit
HOME_PRO_11 = "https://learn.microsoft.com/lifecycle/products/windows-11-home-and-pro"
ENTERPRISE_11 = "https://learn.microsoft.com/lifecycle/products/windows-11-enterprise-and-education"
UNKNOWN = {"status": "unknown", "endsOn": None, "release": None, "source": None}


def _around(ends_on: date) -> list[tuple[date, str]]:
    """Days before, within 180 days of, on and after an end date, with the status each should give."""
    return [
        (ends_on - timedelta(days=400), "supported"),
        (ends_on - timedelta(days=ENDING_SOON_DAYS + 1), "supported"),
        (ends_on - timedelta(days=ENDING_SOON_DAYS), "endingSoon"),
        (ends_on - timedelta(days=30), "endingSoon"),
        (ends_on, "endingSoon"),  # the last day Microsoft services the release
        (ends_on + timedelta(days=1), "ended"),
        (ends_on + timedelta(days=700), "ended"),
    ]


@pytest.mark.parametrize(
    ("operating_system", "os_version", "release", "ends_on", "source"),
    [
        ("Windows", "10.0.19045.4529", "Windows 10 22H2", date(2025, 10, 14),
         "https://learn.microsoft.com/lifecycle/products/windows-10-home-and-pro"),
        ("Windows", "10.0.22631.3880", "Windows 11 23H2", date(2025, 11, 11), HOME_PRO_11),
        ("Windows", "10.0.26100.1742", "Windows 11 24H2", date(2026, 10, 13), HOME_PRO_11),
        # Build 26100 is Windows Server 2025 too: operatingSystem tells them apart.
        ("Windows Server", "10.0.26100.1742", "Windows Server 2025", date(2034, 11, 14),
         "https://learn.microsoft.com/lifecycle/products/windows-server-2025"),
        ("Windows Server 2019 Datacenter", "10.0.17763.5936", "Windows Server 2019", date(2029, 1, 9),
         "https://learn.microsoft.com/lifecycle/products/windows-server-2019"),
        ("windows", " 10.0.20348.2582 ", None, None, None),  # a server build, reported as a client: no row
        ("Windows Server", "10.0.20348.2582", "Windows Server 2022", date(2031, 10, 14),
         "https://learn.microsoft.com/lifecycle/products/windows-server-2022"),
    ],
)
def test_real_os_versions_around_their_end_of_support(operating_system, os_version, release, ends_on, source):
    if release is None:
        assert os_support(operating_system, os_version, today=date(2026, 1, 1)) == UNKNOWN
        return
    for today, status in _around(ends_on):
        assert os_support(operating_system, os_version, today=today) == {
            "status": status, "endsOn": ends_on.isoformat(), "release": release, "source": source}, today


def test_without_an_edition_the_earliest_end_of_the_release_is_used():
    # Windows 11 23H2: Home/Pro ended 2025-11-11, Enterprise/Education a year later.
    today = date(2026, 6, 1)
    assert os_support("Windows", "10.0.22631.3880", today=today)["status"] == "ended"
    enterprise = os_support("Windows", "10.0.22631.3880", today=today, edition="Enterprise")
    assert enterprise == {"status": "endingSoon", "endsOn": "2026-11-10", "release": "Windows 11 23H2",
                          "source": ENTERPRISE_11}
    assert os_support("Windows", "10.0.22631.3880", today=today, edition="Enterprise/Education") == enterprise
    assert os_support("Windows", "10.0.22631.3880", today=today, edition="Pro")["endsOn"] == "2025-11-11"
    # An edition no group names falls back to the earliest date, as no edition does.
    assert os_support("Windows", "10.0.22631.3880", today=today, edition="Team")["endsOn"] == "2025-11-11"
    # A server release has one date for every edition.
    assert os_support("Windows Server", "10.0.26100.1", today=today, edition="Datacenter")["endsOn"] == "2034-11-14"


@pytest.mark.parametrize(
    ("operating_system", "os_version"),
    [
        ("iOS", "17.5.1"),
        ("iPadOS", "18.1"),
        ("macOS", "14.6.1"),
        ("Android", "14 (build UP1A.231005.007)"),
        ("Android", "14"),
        ("AndroidForWork", "13"),
        ("Windows", "garbage"),
        ("Windows", "10.0"),
        ("Windows", "10.0.99999.1"),  # a build the file does not list
        ("Windows", "10.0.17763.5936"),  # Windows 10 1809 / LTSC 2019: not listed for clients
        ("Windows", "6.3.9600.20778"),  # Windows 8.1
        ("Windows", ""),
        ("Windows", None),
        (None, "10.0.19045.4529"),
        (None, None),
        ("Linux", "10.0.19045.4529"),
        (42, 10.0),
    ],
)
def test_other_platforms_and_unreadable_versions_are_unknown(operating_system, os_version):
    assert os_support(operating_system, os_version, today=date(2026, 1, 1)) == UNKNOWN


def test_windows_build():
    assert windows_build("10.0.19045.4529") == 19045
    assert windows_build("10.0.26100") == 26100
    assert windows_build("10.0.26100.1742.5") is None
    assert windows_build("17.5.1") is None
    assert windows_build(None) is None


def test_each_call_gives_a_fresh_answer():
    first = os_support("iOS", "17.5.1", today=date(2026, 1, 1))
    first["status"] = "ended"
    assert os_support("iOS", "17.5.1", today=date(2026, 1, 1))["status"] == "unknown"


def test_map_device_gives_the_verdict_on_the_day_it_is_given():
    raw = {"id": "d1", "operatingSystem": "Windows", "osVersion": "10.0.26200.6899"}
    before = map_device(raw, tenant_id="t", today=date(2027, 4, 1))
    assert before["osSupport"] == {"status": "supported", "endsOn": "2027-10-12", "release": "Windows 11 25H2",
                                   "source": HOME_PRO_11}
    assert map_device(raw, tenant_id="t", today=date(2027, 4, 15))["osSupport"]["status"] == "endingSoon"
    assert map_device(raw, tenant_id="t", today=date(2027, 10, 13))["osSupport"]["status"] == "ended"
    assert map_device(raw, tenant_id="t")["osSupport"] is None  # no day, no verdict
    phone = map_device({"id": "d2", "operatingSystem": "iOS", "osVersion": "17.5.1"}, tenant_id="t",
                       today=date(2027, 4, 1))
    assert phone["osSupport"] == UNKNOWN


def test_devices_count_their_tenants_ended_and_ending_soon_devices():
    assert DEVICES.fact_keys == ("osEnded", "osEndingSoon")
    assert DEVICES.nested["osSupport"] == ("status", "endsOn", "release", "source")
    assert DEVICES.facts is os_support_facts
    assert os_support_facts({"osSupport": {"status": "ended"}}) == {"osEnded": 1, "osEndingSoon": 0}
    assert os_support_facts({"osSupport": {"status": "endingSoon"}}) == {"osEnded": 0, "osEndingSoon": 1}
    for other in ({"osSupport": {"status": "supported"}}, {"osSupport": {"status": "unknown"}}, {"osSupport": None},
                  {}):
        assert os_support_facts(other) == {"osEnded": 0, "osEndingSoon": 0}
