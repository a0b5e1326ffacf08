"""Security tests: every module ends with the secret scan (tests/integration/support.py), and the
all-stacks scan runs last in the session."""

from __future__ import annotations

from typing import Any

from tests.integration.support import secret_scan_fixture

secret_scan = secret_scan_fixture()
LAST = "test_zz_every_stack_leak_scan.py"


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """The all-stacks leak scan reads what every other module left behind, so it goes last."""
    last = [item for item in items if item.nodeid.split("::")[0].endswith(LAST)]
    items[:] = [item for item in items if item not in last] + last
