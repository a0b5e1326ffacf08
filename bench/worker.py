"""A fresh worker process for the memory and cold-start cases: `python -m bench.worker MODE ...`.

The app settings come from the environment, as the Functions host gives them. Prints one JSON line.
- `rss INTEGRATION TENANT`: one sync at service level; peak RSS of this process (ru_maxrss).
- `cold INTEGRATION TENANT`: `import function_app`, then the queue function `sync_tenant` invoked the way
  the host invokes it (a `func.QueueMessage`), each timed from a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid

STARTED = time.perf_counter()


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its
    parent's at fork (the benchmark process is large), VmHWM belongs to this program's memory alone."""
    try:
        for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _rss(integration_id: str, tenant_id: str) -> dict[str, object]:
    from shared.runtime import Runtime
    from shared.services.tenant_sync import sync_tenant
    from shared.settings import load_settings
    from shared.stores.queues import SyncJob

    rt = await Runtime.build(load_settings()).start()
    baseline = _peak_rss_mb()
    job = SyncJob.model_validate({"integrationId": integration_id, "tenantId": tenant_id,
                                  "runId": str(uuid.uuid4()), "trigger": "manual"})
    t = time.perf_counter()
    result = await sync_tenant(rt, job)
    seconds = time.perf_counter() - t
    await rt.close()
    calls = result.run.calls if result.run else {}
    return {"outcome": result.outcome, "reason": result.reason, "seconds": seconds,
            "peakRssMb": _peak_rss_mb(), "rssAfterStartMb": baseline,
            "devices": result.run.devices.to_json() if result.run else None, "inventory": calls.get("inventory")}


def _cold(integration_id: str, tenant_id: str) -> dict[str, object]:
    t = time.perf_counter()
    import function_app

    import_s = time.perf_counter() - t
    import azure.functions as func

    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    body = json.dumps({"integrationId": integration_id, "tenantId": tenant_id, "runId": str(uuid.uuid4()),
                       "trigger": "manual"}).encode()
    message = func.QueueMessage(id="cold-start", body=body)
    t = time.perf_counter()
    asyncio.run(functions["sync_tenant"](message))
    first_s = time.perf_counter() - t
    return {"importSeconds": import_s, "firstInvocationSeconds": first_s,
            "processSeconds": time.perf_counter() - STARTED, "peakRssMb": _peak_rss_mb()}


def main() -> int:
    mode, integration_id, tenant_id = sys.argv[1:4]
    out = asyncio.run(_rss(integration_id, tenant_id)) if mode == "rss" else _cold(integration_id, tenant_id)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
