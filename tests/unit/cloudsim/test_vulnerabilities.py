"""Defender vulnerabilities by machine and software: the generated data and its joins to the tenant's
machines, and ``/api/vulnerabilities/machinesVulnerabilities`` driven through the simulator's own
dispatcher (aiohttp's mocked requests, no socket), with tokens carrying exactly the roles the scenario
consented, and its two rate limits on a clock the test moves."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from devstack.cloudsim.generate import VULNERABILITY_SEVERITIES
from devstack.cloudsim.model import DEFENDER, TenantState
from devstack.cloudsim.scenario import Simulation, build_simulation, load_spec
from tests.unit.faketime import FakeTime

from .test_autopilot import Answer, Graph

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOST = "127.0.0.1:8443"
VULNS = "/defender/api/vulnerabilities/machinesVulnerabilities"
MACHINES = "/defender/api/machines"
CONTEXT = (
    f"https://{HOST}/defender/api/$metadata"
    "#Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)"
)
# PublicAssetVulnerabilityDto, in the order the documented example lists its properties
# (https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines).
PROPERTIES = ["id", "cveId", "machineId", "fixingKbId", "productName", "productVendor", "productVersion", "severity"]
CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
NAME = re.compile(r"^[a-z0-9_.+()-]+$")  # Defender's lower-case, underscore-joined vendor and product names


# ------------------------------------------------------------------ generated data


def _tenants(sim: Simulation) -> Iterator[TenantState]:
    return (sim.tenants[tid] for tid in sim.reported_tenants)


def _expected_id(record: dict[str, Any]) -> str:
    parts = ("machineId", "cveId", "productVendor", "productName", "productVersion")
    return "-_-".join([*(record[p] for p in parts), record["fixingKbId"] or ""])


def _assert_well_formed(tenant: TenantState, *, odd: bool = False) -> None:
    records = tenant.vulnerabilities.values()
    machines = set(tenant.machines.ids())
    for record in records:
        assert list(record) == PROPERTIES
        assert record["id"] == _expected_id(record)
        assert CVE.match(record["cveId"])
        assert NAME.match(record["productVendor"]) and NAME.match(record["productName"])
        assert record["fixingKbId"] is None or record["fixingKbId"].isdigit()
        if record["fixingKbId"]:
            assert record["productVendor"] == "microsoft" and record["productName"].startswith("windows_")
        if not odd:
            assert record["machineId"] in machines
            assert record["severity"] in VULNERABILITY_SEVERITIES
            assert len(record["productName"]) < 64
    if not odd:
        assert len({r["id"] for r in records}) == len(records)
    # Listed machine by machine, in the order Defender lists the machines.
    order = {m: i for i, m in enumerate(tenant.machines.ids())}
    positions = [order[r["machineId"]] for r in records if r["machineId"] in order]
    if not odd:
        assert positions == sorted(positions)


def test_demo_tenants_with_defender_have_a_few_dozen_realistic_vulnerabilities() -> None:
    sim = build_simulation(load_spec("demo"), now=NOW)
    counts = {}
    for tenant in _tenants(sim):
        if not tenant.defender_licensed:
            assert len(tenant.vulnerabilities) == 0
            continue
        _assert_well_formed(tenant)
        counts[tenant.key] = len(tenant.vulnerabilities)
    assert set(counts) == {"contoso", "northwind", "woodgrove"}
    assert all(12 <= n <= 100 for n in counts.values()), counts
    records = [r for t in _tenants(sim) for r in t.vulnerabilities.values()]
    assert {r["severity"] for r in records} == set(VULNERABILITY_SEVERITIES)
    products = {(r["productVendor"], r["productName"]) for r in records}
    assert {("microsoft", "edge_chromium-based"), ("google", "chrome"), ("microsoft", "windows_11")} <= products
    with_kb = [r for r in records if r["fixingKbId"]]
    assert with_kb and len(with_kb) < len(records)
    assert any(r["id"].endswith("-_-") for r in records)  # no fixing KB: the id's last part is empty


def test_edge_has_odd_but_legal_records() -> None:
    sim = build_simulation(load_spec("edge"), now=NOW)
    tenant = next(t for t in _tenants(sim) if t.key == "healthy-gdap")
    _assert_well_formed(tenant, odd=True)
    records = tenant.vulnerabilities.values()
    severities = [r["severity"] for r in records]
    assert None in severities and set(severities) - {None} - set(VULNERABILITY_SEVERITIES) == {"Informational"}
    ids = Counter(r["id"] for r in records)
    assert [n for n in ids.values() if n > 1] == [2]
    assert records[0] == records[-1]  # the first record again, at the very end: another page
    gone = [r for r in records if r["machineId"] not in set(tenant.machines.ids())]
    assert len(gone) == 1 and len(gone[0]["machineId"]) == 40
    assert max(len(r["productName"]) for r in records) >= 300
    windows_without_kb = [r for r in records if r["productName"].startswith("windows_") and r["fixingKbId"] is None]
    assert windows_without_kb and windows_without_kb[0]["id"].endswith("-_-")
    for other in _tenants(sim):
        if other.key != "healthy-gdap" and other.defender_licensed:
            _assert_well_formed(other)


def test_large_has_several_pages_of_vulnerabilities() -> None:
    sim = build_simulation(load_spec("large"), now=NOW)
    tenant = next(t for t in _tenants(sim) if t.key == "relecloud")
    assert len(tenant.vulnerabilities) > 20_000
    _assert_well_formed(tenant)


def _dump(spec: dict[str, Any]) -> str:
    sim = build_simulation(spec, now=NOW)
    return json.dumps({t.key: t.vulnerabilities.values() for t in sim.tenants.values()}, sort_keys=True)


def test_generation_is_deterministic_lazy_and_leaves_the_other_data_as_it_was() -> None:
    assert _dump(load_spec("demo")) == _dump(load_spec("demo"))
    assert _dump(load_spec("edge")) == _dump(load_spec("edge"))
    # Made on first use from the machines as generated: changing a machine first changes nothing.
    first = build_simulation(load_spec("demo"), now=NOW)
    second = build_simulation(load_spec("demo"), now=NOW)
    contoso = next(t for t in _tenants(second) if t.key == "contoso")
    machine = contoso.machines.ids()[0]
    contoso.machines.update(machine, {"osPlatform": "Linux"})
    assert [t.vulnerabilities.values() for t in _tenants(first)] == [
        t.vulnerabilities.values() for t in _tenants(second)
    ]
    without = load_spec("demo")
    for tenant_spec in without["tenants"]:
        tenant_spec["vulnerableMachines"] = 0
    plain = build_simulation(without, now=NOW)
    full = build_simulation(load_spec("demo"), now=NOW)
    for tid, tenant in full.tenants.items():
        other = plain.tenants[tid]
        assert len(other.vulnerabilities) == 0
        assert tenant.machines.values() == other.machines.values()
        assert tenant.devices.values() == other.devices.values()
        assert tenant.subscribed_skus.values() == other.subscribed_skus.values()


def test_demo_has_a_tenant_that_reads_machines_but_not_vulnerabilities() -> None:
    sim = build_simulation(load_spec("demo"), now=NOW)
    sync_app = sim.app_keys["sync-app"]
    grants = {
        t.key: t.granted_roles(sync_app, DEFENDER) or set() for t in _tenants(sim) if sync_app in t.consents
    }
    assert {k for k, roles in grants.items() if "Vulnerability.Read.All" not in roles} == {"northwind", "tailspin"}
    assert all("Machine.Read.All" in roles for roles in grants.values())
    northwind = next(t for t in _tenants(sim) if t.key == "northwind")
    assert northwind.defender_licensed and len(northwind.vulnerabilities) > 0  # the data is there
    # Optional: the sync succeeds, with a note that the permission is missing.
    assert northwind.expected == {"status": "ok", "errorCode": "permissionMissing"}


# ------------------------------------------------------------------ the Defender route


class Defender(Graph):
    """The scenario behind the dispatcher; Defender tokens carry the roles the tenant consented to the sync app."""

    async def get(self, path: str, *, tenant: str = "contoso", roles: list[str] | None = None) -> Answer:
        state = self.tenant(tenant)
        if roles is None:
            roles = sorted(state.granted_roles(self.sync_app, DEFENDER) or ())
        token = self.server.tokens.issue(
            tenant_id=state.tenant_id, app_id=self.sync_app, audience=DEFENDER, roles=roles, lifetime_s=3600
        )
        return await self.call("GET", path, headers={"Authorization": f"Bearer {token}"})


def _relative(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def test_pages_by_top_and_skip_with_next_links_in_listing_order() -> None:
    defender = Defender()
    defender.server.limiter.enabled = False
    truth = defender.tenant("contoso").vulnerabilities.values()
    first = await defender.get(f"{VULNS}?$top=10")
    assert first.status == 200
    body = first.json()
    assert list(body) == ["@odata.context", "@odata.nextLink", "value"]
    assert body["@odata.context"] == CONTEXT
    assert parse_qs(urlsplit(body["@odata.nextLink"]).query) == {"$top": ["10"], "$skip": ["10"]}
    assert body["value"] == truth[:10]
    items, url, pages = [], f"{VULNS}?$top=10", 0
    while url:
        page = (await defender.get(url)).json()
        items += page["value"]
        pages += 1
        url = _relative(page["@odata.nextLink"]) if "@odata.nextLink" in page else ""
    assert items == truth and pages == -(-len(truth) // 10)
    whole = (await defender.get(VULNS)).json()
    assert "@odata.nextLink" not in whole and whole["value"] == truth
    skipped = (await defender.get(f"{VULNS}?$skip=5&$top=3")).json()
    assert skipped["value"] == truth[5:8] and "$skip=8" in skipped["@odata.nextLink"]


async def test_top_is_capped_at_10000_as_for_machines_and_bad_values_are_400() -> None:
    spec = load_spec("demo")
    contoso = next(t for t in spec["tenants"] if t["key"] == "contoso")
    contoso.update(devices=4_000, apps=20, defenderCoverage=1.0, vulnerableMachines=1.0)
    defender = Defender(spec)
    defender.server.limiter.enabled = False
    count = len(defender.tenant("contoso").vulnerabilities)
    assert count > 10_000
    page = (await defender.get(f"{VULNS}?$top=20000")).json()
    assert len(page["value"]) == 10_000
    assert parse_qs(urlsplit(page["@odata.nextLink"]).query) == {"$top": ["10000"], "$skip": ["10000"]}
    machines = (await defender.get(f"{MACHINES}?$top=20000")).json()  # the machines list caps it alike
    assert len(machines["value"]) == min(10_000, len(defender.tenant("contoso").machines))
    for bad in ("$top=0", "$top=x", "$skip=-1", "$skip=y"):
        refused = await defender.get(f"{VULNS}?{bad}")
        assert refused.status == 400 and refused.json()["error"]["code"] == "InvalidRequest"


async def test_filter_eq_on_documented_properties_and_400_otherwise() -> None:
    defender = Defender()
    truth = defender.tenant("contoso").vulnerabilities.values()
    machine = truth[0]["machineId"]
    found = (await defender.get(f"{VULNS}?$filter=machineId eq '{machine}'")).json()["value"]
    assert found == [r for r in truth if r["machineId"] == machine]
    high = (await defender.get(f"{VULNS}?$filter=severity eq 'High' and productVendor eq 'google'")).json()["value"]
    assert high == [r for r in truth if r["severity"] == "High" and r["productVendor"] == "google"]
    kb = next(r["fixingKbId"] for r in truth if r["fixingKbId"])
    by_kb = (await defender.get(f"{VULNS}?$filter=fixingKbId eq '{kb}'")).json()["value"]
    assert by_kb and all(r["fixingKbId"] == kb for r in by_kb)
    by_id = (await defender.get(f"{VULNS}?$filter={quote('id eq ' + repr(truth[3]['id']))}")).json()["value"]
    assert by_id == [truth[3]]
    paged = (await defender.get(f"{VULNS}?$filter=severity eq 'High'&$top=2")).json()
    assert parse_qs(urlsplit(paged["@odata.nextLink"]).query)["$filter"] == ["severity eq 'High'"]
    for bad in ("severity gt 'High'", "lastSeen eq 'x'", "machineId eq", "contains(cveId,'CVE')"):
        refused = await defender.get(f"{VULNS}?$filter={quote(bad)}")
        assert refused.status == 400, bad
        assert refused.json()["error"]["code"] == "InvalidRequest"


async def test_permission_is_vulnerability_read_all_and_a_tenant_without_defender_is_a_404() -> None:
    defender = Defender()
    # northwind's sync app has Machine.Read.All but not Vulnerability.Read.All.
    assert (await defender.get(MACHINES, tenant="northwind")).status == 200
    forbidden = await defender.get(VULNS, tenant="northwind")
    assert forbidden.status == 403
    error = forbidden.json()["error"]
    assert error["code"] == "Forbidden" and "Vulnerability.Read.All" in error["message"]
    assert (await defender.get(VULNS, roles=["Machine.Read.All"])).status == 403
    assert (await defender.get(VULNS, roles=["Vulnerability.Read.All"])).status == 200
    # A Graph token is not a Defender token.
    graph = await Graph.get(defender, VULNS)
    assert graph.status == 401
    # tailspin has no Defender: the same 404 /api/machines answers there, once the permission is there.
    assert (await defender.get(VULNS, tenant="tailspin")).status == 403  # it lacks the permission too
    for path in (MACHINES, VULNS):
        missing = await defender.get(path, tenant="tailspin", roles=["Machine.Read.All", "Vulnerability.Read.All"])
        assert missing.status == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    defender.tenant("contoso").defender_licensed = False
    assert (await defender.get(VULNS)).status == 404


async def test_fifty_calls_a_minute_and_1500_an_hour_per_tenant_and_app() -> None:
    defender = Defender()
    clock = FakeTime(1_000.0)
    defender.server.limiter.clock = clock.clock
    path = f"{VULNS}?$top=1"
    # 50 a minute: the 51st within the minute is a 429 whose Retry-After runs to the end of the window.
    assert [(await defender.get(path)).status for _ in range(50)] == [200] * 50
    clock.now += 20
    throttled = await defender.get(path)
    assert throttled.status == 429 and throttled.headers["Retry-After"] == "40"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert "50 per 1 Minutes" in throttled.json()["error"]["message"]
    # Other tenants, other apps and /api/machines count apart.
    assert (await defender.get(path, tenant="woodgrove", roles=["Vulnerability.Read.All"])).status == 200
    assert (await defender.get(f"{MACHINES}?$top=1")).status == 200
    clock.now += 40
    assert (await defender.get(path)).status == 200
    # 1500 an hour: 29 more minutes of 50 calls fill the hour.
    used = 51
    while used < 1_500:
        clock.now += 60
        for _ in range(min(50, 1_500 - used)):
            assert (await defender.get(path)).status == 200
            used += 1
    clock.now += 60  # a new minute, the hour still full
    refused = await defender.get(path)
    assert refused.status == 429 and "1500 per 60 Minutes" in refused.json()["error"]["message"]
    wait = int(refused.headers["Retry-After"])
    assert wait == 1_000 + 3_600 - clock.now  # until the first call of the hour leaves the window
    clock.now += wait
    assert (await defender.get(path)).status == 200


async def test_ground_truth_summary_and_control_api() -> None:
    defender = Defender()
    tenant = defender.tenant("contoso")
    truth = (await defender.call("GET", f"/_sim/tenants/{tenant.tenant_id}/truth")).json()
    assert truth["machinesVulnerabilities"] == tenant.vulnerabilities.values()
    assert truth["tenant"]["vulnerabilityCount"] == len(tenant.vulnerabilities) > 0
    scenario = (await defender.call("GET", "/_sim/scenario")).json()
    counts = {t["key"]: t["vulnerabilityCount"] for t in scenario["tenants"]}
    assert counts["tailspin"] == 0 and counts["northwind"] > 0 and counts["woodgrove"] > 0
    collection = f"/_sim/tenants/{tenant.tenant_id}/machinesVulnerabilities"
    assert (await defender.call("GET", collection)).json()["value"] == truth["machinesVulnerabilities"]
    before = len(tenant.vulnerabilities)
    windows = next(m for m in tenant.machines.values() if m["osPlatform"] == "Windows11")
    mac = next(m for m in tenant.machines.values() if m["osPlatform"] == "macOS")
    firefox = {"machineId": mac["id"], "cveId": "CVE-2024-9680", "productVendor": "mozilla", "productName": "firefox",
               "productVersion": "131.0", "severity": "Critical"}
    made = await defender.call(
        "POST", collection, body={"forMachines": [windows["id"]], "vulnerabilities": [firefox]}
    )
    assert made.status == 201
    ids = made.json()["ids"]
    assert len(tenant.vulnerabilities) == before + len(ids) and len(ids) >= 2
    added = tenant.vulnerabilities.values()[before:]
    assert all(r["id"] == _expected_id(r) for r in added)
    assert {r["machineId"] for r in added[:-1]} == {windows["id"]}
    assert added[-1] == {**firefox, "id": _expected_id({**firefox, "fixingKbId": None}), "fixingKbId": None}
    listed = (await defender.get(f"{VULNS}?$filter=machineId eq '{windows['id']}'")).json()["value"]
    assert added[:-1] == [r for r in listed if r in added]
    gone = await defender.call("DELETE", f"{collection}/{quote(ids[-1], safe='')}")
    assert gone.status == 204 and len(tenant.vulnerabilities) == before + len(ids) - 1
    assert (await defender.call("GET", f"{collection}/nope")).status == 404
    assert (await defender.call("POST", "/_sim/reset")).status == 200
    assert len(defender.tenant("contoso").vulnerabilities) == before
