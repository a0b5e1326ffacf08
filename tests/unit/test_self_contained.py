"""The repository explains itself: its code and docs cite its own files and Microsoft's documentation,
never a page outside it or a ticket number that a reader cannot open."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("shared", "functions", "docs", "devstack", "infra", "bench", "tests", "README.md", "function_app.py")
SUFFIXES = {".py", ".md", ".js", ".html", ".bicep"}
# An outside contract page, or an issue or ticket by number ("issue 7", "(issue #12)", "Issue 8:").
# (Graph's own `/contracts`, DAP contracts, are Microsoft's word and stay.)
FORBIDDEN = re.compile(r"\bCONTRACT\b|(?i:\bissues? #?\d+\b|\btickets? #?\d+\b)")


def _files() -> list[Path]:
    found: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    return [p for p in found if p != Path(__file__)]


def test_no_reference_to_an_outside_contract_or_an_issue_number():
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
            for p in _files()
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if FORBIDDEN.search(line)]
    assert not hits, "cite the repository's own docs instead:\n" + "\n".join(hits[:40])
