"""Helpers for the sync's service-level tests; they live in tests/integration/support.py (shared with
the fault and security suites) and are re-exported here."""

from __future__ import annotations

from tests.integration.support import (
    LIST_ONLY_FIELDS,
    PLAIN_FIELDS,
    ZERO_GUID,
    all_devices,
    all_software,
    assert_devices_match_truth,
    assert_software_matches_truth,
    job,
    last_seq,
    requests_since,
    sim_call,
    store_integration,
    truth,
    wait_for,
)

__all__ = [
    "LIST_ONLY_FIELDS",
    "PLAIN_FIELDS",
    "ZERO_GUID",
    "all_devices",
    "all_software",
    "assert_devices_match_truth",
    "assert_software_matches_truth",
    "job",
    "last_seq",
    "requests_since",
    "sim_call",
    "store_integration",
    "truth",
    "wait_for",
]
