"""Headless Debian Chromium driven by Playwright for the console's browser tests.

Never `playwright install`: the browser is Debian's package (see chromium.py), found or installed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.console.chromium import CHROMIUM_ARGS, ChromiumMissing, ensure_chromium

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-output"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        executable = ensure_chromium()
    except ChromiumMissing as exc:
        pytest.fail(f"the console's browser tests need Debian's chromium: {exc}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageProblems:
    """Console errors (CSP violations among them) and uncaught exceptions of one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
