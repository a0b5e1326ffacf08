"""The console in headless Chromium against the whole local stack (Azurite + simulator + Functions host)
with the demo MSP registered through the API: what the page shows is what the API answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.console.conftest import PageProblems

pytestmark = pytest.mark.integration
SCENARIO = "demo"
# The host loads function_app.py plus the console blueprint (a no-op once function_app.py registers it).
SETTLED = {"ok", "error", "excluded"}
ENTITIES = ("entraDevices", "autopilotDevices", "vulnerabilities", "licences")


def tenants_of(api: Any, integration_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/integrations/{integration_id}/tenants", params={"top": 1000})
    response.raise_for_status()
    return list(response.json()["value"])


def wait_settled(api: Any, integration_ids: list[str], timeout: float = 240) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    while True:
        tenants = {i: tenants_of(api, i) for i in integration_ids}
        if all(t and all(x["status"] in SETTLED for x in t) for t in tenants.values()):
            return tenants
        if time.monotonic() > deadline:
            raise TimeoutError(f"tenants did not finish their sync: {tenants}")
        time.sleep(1)


@pytest.fixture(scope="module")
def registered(stack: Any, scenario: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    with stack.api() as api:
        ids = []
        for body in scenario["registrations"]:
            response = api.post("/integrations", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return wait_settled(api, ids)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def open_console(page: Any, stack: Any, key: str) -> PageProblems:
    problems = PageProblems(page)
    page.goto(f"{stack.base_url}/console?code={key}")
    return problems


def hidden_table(page: Any, chart: str) -> dict[str, int]:
    rows = page.locator(f"[data-chart-table='{chart}'] tbody tr")
    return {
        rows.nth(i).locator("th").text_content(): int(rows.nth(i).locator("td").first.text_content())
        for i in range(rows.count())
    }


def test_the_console_shows_every_demo_tenant_as_the_api_does(page, stack, scenario, registered, artifacts):
    problems = open_console(page, stack, stack.function_key)
    page.wait_for_selector("#customers-table tbody tr[data-tenant]")
    page.wait_for_selector("[data-chart='os'] svg")
    all_tenants = [t for ts in registered.values() for t in ts]
    assert len(all_tenants) >= len([t for t in scenario["tenants"] if t.get("expected")])
    for t in all_tenants:
        row = page.locator(f"#customers-table tr[data-tenant='{t['tenantId']}']")
        assert row.locator("[data-status]").get_attribute("data-status") == t["status"], t
        if t["counts"] and t["counts"].get("devices") is not None:
            assert row.locator("td.devices").text_content().replace(",", "") == str(t["counts"]["devices"])
    failing = [t for t in all_tenants if t["status"] == "error"]
    assert failing, "the demo has one tenant a person must fix"
    for t in failing:
        row = page.locator(f"#customers-table tr[data-tenant='{t['tenantId']}']")
        assert row.locator(".action").text_content() == t["error"]["action"]
        assert t["error"]["code"] in row.text_content()
    # Nothing in the page spells the key (it stays in the address the page was opened with).
    assert stack.function_key not in page.locator("body").inner_text()
    assert problems.errors == []
    page.screenshot(path=str(artifacts / "console-demo.png"), full_page=True)


def test_a_charts_numbers_are_the_apis_counts(page, stack, registered):
    open_console(page, stack, stack.function_key)
    page.wait_for_selector("[data-chart='os'] svg")
    integration_id, tenants = next(iter(registered.items()))
    synced = [t for t in tenants if t["status"] == "ok"]
    total = sum(t["counts"]["devices"] for t in synced)
    assert sum(hidden_table(page, "os").values()) == total
    biggest = max(synced, key=lambda t: t["counts"]["devices"])
    page.select_option("#fleet-scope", f"{integration_id}/{biggest['tenantId']}")
    expected = f"{biggest['counts']['devices']} devices"
    page.wait_for_function(
        f"() => document.querySelector(\"[data-chart='os'] figcaption\").textContent.endsWith('{expected}')"
    )
    for chart in ("os", "os-support", "compliance", "risk", "exposure", "age"):
        assert sum(hidden_table(page, chart).values()) == biggest["counts"]["devices"], chart
    # The Defender chart's matched devices are the API's own.
    with stack.api() as api:
        devices = api.get(
            f"/integrations/{integration_id}/tenants/{biggest['tenantId']}/devices", params={"top": 1000}
        ).json()["value"]
    risk = hidden_table(page, "risk")
    assert sum(risk.values()) - risk["Not in Defender"] == sum(1 for d in devices if d.get("defender"))
    # OS support by status, as each device the API lists carries it; the tenant's facts count the same.
    support = hidden_table(page, "os-support")
    statuses = [d["osSupport"]["status"] for d in devices]
    assert support["Support ended"] == statuses.count("ended") == biggest["counts"]["facts"]["devices"]["osEnded"]
    assert support["Ends within 180 days"] == statuses.count("endingSoon")
    assert statuses.count("endingSoon") == biggest["counts"]["facts"]["devices"]["osEndingSoon"]
    assert support["No published end date"] == statuses.count("unknown") > 0


def facts_of(tenant: dict[str, Any]) -> dict[str, Any]:
    return dict((tenant["counts"] or {}).get("facts") or {})


def digits(locator: Any) -> str:
    """A cell's text without the locale's thousands separators."""
    return str(locator.text_content()).replace(",", "")


def test_each_tenants_entra_autopilot_vulnerability_and_licence_facts_are_the_apis(page, stack, registered):
    problems = open_console(page, stack, stack.function_key)
    page.wait_for_selector("#customers-table tbody tr[data-tenant]")
    all_tenants = [(i, t) for i, ts in registered.items() for t in ts]
    assert any(facts_of(t) for _, t in all_tenants), "the demo collects the optional entities"
    for _, t in all_tenants:
        counts = t["counts"] or {}
        facts = facts_of(t)
        row = page.locator(f"#customers-table tr[data-tenant='{t['tenantId']}']")
        cell = {e: row.locator(f"dd[data-entity='{e}']") for e in ENTITIES}
        for entity, fact, word in (("entraDevices", "unmanaged", "unmanaged"),
                                   ("autopilotDevices", "unenrolled", "not enrolled")):
            if entity in facts:
                assert digits(cell[entity].locator("button")).startswith(f"{facts[entity][fact]} {word}"), t
                assert digits(cell[entity]).endswith(f"of {counts[entity]}"), t
            elif entity not in counts:
                assert cell[entity].text_content() == "—", (entity, t)
        if "vulnerabilities" in facts:
            for severity in ("critical", "high"):
                badge = cell["vulnerabilities"].locator(f"[data-severity='{severity}']")
                assert badge.get_attribute("data-count") == str(facts["vulnerabilities"][severity]), t
        elif "vulnerabilities" not in counts:
            assert cell["vulnerabilities"].text_content() == "—", t
        if "licences" in facts:
            used, enabled = facts["licences"]["consumed"], facts["licences"]["enabled"]
            assert digits(cell["licences"].locator("button")).startswith(f"{used} / {enabled} used"), t
            over = facts["licences"]["overConsumed"]
            assert cell["licences"].locator("[data-over]").count() == (1 if over else 0), t
        elif "licences" not in counts:
            assert cell["licences"].text_content() == "—", t
        if "devices" in facts:
            for status, name in (("ended", "osEnded"), ("endingSoon", "osEndingSoon")):
                badge = row.locator(f"dd[data-entity='devices'] [data-os-support='{status}']")
                assert badge.get_attribute("data-count") == str(facts["devices"][name]), t
        else:
            assert row.locator("dd[data-entity='devices']").text_content() == "—", t
    # A fact opens the API's own list: the unmanaged Entra devices of the first tenant that has some.
    integration_id, tenant = next(
        (i, t) for i, t in all_tenants if facts_of(t).get("entraDevices", {}).get("unmanaged")
    )
    with stack.api() as api:
        listed = api.get(
            f"/integrations/{integration_id}/tenants/{tenant['tenantId']}/entraDevices",
            params={"managed": "false", "top": 25},
        ).json()["value"]
    assert listed and not any(e["isManaged"] for e in listed)
    row = page.locator(f"#customers-table tr[data-tenant='{tenant['tenantId']}']")
    row.locator("dd[data-entity='entraDevices'] button").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#more tbody tr td[data-label=\"Device\"]').length === n", arg=len(listed)
    )
    names = page.locator("#more tbody td[data-label='Device'] strong").all_text_contents()
    assert names == [e["displayName"] or "(no name)" for e in listed]
    assert problems.errors == []


def test_a_devices_details_and_vulnerability_list_are_the_apis(page, stack, registered):
    problems = open_console(page, stack, stack.function_key)
    page.wait_for_selector("#customers-table tbody tr[data-tenant]")
    found = None
    with stack.api() as api:
        for integration_id, tenants in registered.items():
            for t in tenants:
                if "vulnerabilities" not in facts_of(t):
                    continue
                base = f"/integrations/{integration_id}/tenants/{t['tenantId']}/devices"
                first_page = api.get(base, params={"top": 25}).json()["value"]
                device = next((d for d in first_page if d.get("vulnerabilities")), None)
                if device:
                    listed = api.get(f"{base}/{device['id']}/vulnerabilities", params={"top": 25}).json()["value"]
                    found = (integration_id, t, device, listed)
                    break
            if found:
                break
    assert found, "a demo device with vulnerabilities on its customer's first page"
    integration_id, tenant, device, listed = found
    page.select_option("#browse-tenant", f"{integration_id}/{tenant['tenantId']}")
    row = page.locator("#devices tbody tr", has_text=device["deviceName"]).first
    summary = device["vulnerabilities"]
    assert row.locator("[data-severity='critical']").get_attribute("data-count") == str(summary["critical"])
    row.locator("button[data-action='device-details']").click()
    page.locator("#device-detail").wait_for(state="visible")
    badges = page.locator("#device-detail [data-group='vulnerabilities'] [data-severity]")
    assert {badges.nth(i).get_attribute("data-severity"): int(badges.nth(i).get_attribute("data-count"))
            for i in range(badges.count())} == {s: summary[s] for s in ("critical", "high", "medium", "low")}
    page.wait_for_function(
        "n => document.querySelector('#device-vulns .range').textContent === `Vulnerabilities 1–${n}`",
        arg=len(listed),
    )
    cves = page.locator("#device-vulns tbody td[data-label='CVE']").all_text_contents()
    assert cves == [v["cveId"] for v in listed]
    assert problems.errors == []


def test_sync_now_queues_a_sync_and_the_status_changes(page, stack, registered):
    integration_id, tenants = next(iter(registered.items()))
    target = next(t for t in tenants if t["status"] == "ok")
    open_console(page, stack, stack.function_key)
    row_sel = f"#customers-table tr[data-tenant='{target['tenantId']}']"
    page.wait_for_selector(f"{row_sel} [data-status='ok']")
    page.locator(f"{row_sel} button[data-action='sync-tenant']").click()
    page.wait_for_selector(f"{row_sel} [data-status='queued'], {row_sel} [data-status='syncing']")
    with stack.api() as api:
        deadline = time.monotonic() + 120
        while True:
            now = next(t for t in tenants_of(api, integration_id) if t["tenantId"] == target["tenantId"])
            if now["lastSyncStartedAt"] != target["lastSyncStartedAt"] and now["status"] in SETTLED:
                break
            assert time.monotonic() < deadline, now
            time.sleep(1)
    page.wait_for_selector(f"{row_sel} [data-status='{now['status']}']")


def test_a_wrong_key_shows_the_clear_message(page, stack):
    open_console(page, stack, "not-the-key")
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert banner.locator("span").text_content() == (
        "This link's function key is missing or wrong: open the console with ?code=<function key>"
    )


def test_phone_width(browser, stack, registered, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        open_console(page, stack, stack.function_key)
        page.wait_for_selector("[data-chart='os'] svg", timeout=30_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts / "console-demo-390.png"), full_page=True)
    finally:
        context.close()
