"""The `edge` scenario: every tenant ends with the error code the simulator expects, healthy ones
succeed, and no request follows a permanent error."""

from __future__ import annotations

from typing import Any

import pytest

from shared.entities import OTHER_LISTED
from shared.errors import ErrorCode
from shared.http import CallStats
from shared.models import TenantStatus
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import TransientSyncError, sync_tenant
from tests.integration.support import all_assets
from tests.integration.support import truth as sim_truth

from .support import job, last_seq, requests_since, store_integration

pytestmark = pytest.mark.integration
SCENARIO = "edge"
# The throttled tenant answers 429 (Retry-After: 1) forever: a short budget ends it.
TEST_BUDGET_SECONDS = 6.0
PERMANENT = {"secretExpired", "invalidSecret", "appNotFoundInTenant", "consentMissing", "permissionMissing",
             "tenantNotFound", "intuneNotLicensed"}


async def _registered(runtime, scenario) -> list[tuple[Any, list[Any]]]:
    out = []
    for registration in scenario["registrations"]:
        integration = await store_integration(runtime, registration)
        discovery = await discover_customers(runtime, integration, CallStats())
        assert discovery.complete, [e.info for e in discovery.errors]
        out.append((integration, await record_tenants(runtime, integration, discovery)))
    return out


async def test_each_tenant_gets_its_expected_outcome(stack, scenario, runtime):
    expected = {t["tenantId"]: t for t in scenario["tenants"]}
    seen: set[str] = set()
    for integration, tenants in await _registered(runtime, scenario):
        for tenant in tenants:
            tid = tenant.tenant_id
            want = expected[tid]["expected"]
            seen.add(tid)
            seq = last_seq(stack)
            raised: str | None = None
            try:
                await sync_tenant(runtime, job(integration, tid), budget_seconds=TEST_BUDGET_SECONDS)
            except TransientSyncError as exc:  # the host would retry the message
                raised = exc.error.code.value
            transient = raised is not None
            assert raised in (None, want["errorCode"])
            stored = await runtime.tenants.get_tenant(integration.id, tid)
            assert stored is not None
            key = expected[tid]["key"]
            assert stored.status.value == want["status"], (key, stored.error)
            assert (stored.error.code if stored.error else None) == want["errorCode"], key
            assert transient == (want["errorCode"] in ("throttled", "unreachable")), key
            if want["errorCode"] == "throttled":
                _assert_retry_after_honoured(requests_since(stack, seq, tid), key)
            if want["errorCode"] in PERMANENT:
                _assert_nothing_after_the_refusal(requests_since(stack, seq, tid), key)
            if stored.status == TenantStatus.OK:
                assert stored.counts.devices == expected[tid]["deviceCount"], key
                assert stored.counts.defender_machines == expected[tid]["matchedDefenderDevices"], key
    assert seen == set(expected)


def _assert_retry_after_honoured(log: list[dict[str, Any]], key: str) -> None:
    """The simulator answers 429 with Retry-After: 1; the same read is not repeated sooner."""
    import itertools
    from datetime import datetime

    by_path: dict[str, list[datetime]] = {}
    for e in log:
        if e["service"] == "graph":
            by_path.setdefault(e["path"] + "?" + e["query"], []).append(
                datetime.fromisoformat(e["time"].replace("Z", "+00:00")))
    assert any(len(times) > 1 for times in by_path.values()), key
    for times in by_path.values():
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(g >= 0.95 for g in gaps), (key, gaps)


def _assert_nothing_after_the_refusal(log: list[dict[str, Any]], key: str) -> None:
    """After the first refusal (a token error or a 4xx), nothing but requests already in flight."""
    refusals = [e for e in log if 400 <= e["status"] < 500 and e["status"] != 429]
    if not refusals:
        return
    first = refusals[0]
    later = [e for e in log if e["seq"] > first["seq"] and e["time"] > first["time"]
             and e["service"] != "keyvault"]
    # Concurrent reads sent before the refusal arrived may land just after it, one per reader that starts
    # with the sync (organization, software, and each other listed entity); nothing starts later.
    assert len(later) <= 2 + len(OTHER_LISTED), (key, [(e["service"], e["path"], e["status"]) for e in later])


async def test_permission_missing_names_the_permission_and_sends_no_graph_request(stack, scenario, runtime):
    tenant = next(t for t in scenario["tenants"] if t["key"] == "permission-missing")
    integration = await store_integration(runtime, scenario["registrations"][0])
    await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
    seq = last_seq(stack)
    result = await sync_tenant(runtime, job(integration, tenant["tenantId"]))
    assert result.error is not None and result.error.code == ErrorCode.PERMISSION_MISSING
    assert "DeviceManagementManagedDevices.Read.All" in result.error.message
    graph = [e for e in requests_since(stack, seq, tenant["tenantId"]) if e["service"] == "graph"]
    assert graph == []  # the token's roles already said so


async def test_odd_vulnerabilities_and_licences_are_stored_as_defender_and_graph_list_them(stack, scenario, runtime):
    """healthy-gdap's oddities: a null and an unknown severity, a null KB, a machine no longer onboarded,
    a 300-character product name, one id on two pages; a Deleted SKU."""
    tenant = next(t for t in scenario["tenants"] if t["key"] == "healthy-gdap")
    tid = tenant["tenantId"]
    integration = await store_integration(runtime, scenario["registrations"][0])
    await record_tenants(runtime, integration, await discover_customers(runtime, integration, CallStats()))
    result = await sync_tenant(runtime, job(integration, tid))
    assert result.outcome == "ok" and result.run is not None
    truth = sim_truth(stack, tid)
    unique = {v["id"]: v for v in truth["machinesVulnerabilities"]}
    assert len(unique) < len(truth["machinesVulnerabilities"])  # the scenario repeats an id across pages
    stored = await all_assets(runtime, "vulnerabilities", integration.id, tid, top=200)
    assert set(stored) == set(unique)
    counts = result.run.entities["vulnerabilities"]
    assert counts.skipped == len(truth["machinesVulnerabilities"]) - len(unique)  # the repeat, counted
    for ident, raw in unique.items():
        assert stored[ident]["severity"] == raw.get("severity"), ident  # null and unknown kept as sent
        assert stored[ident]["productName"] == raw.get("productName"), ident
        assert stored[ident]["fixingKbId"] == raw.get("fixingKbId"), ident
    assert any(len(v["productName"] or "") >= 300 for v in stored.values())
    status = await runtime.tenants.get_tenant(integration.id, tid)
    # Severity facts count only Defender's four levels; the total counts every one.
    assert sum(status.counts.facts["vulnerabilities"].values()) == sum(
        1 for v in unique.values() if v.get("severity") in ("Critical", "High", "Medium", "Low"))
    skus = {s["id"]: s for s in truth["subscribedSkus"]}
    licences = await all_assets(runtime, "licences", integration.id, tid)
    assert set(licences) == set(skus)
    assert "Deleted" in {licences[i]["capabilityStatus"] for i in skus}
    for ident, raw in skus.items():
        assert licences[ident]["capabilityStatus"] == raw["capabilityStatus"], ident
        assert licences[ident]["consumedUnits"] == raw["consumedUnits"], ident
        assert licences[ident]["prepaidUnits"] == {k: raw["prepaidUnits"].get(k) or 0
                                                   for k in ("enabled", "suspended", "warning", "lockedOut")}, ident
