"""`make demo`: the whole product on one machine, from registration to a per-tenant summary.

Starts Azurite, the cloud simulator (scenario `demo`) and the local Functions host; registers the
simulator's demo MSP through `POST /api/integrations`, exactly as an MSP's script would; waits until
every tenant's first sync has finished; runs the secret-expiry check; prints what memsync now knows;
stops everything and exits 0 (1 when something did not work as it should).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from devstack.stack import DevStack

FINISHED = {"ok", "error", "excluded"}
SYNC_TIMEOUT_SECONDS = 180


def say(text: str) -> None:
    print(text, flush=True)


def register_all(api: Any, registrations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    integrations = []
    for body in registrations:
        response = api.post("/integrations", json=body)
        if response.status_code != 201:
            problem = response.json()
            say(f"    ! {body.get('displayName')}: {response.status_code} {problem.get('title')}")
            for err in problem.get("errors", []):
                say(f"      - {err.get('code')}: {err.get('message')}\n        action: {err.get('action')}")
            continue
        integration = response.json()
        say(f"    {integration['displayName']}: created {response.headers.get('Location')}")
        integrations.append(integration)
    return integrations


def wait_for_first_sync(api: Any, integration_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SYNC_TIMEOUT_SECONDS
    while True:
        tenants = api.get(f"/integrations/{integration_id}/tenants", params={"top": 1000}).json()["value"]
        done = [t for t in tenants if (t["status"] in FINISHED and t.get("lastSyncFinishedAt"))
                or t["status"] == "excluded"]
        if tenants and len(done) == len(tenants):
            return list(tenants)
        if time.monotonic() > deadline:
            raise TimeoutError(f"tenants still syncing after {SYNC_TIMEOUT_SECONDS} s")
        time.sleep(0.5)


def wait_for_alerts(api: Any, seconds: float = 30) -> list[dict[str, Any]]:
    """The admin API runs the timer in the background (202), as Azure's does; poll for its alerts."""
    deadline = time.monotonic() + seconds
    while True:
        alerts: list[dict[str, Any]] = api.get("/alerts", params={"status": "open"}).json().get("value", [])
        if alerts or time.monotonic() > deadline:
            return alerts
        time.sleep(0.5)


# The per-tenant table: the first columns are fixed (what `make demo` has always printed); each optional
# entity adds one column, with "-" where the tenant's last sync did not collect it (docs/api.md, Tenant
# status: `counts.<entity>` and `counts.facts.<entity>` are present only for collected entities).
NOT_COLLECTED = "-"
FACT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("autopilot (unenrolled)", 22),
    ("entra (unmanaged)", 17),
    ("vulns crit/high", 15),
    ("licences used/enabled", 21),
)


def _fact(counts: dict[str, Any], entity: str, name: str) -> int | None:
    value = ((counts.get("facts") or {}).get(entity) or {}).get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _total_and_part(counts: dict[str, Any], entity: str, part: str) -> str:
    """`120 (3)`: the entity's count and one fact of it; `120 (-)` for an old row without facts."""
    total = counts.get(entity)
    if not isinstance(total, int) or isinstance(total, bool):
        return NOT_COLLECTED
    value = _fact(counts, entity, part)
    return f"{total} ({NOT_COLLECTED if value is None else value})"


def _pair(counts: dict[str, Any], entity: str, first: str, second: str) -> str:
    """`4/12`: two facts of one entity, or "-" when the last sync did not give them."""
    a, b = _fact(counts, entity, first), _fact(counts, entity, second)
    return NOT_COLLECTED if a is None or b is None else f"{a}/{b}"


def fact_cells(counts: dict[str, Any]) -> tuple[str, str, str, str]:
    """The optional entities' cells of one tenant, in FACT_COLUMNS order."""
    return (
        _total_and_part(counts, "autopilotDevices", "unenrolled"),
        _total_and_part(counts, "entraDevices", "unmanaged"),
        _pair(counts, "vulnerabilities", "critical", "high"),
        _pair(counts, "licences", "consumed", "enabled"),
    )


def summary_lines(integration: dict[str, Any], tenants: list[dict[str, Any]]) -> list[str]:
    """The demo's per-tenant summary of one integration, one string per printed line."""
    facts_header = "  ".join(f"{name:>{width}}" for name, width in FACT_COLUMNS)
    header = (f"  {'tenant':<38} {'name':<24} {'devices':>7} {'software':>8} {'defender':>8}  {'status':<8}"
              f"  {facts_header}")
    lines = ["", f"  {integration['displayName']} ({integration['kind']}, id {integration['id']})", header,
             "  " + "-" * (len(header) - 2)]
    for t in sorted(tenants, key=lambda t: t.get("displayName") or ""):
        counts = t.get("counts") or {}
        fixed = (f"  {t['tenantId']:<38} {(t.get('displayName') or '')[:24]:<24} {counts.get('devices', 0):>7} "
                 f"{counts.get('software', 0):>8} {counts.get('defenderMachines', 0):>8}  {t['status']:<8}")
        cells = zip(fact_cells(counts), FACT_COLUMNS, strict=True)
        lines.append(fixed + "  " + "  ".join(f"{cell:>{width}}" for cell, (_, width) in cells))
        if t.get("error"):
            lines.append(f"      {t['error']['code']}: {t['error']['message']}")
            lines.append(f"      action: {t['error']['action']}")
    return lines


def print_summary(integration: dict[str, Any], tenants: list[dict[str, Any]]) -> None:
    for line in summary_lines(integration, tenants):
        say(line)


def main() -> int:
    say("==> Starting Azurite, the Microsoft cloud simulator (scenario 'demo') and the Functions host")
    with DevStack(scenario="demo") as stack, stack.api() as api, stack.sim() as sim:
        say(f"    API {stack.base_url}   simulator {stack.sim_url}")
        health = api.get("/health").json()
        say(f"    health: {health.get('status')} (version {health.get('version')})")
        registrations = sim.get("/scenario").json()["registrations"]
        say(f"==> Registering {len(registrations)} integration(s) through POST /api/integrations")
        integrations = register_all(api, registrations)
        if not integrations:
            return 1
        say("==> Waiting for every tenant's first sync")
        results = [(i, wait_for_first_sync(api, i["id"])) for i in integrations]
        say("==> Per-tenant summary")
        for integration, tenants in results:
            print_summary(integration, tenants)
        say("\n==> Secret-expiry check")
        if not stack.run_function("secret_expiry_check"):
            say("    ! the expiry timer could not be started through the host's admin API")
            return 1
        alerts = wait_for_alerts(api)
        for alert in alerts:
            say(f"    [{alert['kind']}] {alert['message']}\n      action: {alert['action']}")
        if not alerts:
            say("    no open alerts")
        say(f"\n    Console: {stack.base_url}/console?code={stack.function_key}")
        say("==> Stopping the stack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
