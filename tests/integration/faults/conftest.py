"""Fault tests: every module ends with the secret scan (tests/integration/support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.support import FaultInjector, secret_scan_fixture

secret_scan = secret_scan_fixture()


@pytest.fixture
def faults(request: pytest.FixtureRequest, stack: Any) -> Iterator[FaultInjector]:
    """Inject simulator fault rules; cleared after the test, and how many fired goes into its report."""
    injector = FaultInjector(stack)
    try:
        yield injector
    finally:
        fired = injector.clear()
        request.node.user_properties.append(("reliability.faultsInjected", fired))
