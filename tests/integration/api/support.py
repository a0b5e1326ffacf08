"""Helpers for the API's integration tests; they live in tests/integration/support.py (shared with the
fault and security suites) and are re-exported here."""

from __future__ import annotations

from tests.integration.support import (
    SETTLED,
    Recorder,
    api_client,
    assert_problem,
    leaks,
    stored_texts,
    wait_for_tenant,
    wait_for_tenants,
)

__all__ = [
    "SETTLED",
    "Recorder",
    "api_client",
    "assert_problem",
    "leaks",
    "stored_texts",
    "wait_for_tenant",
    "wait_for_tenants",
]
