"""The console page: served as one self-contained HTML document with strict headers, no key in it,
and a script that never turns API data into markup."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import azure.functions as func
import pytest

from functions import console

pytestmark = pytest.mark.unit
ASSETS = Path(console.__file__).resolve().parent / "console_assets"
KEY = "k3y-Th1s-Must-N0t-Appear-In-The-Page"


def _request(url: str = f"http://localhost:7071/api/console?code={KEY}") -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=url, headers={"accept": "text/html"},
                            params={"code": KEY}, route_params={}, body=b"")


def _served() -> func.HttpResponse:
    return console.console(_request())


def _csp_sources(csp: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_serves_the_page_as_html_with_no_store_and_a_strict_policy():
    response = _served()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = _csp_sources(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in csp[directive]
        assert "'unsafe-eval'" not in csp[directive]
        assert all(s.startswith("'sha256-") for s in csp[directive]), csp[directive]


def test_the_policy_allows_exactly_the_inline_script_and_style_in_the_page():
    html = _served().get_body().decode("utf-8")
    csp = _csp_sources(_served().headers["Content-Security-Policy"])
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    assert len(scripts) == 1 and len(styles) == 1
    assert csp["script-src"] == [_sha256(scripts[0])]
    assert csp["style-src"] == [_sha256(styles[0])]
    # Nothing else that the policy would block: no external or extra inline code, no style attributes.
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)


def test_the_page_is_self_contained():
    html = _served().get_body().decode("utf-8")
    # No CDN, no framework: every URL the page names is relative to the API or a data: icon.
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)
    assert "/*CONSOLE_JS*/" not in html and "/*CONSOLE_CSS*/" not in html
    assert '<html lang="en">' in html and 'name="viewport"' in html


def test_the_page_holds_no_key_or_secret():
    response = _served()
    body = response.get_body().decode("utf-8")
    assert KEY not in body
    assert all(KEY not in v for v in response.headers.values())
    # The key is read from the page's own address at run time, never templated in.
    assert re.search(r"new URLSearchParams\(location\.search\)\.get\(\"code\"\)", body)
    assert not re.search(r"[A-Za-z0-9]{3}8Q~[A-Za-z0-9_.~-]{30,}", body), "an Entra-shaped client secret"


def test_the_page_is_read_once_per_process():
    console.console_page.cache_clear()
    first = console.console_page()
    assert console.console_page() is first


def test_the_page_route_is_anonymous_but_only_serves_the_static_shell():
    # A function-level route would answer a wrong key with the host's empty 401 and a blank page;
    # the shell holds no data, and every API call from it needs the key (see functions/console.py).
    fn = next(f for f in _blueprint_functions() if f.get_function_name() == "console")
    trigger = next(b for b in fn.get_bindings() if b.type == "httpTrigger")
    assert trigger.route == "console"
    assert [str(m) for m in trigger.methods] in (["GET"], ["HttpMethod.GET"])
    assert str(trigger.auth_level) in ("ANONYMOUS", "AuthLevel.ANONYMOUS")


def _blueprint_functions() -> list:
    app = func.FunctionApp()
    app.register_functions(console.bp)
    return app.get_functions()


def test_build_page_refuses_a_template_without_its_slots(tmp_path: Path):
    for name in ("console.css", "console.js"):
        (tmp_path / name).write_text((ASSETS / name).read_text())
    (tmp_path / "console.html").write_text("<html><script></script></html>")
    with pytest.raises(ValueError, match="CONSOLE_CSS"):
        console.build_page(tmp_path)


def test_the_script_never_builds_markup_from_strings():
    js = (ASSETS / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "createContextualFragment", "DOMParser", "srcdoc"):
        assert sink not in js, f"console.js uses {sink}"
    # setTimeout/setInterval only with functions, never with a string to evaluate.
    assert not re.search(r"set(?:Timeout|Interval)\(\s*[\"'`]", js)
    # Attributes that run code are never set from data: el()/svg() route on* keys to addEventListener.
    assert not re.search(r"setAttribute\(\s*[\"'`]on", js)
    assert not re.search(r"\.style\.cssText|setAttribute\(\s*[\"'`]style", js)


def test_the_script_and_style_cannot_close_their_own_element():
    for name, closing in (("console.js", "</script"), ("console.css", "</style")):
        assert closing not in (ASSETS / name).read_text().lower(), name
