"""Whether memsync's own dependencies answer: Table Storage and Key Vault."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from shared import __version__, sdk

if TYPE_CHECKING:
    from shared.runtime import Runtime

CHECK_TIMEOUT_SECONDS = 5.0


async def _storage(rt: Runtime) -> None:
    async for _ in rt.tables.service.list_tables(results_per_page=1):
        break


async def _vault(rt: Runtime) -> None:
    try:
        await rt.secrets.get_properties("memsync-health-probe")
    except sdk.ResourceNotFoundError:
        pass  # the vault answered; the probe secret does not need to exist


async def _check(name: str, probe: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return {"name": name, "reachable": False, "detail": "no answer within 5 s"}
    except Exception as exc:  # noqa: BLE001  # health reports any failure as data, by its type only
        return {"name": name, "reachable": False, "detail": type(exc).__name__}
    return {"name": name, "reachable": True}


async def check_health(rt: Runtime) -> dict[str, Any]:
    checks = await asyncio.gather(_check("storage", _storage(rt)), _check("keyVault", _vault(rt)))
    healthy = all(c["reachable"] for c in checks)
    return {
        "status": "healthy" if healthy else "degraded",
        "version": __version__,
        "checks": {c["name"]: {k: v for k, v in c.items() if k != "name"} for c in checks},
    }
