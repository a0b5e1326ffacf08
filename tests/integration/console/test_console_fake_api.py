"""The console in headless Chromium against a stand-in API (fake_api.py): every behaviour the page owns,
pinned on data chosen to stress it (a hostile display name, a paged list with absolute nextLinks on
another host name, an error tenant, a stale one, an excluded one; for the optional entities, a customer
with every fact, one without vulnerabilities (a permission note) and over its licences, an old row with
counts but no facts, and customers with none)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.console.conftest import PageProblems
from tests.integration.console.fake_api import (
    HOSTILE_NAME,
    HOSTILE_PRODUCT,
    HOSTILE_SOURCE,
    FakeApi,
    FakeTenant,
    serve,
)

pytestmark = pytest.mark.integration
KEY = "fake-function-key-0123456789"
INTEG = "11111111-1111-1111-1111-111111111111"
CONTOSO = "c0000000-0000-0000-0000-000000000001"


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with serve(FakeApi.with_demo_data(KEY)) as fake:
        yield fake


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def open_console(page: Any, api: FakeApi, key: str | None = KEY) -> PageProblems:
    problems = PageProblems(page)
    page.goto(f"{api.base_url}/console" + (f"?code={key}" if key is not None else ""))
    return problems


def wait_loaded(page: Any) -> None:
    page.wait_for_selector("#customers-table tbody tr[data-tenant]")
    page.wait_for_selector("[data-chart='os'] svg")


def hidden_table(page: Any, chart: str) -> dict[str, int]:
    rows = page.locator(f"[data-chart-table='{chart}'] tbody tr")
    return {
        rows.nth(i).locator("th").text_content(): int(rows.nth(i).locator("td").first.text_content())
        for i in range(rows.count())
    }


def test_lists_every_tenant_with_its_status_and_escapes_names(page, api):
    problems = open_console(page, api)
    wait_loaded(page)
    for ft in api.tenants[INTEG]:
        t = ft.tenant
        row = page.locator(f"#customers-table tr[data-tenant='{t['tenantId']}']")
        assert row.locator("[data-status]").get_attribute("data-status") == t["status"]
        assert row.locator("td.devices").text_content() == str(t["counts"]["devices"])
    # The hostile name is shown as text; nothing of it became an element or ran.
    assert page.get_by_text(HOSTILE_NAME, exact=True).first.is_visible()
    assert page.locator("main img").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None
    assert problems.errors == []  # no CSP violation, no script error


def test_the_problem_tenant_shows_its_code_and_action(page, api):
    open_console(page, api)
    wait_loaded(page)
    row = page.locator("#customers-table tr[data-tenant='c0000000-0000-0000-0000-000000000004']")
    assert "appNotFoundInTenant" in row.text_content()
    # The action holds markup-looking text; it is shown literally.
    assert (
        row.locator(".action").text_content()
        == "Consent the sync app in this customer through Partner Center <b>now</b>."
    )
    attention = page.locator("#issues")
    assert attention.locator("[data-kind='tenant-error']").count() == 1
    assert attention.locator("[data-kind='stale']").text_content().count("Stale Corp") == 1
    assert "secret expires in 10 days" in attention.locator("[data-kind='alert']").text_content()
    secrets = page.locator("#secrets [data-kind='secret']")
    assert "10 days left" in secrets.first.text_content()  # nearest first
    assert "149 days left" in secrets.nth(1).text_content()


def test_charts_count_what_the_api_returns(page, api):
    open_console(page, api)
    wait_loaded(page)
    synced = [ft for ft in api.tenants[INTEG] if ft.tenant["status"] == "ok"]
    total = sum(len(ft.devices) for ft in synced)
    for chart in ("os", "os-support", "compliance", "risk", "exposure", "age"):
        assert sum(hidden_table(page, chart).values()) == total, chart
    # Stale Corp's devices were written before memsync judged OS support: a bar of their own.
    stale = sum(len(ft.devices) for ft in synced if ft.tenant["displayName"] == "Stale Corp")
    assert hidden_table(page, "os-support")["Not judged yet"] == stale > 0
    contoso = next(ft for ft in synced if ft.tenant["tenantId"] == CONTOSO)
    page.select_option("#fleet-scope", f"{INTEG}/{CONTOSO}")
    page.wait_for_function(
        "() => document.querySelector(\"[data-chart='os'] figcaption\").textContent.includes('48 devices')"
    )
    assert sum(hidden_table(page, "os").values()) == contoso.tenant["counts"]["devices"]
    compliant = sum(1 for d in contoso.devices if d["complianceState"] == "compliant")
    assert hidden_table(page, "compliance")["Compliant"] == compliant
    in_defender = sum(1 for d in contoso.devices if d["defender"])
    assert sum(hidden_table(page, "risk").values()) - hidden_table(page, "risk")["Not in Defender"] == in_defender
    bar = page.locator("[data-chart='compliance'] rect.bar[data-label='Compliant']")
    assert bar.locator("title").text_content().startswith(f"Compliant: {compliant} device")
    # OS support by status, each bar naming the releases behind it.
    statuses = [d["osSupport"]["status"] for d in contoso.devices]
    support = hidden_table(page, "os-support")
    assert support == {"Support ended": statuses.count("ended"), "Ends within 180 days": statuses.count("endingSoon"),
                       "Supported": statuses.count("supported"), "No published end date": statuses.count("unknown")}
    assert min(support.values()) > 0
    ended = page.locator("[data-chart='os-support'] rect.bar[data-label='Support ended']").locator("title")
    assert "Windows 11 23H2: " in ended.text_content() and "Windows 10 22H2: " in ended.text_content()
    # The OS chart names releases as memsync matched them.
    assert hidden_table(page, "os")["Windows 11 25H2"] == statuses.count("endingSoon")


def test_every_api_call_sends_the_key_as_a_header_and_follows_next_links(page, api):
    open_console(page, api)
    wait_loaded(page)
    page.select_option("#browse-tenant", f"{INTEG}/{CONTOSO}")
    devices = page.locator("#devices")
    devices.locator("select[name=top]").select_option("25")
    devices.locator("button[type=submit]").click()
    page.wait_for_function("() => document.querySelector('#devices .range').textContent === 'Devices 1–25'")
    devices.locator("button.next").click()
    page.wait_for_function("() => document.querySelector('#devices .range').textContent === 'Devices 26–48'")
    assert devices.locator("button.next").is_disabled()
    devices.locator("button.prev").click()
    page.wait_for_function("() => document.querySelector('#devices .range').textContent === 'Devices 1–25'")
    devices.locator("input[name=search]").fill("DEV-1-04")
    devices.locator("input[name=search]").press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 8")
    json_calls = [r for r in api.requests if "format=csv" not in r[1]]
    assert json_calls and all(header == KEY for _, _, header in json_calls)
    assert all("code=" not in path for _, path, _ in json_calls)
    assert any("skip=25" in path for _, path, _ in json_calls)  # the nextLink, taken by path only
    href = devices.locator("a.csv").get_attribute("href")
    query = parse_qs(urlsplit(href).query)
    assert query["format"] == ["csv"] and query["code"] == [KEY] and query["search"] == ["DEV-1-04"]
    assert urlsplit(href).path == f"/api/integrations/{INTEG}/tenants/{CONTOSO}/devices"


def test_sync_now_queues_a_sync_and_the_status_follows(page, api):
    open_console(page, api)
    wait_loaded(page)
    row = page.locator(f"#customers-table tr[data-tenant='{CONTOSO}']")
    before = row.locator("time").get_attribute("datetime")
    row.locator("button[data-action='sync-tenant']").click()
    page.wait_for_selector(
        f"#customers-table tr[data-tenant='{CONTOSO}'] [data-status='syncing'], "
        f"#customers-table tr[data-tenant='{CONTOSO}'] [data-status='queued']"
    )
    # The page shows "queued" once the API accepted the POST, so the request has arrived by now.
    assert api.sync_requests[-1] == (INTEG, {"tenantIds": [CONTOSO]})
    page.wait_for_function("() => document.querySelector('#announce').textContent === 'Sync queued for Contoso Ltd.'")
    page.wait_for_selector(f"#customers-table tr[data-tenant='{CONTOSO}'] [data-status='ok']", timeout=20_000)
    assert row.locator("time").get_attribute("datetime") != before
    # Per integration: no body, every tenant.
    page.locator("button[data-action='sync-integration']").click()
    page.wait_for_function(
        "() => document.querySelectorAll(\"#customers-table [data-status='syncing'], "
        "#customers-table [data-status='queued']\").length >= 4"
    )
    assert api.sync_requests[-1] == (INTEG, None)


@pytest.mark.parametrize("key", ["not-the-key", None])
def test_a_wrong_or_missing_key_says_what_to_do(page, api, key):
    open_console(page, api, key)
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert banner.locator("span").text_content() == (
        "This link's function key is missing or wrong: open the console with ?code=<function key>"
    )
    assert page.locator("#main").is_hidden()


def test_keyboard_reaches_the_actions_with_a_visible_focus(page, api):
    open_console(page, api)
    wait_loaded(page)
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate("""() => { const e = document.activeElement;
            return [e.tagName, e.getAttribute('data-action'), getComputedStyle(e).outlineStyle]; }""")
        )
    sync_buttons = [s for s in seen if s[1] == "sync-tenant"]
    assert sync_buttons, seen
    assert all(style != "none" for _, _, style in sync_buttons)


def test_phone_width_has_no_sideways_scrolling(browser, api, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    try:
        open_console(page, api)
        wait_loaded(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts / "console-fake-390.png"), full_page=True)
    finally:
        context.close()


# ---------------------------------------------------------------- optional entities (docs/console.md)
NORTHWIND = "c0000000-0000-0000-0000-000000000002"
EVIL = "c0000000-0000-0000-0000-000000000003"
WOODGROVE = "c0000000-0000-0000-0000-000000000004"
STALE = "c0000000-0000-0000-0000-000000000006"
ENTITIES = ("entraDevices", "autopilotDevices", "vulnerabilities", "licences")


def fake_tenant(api: FakeApi, tenant_id: str) -> FakeTenant:
    return next(ft for ft in api.tenants[INTEG] if ft.tenant["tenantId"] == tenant_id)


def fact(page: Any, tenant_id: str, entity: str) -> Any:
    return page.locator(f"#customers-table tr[data-tenant='{tenant_id}'] dd[data-entity='{entity}']")


def wait_rows(page: Any, lister: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel).textContent === text", arg=[f"#{lister} .range", text]
    )


def last_request(api: FakeApi, path: str) -> tuple[str, dict[str, list[str]], str | None]:
    """The last call the fake API received for `path` (waiting a little for one still on its way)."""
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in api.requests if urlsplit(r[1]).path == path]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, f"no request for {path}"
    method, path_qs, header = found[-1]
    return method, parse_qs(urlsplit(path_qs).query), header


def test_each_customer_shows_unmanaged_entra_unenrolled_autopilot_vulnerabilities_and_licences(page, api):
    problems = open_console(page, api)
    wait_loaded(page)
    counts = fake_tenant(api, CONTOSO).tenant["counts"]
    facts = counts["facts"]
    entra = fact(page, CONTOSO, "entraDevices")
    unmanaged = facts["entraDevices"]["unmanaged"]
    assert unmanaged > 0
    button = page.get_by_role(
        "button", name=f"{unmanaged} unmanaged Entra ID devices Intune does not manage of Contoso Ltd: show them"
    )
    assert button.get_attribute("data-view") == "entraDevices?managed=false"
    assert entra.locator(".muted").text_content() == f" of {counts['entraDevices']}"
    autopilot = fact(page, CONTOSO, "autopilotDevices")
    assert autopilot.locator("button").get_attribute("data-view") == "autopilotDevices?enrolled=false"
    unenrolled = facts["autopilotDevices"]["unenrolled"]
    assert autopilot.locator("button").text_content().startswith(f"{unenrolled} not enrolled")
    assert autopilot.locator(".muted").text_content() == f" of {counts['autopilotDevices']}"
    # Severity badges: the count in words, coloured by severity when there is any.
    vulns = fact(page, CONTOSO, "vulnerabilities")
    for severity in ("critical", "high"):
        badge = vulns.locator(f"[data-severity='{severity}']")
        n = facts["vulnerabilities"][severity]
        assert n > 0 and badge.get_attribute("data-count") == str(n)
        assert badge.text_content() == f"{n} {severity}"
        assert f"sev-{severity}" in badge.get_attribute("class")
    assert vulns.locator(".sevs").get_attribute("title").startswith(
        f"{facts['vulnerabilities']['medium']} medium, {facts['vulnerabilities']['low']} low"
    )
    # Licences: used / enabled, and within what is enabled here.
    licences = fact(page, CONTOSO, "licences")
    used = f"{facts['licences']['consumed']} / {facts['licences']['enabled']} used"
    assert licences.locator("button").text_content().startswith(used)
    assert licences.locator("[data-over]").count() == 0
    assert "over" not in licences.locator("button").get_attribute("class").split()
    # The summary tiles add the facts up over the customers that have them.
    ok_facts = [ft.tenant["counts"].get("facts", {}) for ft in api.tenants[INTEG]]
    tiles = {
        "entra-unmanaged": sum(f["entraDevices"]["unmanaged"] for f in ok_facts if "entraDevices" in f),
        "autopilot-unenrolled": sum(f["autopilotDevices"]["unenrolled"] for f in ok_facts if "autopilotDevices" in f),
        "critical": sum(f["vulnerabilities"]["critical"] for f in ok_facts if "vulnerabilities" in f),
        "over-licensed": 1,
    }
    for tile, value in tiles.items():
        assert page.locator(f"#tiles [data-tile='{tile}'] .value").text_content() == str(value), tile
    assert "bad" in page.locator("#tiles [data-tile='critical']").get_attribute("class")
    assert problems.errors == []


def test_over_consumed_licences_are_highlighted_and_a_missing_permission_is_a_note(page, api):
    open_console(page, api)
    wait_loaded(page)
    counts = fake_tenant(api, NORTHWIND).tenant["counts"]
    used, enabled = counts["facts"]["licences"]["consumed"], counts["facts"]["licences"]["enabled"]
    assert counts["facts"]["licences"]["overConsumed"] == 1
    licences = fact(page, NORTHWIND, "licences")
    assert licences.locator("button").text_content().startswith(f"{used} / {enabled} used")
    assert "over" in licences.locator("button").get_attribute("class").split()
    # Counted per subscription: free seats of one never hide another's over-use.
    assert licences.locator("[data-over]").text_content() == "1 subscription over-used"
    # Vulnerabilities were not collected (the consent lacks the permission): a dash, and the status stays ok
    # with a note, not a failure.
    vulns = fact(page, NORTHWIND, "vulnerabilities")
    assert vulns.text_content() == "—"
    assert "permission" in vulns.locator("[data-fact='none']").get_attribute("title")
    row = page.locator(f"#customers-table tr[data-tenant='{NORTHWIND}']")
    assert row.locator("[data-status]").get_attribute("data-status") == "ok"
    assert row.locator(".chip-note").text_content() == "note"
    assert "permissionMissing" in row.locator(".problem").text_content()
    assert page.locator(f"#issues [data-tenant='{NORTHWIND}']").count() == 0
    # Every Autopilot identity enrolled: a zero, which is known, not a dash.
    assert fact(page, NORTHWIND, "autopilotDevices").locator("button").text_content().startswith("0 not enrolled")


def test_customers_without_facts_show_a_dash_not_zero(page, api):
    open_console(page, api)
    wait_loaded(page)
    # Nothing collected (an old row, an error tenant): every fact is a dash.
    for tenant_id in (EVIL, WOODGROVE):
        for entity in ENTITIES:
            cell = fact(page, tenant_id, entity)
            assert cell.text_content() == "—", (tenant_id, entity)
            assert cell.locator("[data-fact='none']").count() == 1
    # An old row with Entra and Autopilot counts but no facts: a dash, and the total opens the whole list.
    stale = fake_tenant(api, STALE).tenant["counts"]
    assert "facts" not in stale
    for entity in ("entraDevices", "autopilotDevices"):
        cell = fact(page, STALE, entity)
        assert cell.locator("[data-fact='none']").text_content() == "—"
        assert cell.locator("button").text_content().startswith(f"of {stale[entity]}")
        assert cell.locator("button").get_attribute("data-view") == entity
    for entity in ("vulnerabilities", "licences"):
        assert fact(page, STALE, entity).text_content() == "—"


def test_the_facts_open_their_lists_with_the_key_in_a_header(page, api):
    open_console(page, api)
    wait_loaded(page)
    contoso = fake_tenant(api, CONTOSO)
    base = f"/api/integrations/{INTEG}/tenants/{CONTOSO}"
    # Unmanaged Entra devices.
    fact(page, CONTOSO, "entraDevices").locator("button").click()
    unmanaged = [e for e in contoso.entra_devices if not e["isManaged"]]
    wait_rows(page, "more", f"Devices 1–{len(unmanaged)}")
    assert page.evaluate("document.activeElement.id") == "more-h"
    assert page.locator("#more select[name=view]").input_value() == "entraDevices?managed=false"
    assert page.locator("#browse-tenant").input_value() == f"{INTEG}/{CONTOSO}"
    assert page.locator("#more tbody tr").count() == len(unmanaged)
    assert page.locator("#more tbody .chip-warn", has_text="not managed").count() == len(unmanaged)
    _, query, header = last_request(api, f"{base}/entraDevices")
    assert query["managed"] == ["false"] and header == KEY and "code" not in query
    href = page.locator("#more a.csv").get_attribute("href")
    assert urlsplit(href).path == f"{base}/entraDevices"
    assert parse_qs(urlsplit(href).query) == {"managed": ["false"], "format": ["csv"], "code": [KEY]}
    # All Entra devices: more than a page, paged by nextLink.
    page.select_option("#more select[name=view]", "entraDevices")
    wait_rows(page, "more", "Devices 1–25")
    page.locator("#more button.next").click()
    wait_rows(page, "more", "Devices 26–50")
    page.locator("#more button.next").click()
    wait_rows(page, "more", f"Devices 51–{len(contoso.entra_devices)}")
    # Unenrolled Autopilot identities.
    fact(page, CONTOSO, "autopilotDevices").locator("button").click()
    unenrolled = [a for a in contoso.autopilot_devices if not a["enrolled"]]
    wait_rows(page, "more", f"Identities 1–{len(unenrolled)}")
    assert page.locator("#more select[name=view]").input_value() == "autopilotDevices?enrolled=false"
    assert page.locator("#more tbody .chip-warn", has_text="not enrolled").count() == len(unenrolled)
    # Graph's 0001-01-01 for an identity never contacted reads as "never".
    assert page.locator("#more td[data-label='Last contacted']").all_text_contents() == ["never"] * len(unenrolled)
    _, query, header = last_request(api, f"{base}/autopilotDevices")
    assert query["enrolled"] == ["false"] and header == KEY
    # Licences of another customer: the over-consumed subscription is marked in words as well as colour.
    fact(page, NORTHWIND, "licences").locator("button").click()
    northwind = fake_tenant(api, NORTHWIND)
    wait_rows(page, "more", f"Subscriptions 1–{len(northwind.licences)}")
    assert page.locator("#browse-tenant").input_value() == f"{INTEG}/{NORTHWIND}"
    over = page.locator("#more tbody tr.over")
    assert over.count() == 1
    assert "SPB" in over.text_content() and "over by 12" in over.text_content()
    page.locator("#more input[name=search]").fill("ems")
    page.locator("#more input[name=search]").press("Enter")
    wait_rows(page, "more", "Subscriptions 1–1")
    _, query, header = last_request(api, f"/api/integrations/{INTEG}/tenants/{NORTHWIND}/licences")
    assert header == KEY and query["search"] == ["ems"]
    assert page.evaluate("document.body.dataset.pwned") is None


def test_device_rows_and_details_show_autopilot_entra_and_vulnerabilities(page, api):
    problems = open_console(page, api)
    wait_loaded(page)
    contoso = fake_tenant(api, CONTOSO)
    device = next(d for d in contoso.devices if d["vulnerabilities"] and d["vulnerabilities"]["total"] > 25)
    mac = next(d for d in contoso.devices if d["operatingSystem"] == "macOS")
    page.select_option("#browse-tenant", f"{INTEG}/{CONTOSO}")
    row = page.locator("#devices tbody tr", has_text=device["deviceName"])
    row.wait_for()
    assert row.locator("dd[data-entity='autopilotDevices']").text_content() == "Enrolled · Contoso-Std"
    assert row.locator("dd[data-entity='entraDevices']").text_content() == "Entra joined"
    summary = device["vulnerabilities"]
    defender = row.locator("td[data-label='Defender']")
    assert defender.locator("[data-severity='critical']").get_attribute("data-count") == str(summary["critical"])
    assert defender.locator("[data-severity='high']").get_attribute("data-count") == str(summary["high"])
    # Collected for this customer, but not registered: said so, not a dash.
    mac_row = page.locator("#devices tbody tr", has_text=mac["deviceName"])
    assert mac_row.locator("dd[data-entity='autopilotDevices']").text_content() == "not registered"

    # The device's name opens its details.
    row.get_by_role("button", name=f"{device['deviceName']} details").click()
    detail = page.locator("#device-detail")
    detail.wait_for(state="visible")
    assert page.locator("#device-h").text_content() == f"Device {device['deviceName']}"
    assert page.evaluate("document.activeElement.id") == "device-h"
    autopilot = detail.locator("[data-group='autopilot']").text_content()
    assert "Contoso-Std" in autopilot and device["autopilot"]["purchaseOrderIdentifier"] in autopilot
    assert "Matched byserial number" in autopilot  # matched by serial, not by the Intune device id
    assert "Join typeEntra joined" in detail.locator("[data-group='entra']").text_content()
    vulns = detail.locator("[data-group='vulnerabilities']")
    for severity in ("critical", "high", "medium", "low"):
        badge = vulns.locator(f"[data-severity='{severity}']")
        assert badge.get_attribute("data-count") == str(summary[severity]), severity
    assert vulns.locator(".cves li").all_text_contents() == summary["topCves"]
    # Its vulnerability list, paged by nextLink, with the key as a header.
    base = f"/api/integrations/{INTEG}/tenants/{CONTOSO}/devices/{device['id']}"
    wait_rows(page, "device-vulns", "Vulnerabilities 1–25")
    _, query, header = last_request(api, f"{base}/vulnerabilities")
    assert query == {"top": ["25"]} and header == KEY
    first = page.locator("#device-vulns tbody tr").first
    assert first.locator("td[data-label='Severity']").text_content() == "Critical"
    assert first.get_by_text(HOSTILE_PRODUCT, exact=True).is_visible()  # a hostile product name stays text
    page.locator("#device-vulns button.next").click()
    wait_rows(page, "device-vulns", f"Vulnerabilities 26–{summary['total']}")
    assert page.locator("#device-vulns a.csv").count() == 0  # the API pages this list but does not export it
    assert page.locator("#browse svg").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None
    # Close: the panel goes, and focus returns to the button that opened it.
    page.locator("#device-close").click()
    assert detail.is_hidden()
    assert page.evaluate("document.activeElement.getAttribute('data-action')") == "device-details"
    assert problems.errors == []


def test_a_device_of_a_customer_without_the_new_entities_shows_dashes(page, api):
    open_console(page, api)
    wait_loaded(page)
    page.select_option("#browse-tenant", f"{INTEG}/{EVIL}")
    row = page.locator("#devices tbody tr", has_text="DEV-3-000")
    row.wait_for()
    page.wait_for_function(
        "() => document.querySelector('#more tbody').textContent"
        " === 'Entra ID devices are not collected for this customer.'"
    )
    for entity in ("autopilotDevices", "entraDevices"):
        assert row.locator(f"dd[data-entity='{entity}']").text_content() == "—", entity
    assert row.locator("td[data-label='Defender'] [data-severity]").count() == 0
    row.locator("button[data-action='device-details']").click()
    detail = page.locator("#device-detail")
    detail.wait_for(state="visible")
    assert "not collected for this customer" in detail.locator("[data-group='autopilot']").text_content()
    assert "not collected for this customer" in detail.locator("[data-group='vulnerabilities']").text_content()
    page.wait_for_function(
        "() => document.querySelector('#device-vulns tbody').textContent === 'No vulnerabilities found.'"
    )


def test_phone_width_keeps_the_facts_lists_and_device_detail_on_screen(browser, api):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        open_console(page, api)
        wait_loaded(page)
        fact(page, NORTHWIND, "licences").locator("button").click()
        page.wait_for_selector("#more tbody tr.over")
        page.select_option("#browse-tenant", f"{INTEG}/{CONTOSO}")
        page.locator("#devices tbody tr", has_text="DEV-1-000").locator("button[data-action='device-details']").click()
        wait_rows(page, "device-vulns", "Vulnerabilities 1–25")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


# ---------------------------------------------------------------- OS end of support (docs/console.md)
def test_each_customer_shows_its_devices_past_or_near_os_end_of_support(page, api):
    problems = open_console(page, api)
    wait_loaded(page)
    for tenant_id in (CONTOSO, NORTHWIND, EVIL):
        facts = fake_tenant(api, tenant_id).tenant["counts"]["facts"]["devices"]
        cell = fact(page, tenant_id, "devices")
        for status, n, word, tone in (("ended", facts["osEnded"], "ended", "sev-critical"),
                                      ("endingSoon", facts["osEndingSoon"], "ending soon", "sev-high")):
            badge = cell.locator(f"[data-os-support='{status}']")
            assert badge.get_attribute("data-count") == str(n), (tenant_id, status)
            assert badge.text_content() == f"{n} {word}"
            assert (tone if n else "sev-none") in badge.get_attribute("class").split()
    assert fake_tenant(api, CONTOSO).tenant["counts"]["facts"]["devices"]["osEndingSoon"] > 0
    # Written before memsync judged OS support (an old row), or never synced: a dash, not a zero.
    for tenant_id in (STALE, WOODGROVE):
        cell = fact(page, tenant_id, "devices")
        assert cell.text_content() == "—" and cell.locator("[data-fact='none']").count() == 1, tenant_id
    ended = sum(ft.tenant["counts"].get("facts", {}).get("devices", {}).get("osEnded", 0) for ft in api.tenants[INTEG])
    tile = page.locator("#tiles [data-tile='os-ended']")
    assert tile.locator(".value").text_content() == str(ended) and "bad" in tile.get_attribute("class")
    assert problems.errors == []


def test_a_device_says_when_its_os_support_ends_and_links_microsofts_page_only(page, api):
    problems = open_console(page, api)
    wait_loaded(page)
    contoso = fake_tenant(api, CONTOSO)
    soon = next(d for d in contoso.devices if d["osSupport"]["status"] == "endingSoon")
    gone = next(d for d in contoso.devices if d["osSupport"]["status"] == "ended")
    page.select_option("#browse-tenant", f"{INTEG}/{CONTOSO}")
    page.locator("#devices input[name=search]").fill(soon["deviceName"])
    page.locator("#devices input[name=search]").press("Enter")
    wait_rows(page, "devices", "Devices 1–1")
    chip = page.locator("#devices tbody td[data-label='OS'] [data-os-support='endingSoon']")
    assert chip.text_content().startswith("support ends ") and "Windows 11 25H2" in chip.get_attribute("title")
    page.locator("#devices button[data-action='device-details']").click()
    detail = page.locator("#device-detail [data-group='intune']")
    detail.wait_for()
    assert "(within 180 days)" in detail.text_content() and "Windows 11 25H2 ends " in detail.text_content()
    link = detail.get_by_role("link", name="Microsoft lifecycle page")
    assert link.get_attribute("href") == soon["osSupport"]["source"]
    assert link.get_attribute("rel") == "noopener noreferrer" and link.get_attribute("target") == "_blank"
    page.locator("#devices input[name=search]").fill(gone["deviceName"])
    page.locator("#devices input[name=search]").press("Enter")
    page.wait_for_function(
        "(name) => document.querySelector('#devices tbody').textContent.includes(name)", arg=gone["deviceName"])
    assert page.locator("#devices tbody [data-os-support='ended']").first.text_content() == "support ended"

    # A source that is not Microsoft's https page is shown as text, never linked; a hostile release stays text.
    page.locator("#devices input[name=search]").fill("")
    page.select_option("#browse-tenant", f"{INTEG}/{EVIL}")
    row = page.locator("#devices tbody tr", has_text="DEV-3-000")
    row.wait_for()
    row.locator("button[data-action='device-details']").click()
    detail = page.locator("#device-detail [data-group='intune']")
    page.wait_for_function(
        "(text) => document.querySelector('#device-detail [data-group=intune]').textContent.includes(text)",
        arg=HOSTILE_SOURCE)
    assert detail.locator("a").count() == 0
    assert HOSTILE_NAME in detail.text_content()
    assert page.locator("main img").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None
    assert problems.errors == []


# ---------------------------------------------------------------- operating (docs/console.md, Operating)
FIRST_ETAG = 'W/"11111111-1"'


def changes(api: FakeApi, method: str, path: str) -> list[tuple[Any, str | None]]:
    """The bodies and If-Match headers the page sent with `method` to `path`."""
    return [(body, if_match) for m, p, body, if_match in api.changes if m == method and p == path]


def wait_text(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => { const n = document.querySelector(sel); return n && n.textContent.includes(text); }",
        arg=[selector, text],
    )


def script_errors(problems: PageProblems) -> list[str]:
    """Script errors and CSP violations; Chromium also logs each 4xx answer, which these tests ask for."""
    return [e for e in problems.errors if "Failed to load resource" not in e]


def open_manage(page: Any, api: FakeApi) -> PageProblems:
    problems = open_console(page, api)
    wait_loaded(page)
    page.wait_for_function("() => document.querySelector('#edit-form [name=displayName]').value !== ''")
    return problems


def test_an_edit_on_a_stale_etag_says_someone_changed_it_first_and_reloads(page, api):
    problems = open_manage(page, api)
    form = page.locator("#edit-form")
    assert form.locator("[name=displayName]").input_value() == "Fabrikam IT Services"
    api.touch(INTEG, displayName="Fabrikam Managed Services")  # someone else, meanwhile
    form.locator("[name=displayName]").fill("My new name")
    form.locator("button[type=submit]").click()
    wait_text(page, "#manage-result", "Someone changed Fabrikam IT Services first")
    page.wait_for_function(
        "() => document.querySelector('#edit-form [name=displayName]').value === 'Fabrikam Managed Services'")
    assert changes(api, "PATCH", f"/api/integrations/{INTEG}")[-1][1] == FIRST_ETAG
    assert api.integration(INTEG)["displayName"] == "Fabrikam Managed Services"  # nothing was overwritten
    # Saved again, now on the new ETag.
    form.locator("[name=displayName]").fill("My new name")
    form.locator("button[type=submit]").click()
    wait_text(page, "#manage-result", "Changes saved for My new name")
    assert changes(api, "PATCH", f"/api/integrations/{INTEG}")[-1][1] == 'W/"11111111-2"'
    assert script_errors(problems) == []


def test_a_collect_change_is_sent_as_a_patch_and_a_refusal_shows_beside_its_field(page, api):
    open_manage(page, api)
    form = page.locator("#edit-form")
    assert form.locator("[name=exclude]").input_value() == "c0000000-0000-0000-0000-000000000005"
    form.locator("input[name=collect][value=licences]").uncheck()
    form.locator("button[type=submit]").click()
    wait_text(page, "#manage-result", "Changes saved")
    body, if_match = changes(api, "PATCH", f"/api/integrations/{INTEG}")[-1]
    assert if_match == FIRST_ETAG
    assert body["collect"] == ["autopilotDevices", "entraDevices", "vulnerabilities"]
    assert body["tenantFilter"] == {"include": [], "exclude": ["c0000000-0000-0000-0000-000000000005"]}
    # Vulnerabilities without Defender: the 400's error and action beside the collect boxes.
    form.locator("[name=includeDefender]").uncheck()
    form.locator("[name=include]").fill(f"{CONTOSO}\nnot-a-tenant")
    form.locator("button[type=submit]").click()
    wait_text(page, "#edit-form [data-error-for='collect']", "Include Defender, or do not collect vulnerabilities.")
    include_error = form.locator("[data-error-for='tenantFilter.include']").text_content()
    assert include_error.startswith("Entry 2: ") and "Send the customer's tenant ID." in include_error
    assert form.locator("[name=include]").get_attribute("aria-invalid") == "true"
    assert api.integration(INTEG)["includeDefender"] is True


def test_disable_and_enable_send_the_status(page, api):
    open_manage(page, api)
    toggle = page.locator("#toggle-status")
    toggle.click()
    wait_text(page, "#manage-result", "Disabled: no more syncs for Fabrikam IT Services.")
    assert changes(api, "PATCH", f"/api/integrations/{INTEG}")[-1] == ({"status": "disabled"}, FIRST_ETAG)
    page.wait_for_selector(f"#customers-table tbody[data-integration='{INTEG}'] .chip-disabled")
    assert page.locator(f"tr[data-tenant='{CONTOSO}'] button[data-action='sync-tenant']").is_disabled()
    wait_text(page, "#toggle-status", "Enable")
    toggle.click()
    wait_text(page, "#manage-result", "Enabled: syncs again")
    assert changes(api, "PATCH", f"/api/integrations/{INTEG}")[-1][0] == {"status": "active"}


def test_delete_asks_first_naming_the_integration(page, api):
    open_manage(page, api)
    page.locator("#delete-integ").click()
    assert "Delete “Fabrikam IT Services”?" in page.locator("#delete-q").text_content()
    assert page.evaluate("document.activeElement.id") == "delete-no"
    page.locator("#delete-no").click()
    assert page.locator("#delete-confirm").is_hidden()
    assert changes(api, "DELETE", f"/api/integrations/{INTEG}") == []
    page.locator("#delete-integ").click()
    page.get_by_role("button", name="Delete Fabrikam IT Services").click()
    wait_text(page, "#manage-result", "Fabrikam IT Services is deleted.")
    assert len(changes(api, "DELETE", f"/api/integrations/{INTEG}")) == 1
    assert api.integration(INTEG)["status"] == "disabled"
    assert last_request(api, f"/api/integrations/{INTEG}")[1] == {}  # no purgeAssets unless asked


def test_a_rotated_secret_is_sent_once_and_never_left_in_the_page(page, api):
    open_manage(page, api)
    form = page.locator("#secrets-form")
    assert form.locator("[name=syncAppSecret]").get_attribute("type") == "password"
    form.locator("[name=syncAppSecret]").fill("wrong-secret")
    form.locator("button[type=submit]").click()
    wait_text(page, "#secrets-form [data-error-for='syncAppSecret']", "not its Secret ID")
    assert form.locator("[name=syncAppSecret]").input_value() == ""
    secret = "Q7~s3cret-VALUE-never-shown"
    form.locator("[name=syncAppSecret]").fill(secret)
    form.locator("[name=syncAppSecretExpiresOn]").fill("2031-05-01")
    form.locator("[name=partnerAppSecret]").fill(secret + "-partner")
    form.locator("button[type=submit]").click()
    wait_text(page, "#manage-result", "New secrets accepted and stored for Fabrikam IT Services.")
    body, _ = changes(api, "PUT", f"/api/integrations/{INTEG}/secrets")[-1]
    assert body == {"syncAppSecret": secret, "syncAppSecretExpiresOn": "2031-05-01T00:00:00Z",
                    "partnerAppSecret": secret + "-partner"}
    assert secret not in page.content()
    assert page.evaluate("[...document.querySelectorAll('input')].map((i) => i.value).join('|')").count(secret) == 0


def test_consent_in_one_tenant_and_partner_sign_in(page, api):
    open_manage(page, api)
    item = page.locator(f"#consent-list li[data-tenant='{WOODGROVE}']")
    item.locator("button[data-action='consent-tenant']").click()
    wait_text(page, f"#consent-list li[data-tenant='{WOODGROVE}'] .consent-result", "consented; sync queued")
    assert len(changes(api, "POST", f"/api/integrations/{INTEG}/tenants/{WOODGROVE}/consent")) == 1
    page.locator("#signin-start").click()
    wait_text(page, "#signin-state", "FAKE-CODE-42")
    link = page.locator("#signin-state a")
    assert link.get_attribute("href") == "https://microsoft.com/devicelogin"
    wait_text(page, "#signin-state", "Signed in as admin@fabrikam.example")


def test_check_secrets_now_says_what_the_check_did(page, api):
    open_manage(page, api)
    page.locator("#check-secrets").click()
    wait_text(page, "#check-result", "Checked 2 secrets: 1 alert raised, 0 resolved.")
    assert len(changes(api, "POST", "/api/alerts/check")) == 1


def test_the_audit_view_pages_filters_and_exports(page, api):
    open_manage(page, api)
    audit = page.locator("#audit-list")
    wait_rows(page, "audit-list", "Records 1–25")
    first = audit.locator("tbody tr").first
    assert "integration.change" in first.text_content() and "Fabrikam IT Services" in first.text_content()
    audit.locator("button.next").click()
    wait_rows(page, "audit-list", "Records 26–31")
    assert "alerts.check" in audit.locator("tbody tr").last.text_content()
    audit.locator("select[name=integration]").select_option(INTEG)
    wait_rows(page, "audit-list", "Records 1–25")
    assert last_request(api, "/api/audit")[1]["integrationId"] == [INTEG]
    href = audit.locator("a.csv").get_attribute("href")
    query = parse_qs(urlsplit(href).query)
    assert query == {"integrationId": [INTEG], "format": ["csv"], "code": [KEY]}


def test_the_registration_wizard_shows_refusals_per_field_and_warnings_on_success(page, api):
    problems = open_manage(page, api)
    form = page.locator("#register-form")
    form.locator("input[name=kind][value=singleTenant]").check()
    assert form.locator("[name=partnerAppId]").is_hidden()
    assert "DeviceManagementManagedDevices.Read.All" in form.text_content()
    form.locator("[name=tenantId]").fill("not-a-guid")
    form.locator("[name=syncAppSecret]").fill("first-try-secret")
    form.locator("button[type=submit]").click()
    wait_text(page, "#register-form [data-error-for='tenantId']", "tenantId must be a GUID.")
    assert "syncAppId is required." in form.locator("[data-error-for='syncAppId']").text_content()
    assert page.evaluate("document.activeElement.name") == "tenantId"
    assert form.locator("[name=syncAppSecret]").input_value() == ""
    form.locator("[name=tenantId]").fill("d0000000-0000-0000-0000-000000000001")
    form.locator("[name=syncAppId]").fill("d0000000-0000-0000-0000-0000000000aa")
    form.locator("[name=syncAppSecret]").fill("second-try-secret")
    form.locator("[name=displayName]").fill("Tailspin Toys")
    form.locator("button[type=submit]").click()
    wait_text(page, "#register-result", "Registered Tailspin Toys")
    assert "permissionMissing" in page.locator("#register-result .warnings").text_content()
    assert "DeviceManagementServiceConfig.Read.All" in page.locator("#register-result .warnings").text_content()
    body, _ = changes(api, "POST", "/api/integrations")[-1]
    assert body["kind"] == "singleTenant" and body["syncAppSecret"] == "second-try-secret"
    assert "partnerAppId" not in body and "tenantFilter" not in body
    assert "second-try-secret" not in page.content()
    page.wait_for_selector("#customers-table tbody[data-integration] .name >> text=Tailspin Toys")
    assert script_errors(problems) == []


def test_phone_width_keeps_the_forms_on_screen(browser, api, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    try:
        open_manage(page, api)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("#manage").screenshot(path=str(artifacts / "console-manage-390.png"))
    finally:
        context.close()
