"""Measurements that need the storage or the simulator: entity counts, the bare batch-upsert loop, the
critical path of a run, and the deployment package size."""

from __future__ import annotations

import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from shared.entities import ENTITIES, OTHER_LISTED
from shared.services.tenant_sync import JOINS
from shared.stores.tables import RUNS_TABLE, TENANTS_TABLE

# Every synced entity's table (devices, software, per-device software, and each entity declared after them).
ASSET_TABLES = tuple(dict.fromkeys(e.table for e in ENTITIES.values()))
REPO = Path(__file__).resolve().parents[1]


async def entities(rt: Any, table: str, partition: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
    query = f"PartitionKey eq '{partition}'"
    if since is not None:
        query += f" and Timestamp ge datetime'{since.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
    return [e async for e in rt.tables.client(table).query_entities(query, results_per_page=1000)]


async def written_since(rt: Any, partition: str, integration_id: str, tenant_id: str,
                        since: datetime) -> dict[str, int]:
    """Entities whose Timestamp moved since `since`: assets, listing markers, run and status records."""
    out: dict[str, int] = {"assets": 0, "markers": 0}
    for table in ASSET_TABLES:
        for entity in await entities(rt, table, partition, since=since):
            out["markers" if entity["RowKey"].startswith("~") else "assets"] += 1
    out["runRecords"] = len(await entities(rt, RUNS_TABLE, partition, since=since))
    status = [e for e in await entities(rt, TENANTS_TABLE, integration_id, since=since)
              if e["RowKey"] == tenant_id]
    out["statusRecords"] = len(status)
    return out


async def bare_batch_upsert(rt: Any, stored: list[dict[str, Any]]) -> float:
    """Seconds Azurite takes for these entities through a plain loop of 100-entity upsert transactions
    (one at a time, nothing else running): the storage part of the critical-path bound."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import UpdateMode

    name = f"benchbare{int(time.time() * 1000)}"
    try:
        await rt.tables.service.create_table(name)
    except ResourceExistsError:
        pass
    table = rt.tables.client(name)
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for entity in stored:
        by_partition.setdefault(entity["PartitionKey"], []).append(dict(entity))
    started = time.perf_counter()
    for rows in by_partition.values():
        for i in range(0, len(rows), 100):
            await table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in rows[i:i + 100]])
    seconds = time.perf_counter() - started
    await rt.tables.service.delete_table(name)
    return seconds


def critical_chain(log: list[dict[str, Any]]) -> dict[str, int]:
    """The longest chain of dependent requests of one tenant sync, from the simulator's log.

    Before any Graph read: the secret from Key Vault and the Graph token, one after the other. Then
    independent chains run side by side: the Defender token and machine pages, the app pages, the export
    (created after the first device page: create, polls, download), and each other listed entity's pages
    (`shared.entities.OTHER_LISTED`; a Defender one after the Defender token). The device pages come
    after the longest of the chains their first page waits for: Defender's machines and the listings a
    device joins (`shared.services.tenant_sync.JOINS`).
    """
    first_graph = min((e["seq"] for e in log if e["service"] == "graph"), default=0)
    prefix = sum(1 for e in log if e["seq"] < first_graph and e["service"] in ("entra", "vault", "keyvault"))
    graph = [e for e in log if e["service"] == "graph" and e["status"] < 400]
    defender_log = [e for e in log if e["service"] == "defender"]
    device_pages = sum(1 for e in graph if e["path"].endswith("/deviceManagement/managedDevices"))
    app_pages = sum(1 for e in graph if e["path"].endswith("/deviceManagement/detectedApps"))
    machines = sum(1 for e in defender_log if e["path"].endswith("/api/machines"))
    defender = machines + 1 if defender_log else 0  # + its token
    export = sum(1 for e in graph if "exportJobs" in e["path"])
    export_chain = 1 + export + 1 if export else 0  # after the first device page; + the download
    per_app = sum(1 for e in graph if "/detectedApps/" in e["path"] and e["path"].endswith("/managedDevices"))
    chains = {"apps": app_pages, "defender": defender, "export": export_chain, "organization": 1}
    for other in OTHER_LISTED:
        if other.source.service == "defender":
            pages = sum(1 for e in defender_log if e["path"].endswith(other.source.path) and e["status"] < 400)
            chains[other.name] = pages + 1 if pages else 0  # after the Defender token
        else:
            chains[other.name] = sum(1 for e in graph if e["path"].endswith(other.source.path))
    waits = max([defender - 1 if defender > 1 else 0, *(chains[name] for name in JOINS if name in chains)])
    chains["devices"] = device_pages + waits
    return {"prefix": prefix, **chains, "longest": prefix + max(chains.values()), "perAppRequests": per_app,
            "exportRequests": export + (1 if export else 0)}


def _size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            total += Path(str(dist.locate_file(file))).stat().st_size
        except OSError:
            pass
    return total


def package_size() -> dict[str, Any]:
    """Installed size of requirements.txt with its dependencies (from this venv), plus the app code
    `.funcignore` keeps; and the share of msgraph-sdk (not imported by memsync at run time)."""
    import re

    requirements = [re.split(r"[=<>!~\[ ;]", line.strip())[0] for line in (REPO / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]

    def closure(names: list[str]) -> dict[str, metadata.Distribution]:
        seen: dict[str, metadata.Distribution] = {}
        todo = list(names)
        while todo:
            name = todo.pop().lower().replace("_", "-")
            if name in seen:
                continue
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            seen[name] = dist
            for req in dist.requires or []:
                if "extra ==" in req:
                    continue
                todo.append(re.split(r"[=<>!~\[ ;(]", req.strip())[0])
        return seen

    everything = closure(requirements)
    without = closure([r for r in requirements if r.lower() != "msgraph-sdk"])
    libs = sum(_size(d) for d in everything.values())
    libs_without = sum(_size(d) for d in without.values())
    ignore = [line.strip().rstrip("/") for line in (REPO / ".funcignore").read_text().splitlines() if line.strip()]
    app = 0
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO).as_posix()
        if not path.is_file() or any(rel == p or rel.startswith(p + "/") or (p.endswith("*") and rel.startswith(p[:-1]))
                                     for p in ignore) or "__pycache__" in rel or rel.startswith("node_modules"):
            continue
        app += path.stat().st_size
    return {"librariesMb": libs / 2**20, "librariesWithoutMsgraphMb": libs_without / 2**20, "appCodeMb": app / 2**20,
            "distributions": len(everything)}
