"""The OS lifecycle file (shared/mapping/os_lifecycle.json): it parses, and every row cites a Microsoft page
and gives a date Microsoft could have published."""

from __future__ import annotations

import json
from datetime import date
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared.mapping.lifecycle import DATA_FILE, PRODUCTS, ROWS, load_rows

pytestmark = pytest.mark.unit
EDITION_GROUPS = {"Windows 10": {"Home/Pro", "Enterprise/Education"},
                  "Windows 11": {"Home/Pro", "Enterprise/Education"}, "Windows Server": {"all"}}
RAW = json.loads(DATA_FILE.read_text(encoding="utf-8"))["rows"]


def test_the_file_parses_and_every_row_is_loaded():
    assert len(ROWS) == len(RAW) >= 20
    assert load_rows() == ROWS
    for item in RAW:
        assert set(item) == {"product", "release", "build", "editions", "endsOn", "source"}, item


@pytest.mark.parametrize("item", RAW, ids=lambda r: f"{r['product']} {r['release']} {r['editions']}")
def test_every_row_cites_a_microsoft_page_and_a_valid_date(item):
    source = urlsplit(item["source"])
    assert source.scheme == "https"
    assert source.hostname in {"learn.microsoft.com", "www.microsoft.com", "support.microsoft.com"}, item
    assert source.path.startswith("/lifecycle/products/"), item
    ends_on = date.fromisoformat(item["endsOn"])
    assert len(item["endsOn"]) == 10  # YYYY-MM-DD, nothing more
    # Microsoft ends servicing on a Patch Tuesday, the second Tuesday of the month: a date off by a day
    # (a page's end-of-day instant read in UTC) fails here.
    assert ends_on.weekday() == 1 and 8 <= ends_on.day <= 14, item
    assert date(2019, 1, 1) <= ends_on <= date(2040, 1, 1)
    assert item["product"] in PRODUCTS
    assert item["editions"] in EDITION_GROUPS[item["product"]]
    assert isinstance(item["build"], int) and 10240 <= item["build"] < 100_000


def test_each_windows_client_release_has_both_edition_groups_on_their_own_pages():
    releases: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
    for item in RAW:
        releases.setdefault((item["product"], item["release"]), {})[item["editions"]] = item
    for (product, release), groups in releases.items():
        assert set(groups) == EDITION_GROUPS[product], (product, release)
        assert len({g["build"] for g in groups.values()}) == 1, (product, release)
        if product == "Windows Server":
            assert groups["all"]["source"].endswith(f"/windows-server-{release}")
            continue
        slug = product.lower().replace(" ", "-")
        assert groups["Home/Pro"]["source"].endswith(f"/{slug}-home-and-pro")
        assert groups["Enterprise/Education"]["source"].endswith(f"/{slug}-enterprise-and-education")
        # Enterprise and Education are never serviced for less time than Home and Pro.
        assert groups["Enterprise/Education"]["endsOn"] >= groups["Home/Pro"]["endsOn"], (product, release)


def test_the_builds_the_design_names():
    builds = {(r.product, r.release): r.build for r in ROWS}
    assert builds[("Windows 10", "22H2")] == 19045
    assert builds[("Windows 11", "23H2")] == 22631
    assert builds[("Windows 11", "24H2")] == builds[("Windows Server", "2025")] == 26100
    assert builds[("Windows Server", "2016")] == 14393
    assert builds[("Windows Server", "2019")] == 17763
    assert builds[("Windows Server", "2022")] == 20348


def test_windows_10_22h2_ended_on_one_day_for_every_edition():
    assert {r.ends_on for r in ROWS if r.name == "Windows 10 22H2"} == {date(2025, 10, 14)}


def test_a_build_claimed_by_two_releases_or_a_repeated_row_fails_at_load(tmp_path):
    row = {"product": "Windows 11", "release": "23H2", "build": 22631, "editions": "Home/Pro",
           "endsOn": "2025-11-11", "source": "https://learn.microsoft.com/lifecycle/products/windows-11-home-and-pro"}
    for rows, message in (([row, {**row, "release": "99H9"}], "build 22631"), ([row, row], "listed twice"),
                          ([{**row, "product": "Windows 12"}], "unknown product")):
        path = tmp_path / "rows.json"
        path.write_text(json.dumps({"rows": rows}), encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            load_rows(path)


def test_the_deployment_package_keeps_the_file():
    """`.funcignore` (gitignore patterns, docs/deploy.md) must not leave the data file out of the package."""
    root = Path(__file__).resolve().parents[3]
    relative = DATA_FILE.relative_to(root)
    patterns = [line.strip() for line in (root / ".funcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = relative.parts
    candidates = {"/".join(parts[:n]) for n in range(1, len(parts) + 1)} | set(parts)
    for pattern in patterns:
        bare = pattern.rstrip("/").lstrip("/")
        assert not any(fnmatch(candidate, bare) for candidate in candidates), (pattern, str(relative))
