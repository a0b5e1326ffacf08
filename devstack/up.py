"""`make up`: the local stack in the foreground until Ctrl-C, with the simulator's demo MSP registered and
what you need to call it (the README's curl session runs as printed)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any

from devstack.demo import register_all, wait_for_first_sync
from devstack.stack import DevStack


def banner(stack: Any, integration: dict[str, Any] | None, tenant: dict[str, Any] | None) -> str:
    """What `make up` prints: where things are, how to sign in, and shell variables for the README."""
    key = stack.function_key
    registered = ("  (not registered: see the log above)" if integration is None else
                  f"  Registered    {integration['displayName']} (the simulator's demo MSP), id {integration['id']}")
    ids = "" if integration is None else f"ID={integration['id']}\n" + (
        f"TENANT={tenant['tenantId']}          # {tenant.get('displayName') or ''}\n" if tenant else "")
    return f"""
memsync is running (Azurite, the cloud simulator with scenario 'demo', and the Functions host).
{registered}

  Base URL      {stack.base_url}
  Console       {stack.base_url}/console?code={key}
                (signed in by the function key in that link: Entra ID sign-in is not configured here)
  Function key  {key}
  Simulator     {stack.sim_url}   (control API; the demo MSP's registration is at /_sim/scenario)
  Logs          {stack.host_log}

The README's curl session, with ids that exist here:

BASE={stack.base_url}
KEY={key}
{ids}H=(-H "x-functions-key: $KEY" -H "Content-Type: application/json")
curl -s -H "x-functions-key: $KEY" "$BASE/integrations/$ID/tenants"

Ctrl-C stops everything.
"""


def main() -> int:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with DevStack(scenario="demo") as stack, stack.api() as api, stack.sim() as sim:
        print("Registering the simulator's demo MSP through POST /api/integrations ...", flush=True)
        integrations = register_all(api, sim.get("/scenario").json()["registrations"][:1])
        integration = integrations[0] if integrations else None
        tenant = None
        if integration is not None:
            try:
                tenants = wait_for_first_sync(api, integration["id"])
                synced = [t for t in tenants if t["status"] == "ok"] or tenants
                tenant = max(synced, key=lambda t: t["counts"]["devices"]) if synced else None
            except TimeoutError as exc:
                print(f"  ! {exc}", flush=True)
        print(banner(stack, integration, tenant), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopping.wait()
        print("Stopping...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
