"""Run the reliability and security suites and print what they proved, as one table.

    .venv/bin/python -m tests.reliability [extra pytest arguments]

It runs tests/integration/faults and tests/integration/security with a small pytest plugin that reads
each test's outcome and the figures it attached (`tests.integration.support.figure`, the `faults`
fixture's fired count) and the per-module secret scans (`SCAN_FIGURES`). Exit status: pytest's.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import pytest

SUITES = ["tests/integration/faults", "tests/integration/security",
          "tests/integration/api/test_api_registration_race.py", "tests/integration/api/test_api_refusals.py"]
# Rows counting the tests (run / passed) of one class of defect, by the file that holds them.
GROUPS = {
    "hostile upstream data (types, surrogates, sizes, foreign links)": ("security/test_hostile_payloads.py",),
    "throttle storms and unreachable Microsoft (Retry-After 0, 503)": ("faults/test_throttle_ceiling.py",
                                                                     "faults/test_manual_sync.py"),
    "racing registrations (one 201, the rest 409)": ("api/test_api_registration_race.py",),
    "refusals that were 500s (forged tokens, surrogates, vault 409/5xx)": ("api/test_api_refusals.py",),
}


class Collector:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.passed: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.xfailed: list[str] = []
        self.failed: list[str] = []
        self.group_run: Counter[str] = Counter()
        self.group_passed: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: Any) -> None:
        figures = {k.removeprefix("reliability."): v for k, v in report.user_properties
                   if k.startswith("reliability.")}
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.outcomes[outcome] += 1
            if outcome == "xfailed":
                self.xfailed.append(f"{report.nodeid}: {report.wasxfail}")
            if outcome == "failed":
                self.failed.append(report.nodeid)
            for group, files in GROUPS.items():
                if any(f in report.nodeid for f in files):
                    self.group_run[group] += 1
                    self.group_passed[group] += outcome == "passed"
        if report.when == "teardown":
            if report.outcome == "failed":
                self.outcomes["errors"] += 1
                self.failed.append(f"{report.nodeid} (teardown)")
            # Figures are complete once the test's teardown ran (the faults fixture adds its count then).
            for name, value in figures.items():
                self.total[name] += value
            if not self._test_failed(report.nodeid):
                for name, value in figures.items():
                    self.passed[name] += value

    def _test_failed(self, nodeid: str) -> bool:
        return any(f == nodeid or f.startswith(nodeid + " ") for f in self.failed)


def table(collector: Collector, seconds: float) -> str:
    from tests.integration.support import SCAN_FIGURES

    t, p = collector.total, collector.passed
    rows = [
        ("faults injected (simulator rules fired, kills, restarts)", t["faultsInjected"]),
        ("  ... in tests that passed (survived)", p["faultsInjected"]),
        ("fault cases run / passed", f"{t['faultCases']} / {p['faultCases']}"),
        ("fuzz cases run / passed (schemathesis)", f"{t['fuzzCases']} / {t['fuzzPassed']}"),
        ("bad queue messages sent / refused", f"{t['badMessagesSent']} / {p['badMessagesRefused']}"),
        ("requests without or with a wrong key refused (401)", p["unauthorizedRefused"]),
        ("hostile records sent / skipped and counted (the others stored scrubbed or bounded)",
         f"{t['hostileRecordsSent']} / {p['hostileRecordsSkipped']}"),
        ("isolation checks (secrets, tokens, partitions) passed", p["isolationChecks"]),
        *((f"{group}: tests run / passed", f"{collector.group_run[group]} / {collector.group_passed[group]}")
          for group in GROUPS),
        ("secret values scanned for", SCAN_FIGURES["secretValues"]),
        ("texts scanned (logs, entities, messages, blobs, responses)",
         f"{SCAN_FIGURES['textsScanned']} ({SCAN_FIGURES['bytesScanned'] / 1e6:.1f} MB, "
         f"{SCAN_FIGURES['modulesScanned']} modules)"),
        ("secrets found", SCAN_FIGURES["secretsFound"]),
        ("assets lost", 0 if not collector.failed else "see failures"),
        ("duplicates stored", 0 if not collector.failed else "see failures"),
        ("tests passed / failed / xfailed (known bugs) / skipped",
         f"{collector.outcomes['passed']} / {collector.outcomes['failed'] + collector.outcomes['errors']} / "
         f"{collector.outcomes['xfailed']} / {collector.outcomes['skipped']}"),
        ("wall time", f"{seconds:.0f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = ["", "memsync reliability and security", "=" * (width + 16)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    if collector.xfailed:
        lines += ["", "known bugs (xfail, reported to the lead):"] + [f"  - {x}" for x in collector.xfailed]
    if collector.failed:
        lines += ["", "FAILED:"] + [f"  - {f}" for f in collector.failed]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    collector = Collector()
    started = time.monotonic()
    code = pytest.main([*SUITES, "-q", "-p", "no:cacheprovider", *argv], plugins=[collector])
    print(table(collector, time.monotonic() - started))
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
