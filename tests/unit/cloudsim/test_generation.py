"""Deterministic and realistic scenario data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from devstack.cloudsim.faults import FaultEngine, Limit, RateLimiter
from devstack.cloudsim.generate import PLACEHOLDER_SERIALS
from devstack.cloudsim.model import EntityStore
from devstack.cloudsim.odata import ODataError, parse_filter, predicate_for
from devstack.cloudsim.scenario import build_simulation, load_spec
from devstack.cloudsim.tokens import TokenIssuer, TokenRejected
from tests.fixtures import MS_SAMPLES as SAMPLES

pytestmark = pytest.mark.unit
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _dump(spec_name: str) -> str:
    sim = build_simulation(load_spec(spec_name), now=NOW)
    data = {
        tid: [t.devices.values(), t.detected_apps.values(), t.app_devices, t.machines.values()]
        for tid, t in sim.tenants.items()
    }
    apps = {a.app_id: [(s.key_id, s.value) for s in a.secrets] for a in sim.apps.values()}
    return json.dumps([data, apps, sim.registrations], sort_keys=True)


def test_generation_is_deterministic() -> None:
    assert _dump("demo") == _dump("demo")
    assert _dump("edge") == _dump("edge")


def test_demo_matches_its_story() -> None:
    sim = build_simulation(load_spec("demo"), now=NOW)
    tenants = [sim.tenants[t] for t in sim.reported_tenants]
    assert len(tenants) == 4
    assert all(20 <= len(t.devices) <= 60 and 10 <= len(t.detected_apps) <= 40 for t in tenants)
    broken = [t for t in tenants if t.expected["status"] == "error"]
    assert [t.expected["errorCode"] for t in broken] == ["appNotFoundInTenant"]
    sync = sim.apps[sim.registrations[0]["syncAppId"]]
    partner = sim.apps[sim.registrations[0]["partnerAppId"]]
    assert 9 <= (sync.secrets[0].end - NOW).days <= 10
    assert 149 <= (partner.secrets[0].end - NOW).days <= 150


def test_devices_are_realistic() -> None:
    sim = build_simulation(
        {
            "name": "t",
            "seed": 9,
            "partner": {"key": "p", "displayName": "P", "defaultDomainName": "p.onmicrosoft.com"},
            "apps": [{"key": "sync-app", "home": "p", "secrets": [{"expiresInDays": 10}]}],
            "tenants": [
                {
                    "key": "big",
                    "relationship": "gdap",
                    "devices": 2000,
                    "apps": 150,
                    "defenderLicensed": True,
                    "defenderCoverage": 0.8,
                    "defenderOnly": 5,
                    "consents": {"sync-app": "full"},
                }
            ],
        },
        now=NOW,
    )
    tenant = next(t for t in sim.tenants.values() if t.key == "big")
    devices = tenant.devices.values()
    sample_keys = set(json.loads((SAMPLES / "graph-v1-manageddevice-list-response.json").read_text())["value"][0])
    assert all(sample_keys <= d.keys() for d in devices)
    systems = {d["operatingSystem"] for d in devices}
    assert {"Windows", "macOS", "iOS", "Android"} <= systems
    assert {d["manufacturer"] for d in devices} >= {"Dell Inc.", "HP", "LENOVO", "Apple", "samsung"}
    assert any(d["serialNumber"] in PLACEHOLDER_SERIALS for d in devices)
    serials = [d["serialNumber"] for d in devices if d["serialNumber"] not in PLACEHOLDER_SERIALS]
    assert len(serials) != len(set(serials))  # a duplicated serial
    assert any(not d["deviceName"].isascii() for d in devices)
    assert {d["complianceState"] for d in devices} <= {
        "unknown",
        "compliant",
        "noncompliant",
        "conflict",
        "error",
        "inGracePeriod",
        "configManager",
    }
    listed = json.loads(tenant.devices.list_json(devices[0]["id"]))
    assert listed["physicalMemoryInBytes"] == 0 and listed["ethernetMacAddress"] is None
    assert devices[0]["physicalMemoryInBytes"] > 0
    for app in tenant.detected_apps.values():
        assert app["deviceCount"] == len(tenant.app_devices[app["id"]]) >= 1
        assert len(app["id"]) == 44
    device_ids = set(tenant.devices.ids())
    aad = {d["azureADDeviceId"] for d in devices}
    machines = tenant.machines.values()
    assert any(m["aadDeviceId"] is None or m["aadDeviceId"] not in aad for m in machines)  # Defender-only
    assert len({m["aadDeviceId"] for m in machines if m["aadDeviceId"]} & aad) < len(device_ids)  # Intune-only too


def test_large_has_the_promised_size() -> None:
    # Generation time is printed by bench/bench_cloudsim.py (no timed assertions in tests).
    sim = build_simulation(load_spec("large"), now=NOW)
    tenant = next(t for t in sim.tenants.values() if t.key == "relecloud")
    assert len(tenant.devices) == 50_000 and len(tenant.detected_apps) == 3_000
    assert 0.85 < len(tenant.machines) / 50_000 < 0.95


def test_store_paging_is_stable_under_removal() -> None:
    store = EntityStore()
    store.add_many({"id": str(i), "n": i} for i in range(10))
    ids, last, more = store.page(after_seq=0, top=4)
    assert ids == ["0", "1", "2", "3"] and more
    store.remove("4")
    ids, last, more = store.page(after_seq=last, top=4)
    assert ids == ["5", "6", "7", "8"] and more
    ids, _, more = store.page(after_seq=last, top=4)
    assert ids == ["9"] and not more


def test_filter_parsing() -> None:
    store = EntityStore(datetime_fields=("lastSyncDateTime",))
    store.add({"id": "a", "lastSyncDateTime": "2025-01-01T00:00:00Z", "operatingSystem": "Windows"})
    store.add({"id": "b", "lastSyncDateTime": "2025-02-01T00:00:00Z", "operatingSystem": "iOS"})
    clauses = parse_filter(
        "lastSyncDateTime gt 2025-01-15T00:00:00Z and operatingSystem eq 'iOS'",
        datetime_fields={"lastSyncDateTime"},
        string_fields={"operatingSystem"},
    )
    predicate = predicate_for(store, clauses)
    assert predicate is not None and store.filtered(predicate) == ["b"]
    for bad in (
        "lastSyncDateTime gt",
        "lastSyncDateTime gt notadate",
        "nope eq 'x'",
        "lastSyncDateTime lt 2025-01-01T00:00:00Z or x eq 'y'",
    ):
        with pytest.raises(ODataError):
            parse_filter(bad, datetime_fields={"lastSyncDateTime"}, string_fields={"operatingSystem"})


def test_tokens_validate_signature_expiry_and_audience() -> None:
    issuer = TokenIssuer()
    token = issuer.issue(tenant_id="t", app_id="a", audience="https://graph.microsoft.com", roles=["R"], lifetime_s=60)
    principal = issuer.validate(f"Bearer {token}", frozenset({"https://graph.microsoft.com"}))
    assert principal.roles == frozenset({"R"}) and principal.tenant_id == "t"
    with pytest.raises(TokenRejected, match="audience"):
        issuer.validate(f"Bearer {token}", frozenset({"https://vault.azure.net"}))
    expired = issuer.issue(tenant_id="t", app_id="a", audience="https://graph.microsoft.com", roles=[], lifetime_s=-10)
    with pytest.raises(TokenRejected, match="expired"):
        issuer.validate(f"Bearer {expired}", frozenset({"https://graph.microsoft.com"}))
    with pytest.raises(TokenRejected):
        TokenIssuer().validate(f"Bearer {token}", frozenset({"https://graph.microsoft.com"}))


def test_fault_rules_count_and_after_requests() -> None:
    engine = FaultEngine(1)
    engine.add([{"service": "graph", "kind": "status", "status": 503, "afterRequests": 2, "count": 1}])
    fired = [engine.match("graph", None, "/x") is not None for _ in range(5)]
    assert fired == [False, False, True, False, False]
    with pytest.raises(ValueError):
        engine.add([{"kind": "explode"}])


def test_rate_limiter_window() -> None:
    limiter = RateLimiter(enabled=True)
    limit = Limit("t", 3, 60)
    assert [limiter.check(limit, "a", "t") for _ in range(3)] == [None, None, None]
    assert limiter.check(limit, "a", "t") is not None
    assert limiter.check(limit, "b", "t") is None
