"""The console in headless Chromium against a stand-in API (fake_api.py): every behaviour the page owns,
pinned on data chosen to stress it (a hostile display name, a paged list with absolute nextLinks on
another host name, an error tenant, a stale one, an excluded one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.console.conftest import PageProblems
from tests.integration.console.fake_api import HOSTILE_NAME, FakeApi, serve

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
    for chart in ("os", "compliance", "risk", "exposure", "age"):
        assert sum(hidden_table(page, chart).values()) == total, chart
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
    assert api.sync_requests[-1] == (INTEG, {"tenantIds": [CONTOSO]})
    page.wait_for_selector(
        f"#customers-table tr[data-tenant='{CONTOSO}'] [data-status='syncing'], "
        f"#customers-table tr[data-tenant='{CONTOSO}'] [data-status='queued']"
    )
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
