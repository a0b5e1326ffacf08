"""The session's last test: every stack this test run started (each module's workdir: host, simulator and
Azurite logs, second hosts' logs) and every artifact in test-output/ is scanned for every secret value of
every scenario the suite uses (built-in and JSON ones, computed here from their seeds). The modules of
tests/integration/faults and .../security also scanned their Azurite contents and HTTP responses when
they ended (tests/integration/support.py: `secret_scan_fixture`).

security/conftest.py moves this test to the end of the session, whatever the selection.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack.cloudsim.scenario import build_simulation, load_spec
from tests.integration.support import ARTIFACTS, SCAN_FIGURES, leaks, workdir_texts

pytestmark = pytest.mark.integration
SCENARIOS = ["demo", "edge", "large", *(str(p) for p in Path(__file__).resolve().parents[1].rglob("*.json")
                                       if "scenario" in p.name or "integrations" in p.name)]


def _secrets(name: str) -> set[str]:
    try:
        sim = build_simulation(load_spec(name))
    except (OSError, ValueError, KeyError):
        return set()
    values = {s.value for app in sim.apps.values() for s in app.secrets}
    values |= {v for r in sim.registrations for k, v in r.items() if k.endswith("Secret") and isinstance(v, str)}
    return {v for v in values if len(v) >= 8}


def test_no_stack_of_this_run_logged_a_secret(request):
    secrets: set[str] = set()
    for name in SCENARIOS:
        secrets |= _secrets(name)
    assert secrets
    state = Path(os.environ["MEMSYNC_TEST_STATE_DIR"])
    texts: list[str] = []
    for workdir in sorted(state.glob("stack-*")):
        # cloudsim.env holds memsync's own host identity secret on purpose (the local app setting).
        texts += [t for t in workdir_texts(workdir) if not t.startswith("cloudsim.env\n")]
    if ARTIFACTS.exists():
        texts += [p.read_text(errors="replace") for p in ARTIFACTS.glob("*.log")]
    SCAN_FIGURES["secretValues"] += len(secrets)
    SCAN_FIGURES["textsScanned"] += len(texts)
    SCAN_FIGURES["bytesScanned"] += sum(len(t) for t in texts)
    found = leaks(texts, secrets)
    SCAN_FIGURES["secretsFound"] += len(found)
    assert found == []
