"""GET /api/console: the operator console, one self-contained HTML page over the HTTP API.

The page is a static shell: it holds no data and no key. Its script reads the function key from its
own URL (`?code=`, the form Azure accepts) and sends it as `x-functions-key` on every API call, so
every piece of data still needs the key. The shell itself is anonymous for one reason: behind a
function-level route a missing or wrong key gets the host's empty 401 and the person sees a blank
page; anonymous, the page loads, the first API call answers 401 and the page says what to do.

CSS and JavaScript are inlined from `functions/console_assets/` (no build step, no CDN) and allowed by
their SHA-256 hashes in the Content-Security-Policy, so no other inline script or style can run:
https://developer.mozilla.org/docs/Web/HTTP/Headers/Content-Security-Policy/script-src
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it untyped

ASSETS = Path(__file__).resolve().parent / "console_assets"
PAGE_AUTH_LEVEL = func.AuthLevel.ANONYMOUS  # see the module docstring: a static shell, the data needs the key


@dataclass(frozen=True)
class ConsolePage:
    html: bytes
    headers: dict[str, str]


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def build_page(assets: Path = ASSETS) -> ConsolePage:
    """Inline console.css and console.js into console.html and derive the headers that allow exactly them."""
    css = (assets / "console.css").read_text(encoding="utf-8")
    js = (assets / "console.js").read_text(encoding="utf-8")
    template = (assets / "console.html").read_text(encoding="utf-8")
    if template.count("/*CONSOLE_CSS*/") != 1 or template.count("/*CONSOLE_JS*/") != 1:
        raise ValueError("console.html must hold exactly one /*CONSOLE_CSS*/ and one /*CONSOLE_JS*/ slot")
    html = template.replace("/*CONSOLE_CSS*/", css).replace("/*CONSOLE_JS*/", js)
    csp = "; ".join((
        "default-src 'self'",
        f"script-src {_sha256_source(js)}",
        f"style-src {_sha256_source(css)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ))
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": csp,
        # The key rides in the page's URL: never send it on to anyone as a Referer.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return ConsolePage(html.encode("utf-8"), headers)


@functools.cache
def console_page() -> ConsolePage:
    """Read and assemble the page once per worker process."""
    return build_page()


@bp.route(route="console", methods=["GET"], auth_level=PAGE_AUTH_LEVEL)
def console(req: func.HttpRequest) -> func.HttpResponse:
    page = console_page()
    return func.HttpResponse(body=page.html, status_code=200, headers=dict(page.headers))
