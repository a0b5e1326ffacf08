"""The naive sync the issue compares memsync with, on the same tenant in the same run: msgraph-sdk's
page iterator for devices and apps, one request per app for its devices, Defender in one call, and one
table upsert per entity (the same entities memsync stores: devices, apps, and per-device / per-app
software rows). Straightforward code as one would first write it; nothing here is memsync's."""

from __future__ import annotations

import time
from typing import Any

import httpx

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFENDER_SCOPE = "https://api.securitycenter.microsoft.com/.default"
DEVICE_FIELDS = ("id", "device_name", "serial_number", "manufacturer", "model", "operating_system", "os_version",
                 "compliance_state", "user_principal_name", "azure_a_d_device_id", "last_sync_date_time")


async def naive_sync(env: dict[str, str], tenant_id: str, app_id: str, secret: str, tables: Any,
                     progress: dict[str, Any]) -> dict[str, Any]:
    """The naive sync; `progress` says how far it got (the suite may stop it at a time cap)."""
    from azure.data.tables import UpdateMode
    from azure.identity.aio import ClientSecretCredential
    from msgraph import GraphServiceClient
    from msgraph_core.tasks.page_iterator import PageIterator

    started = time.perf_counter()
    credential = ClientSecretCredential(tenant_id, app_id, secret, authority=env["MEMSYNC_AUTHORITY_HOST"],
                                        disable_instance_discovery=True)
    client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = env["MEMSYNC_GRAPH_URL"] + "/v1.0"
    requests = 0

    async def collect(first: Any) -> list[Any]:
        nonlocal requests
        items: list[Any] = []
        requests += 1
        iterator = PageIterator(first, client.request_adapter)  # the page type comes from `first`

        def keep(item: Any) -> bool:
            items.append(item)
            return True

        await iterator.iterate(keep)
        requests += max(0, -(-len(items) // 1000) - 1)
        return items

    devices = await collect(await client.device_management.managed_devices.get())
    apps = await collect(await client.device_management.detected_apps.get())
    holders: dict[str, list[str]] = {}
    progress.update(phase="per-app device listing", devices=len(devices), apps=len(apps), appsDone=0,
                    listingSeconds=round(time.perf_counter() - started, 2))
    for app in apps:  # one request (or more) per app
        page = await client.device_management.detected_apps.by_detected_app_id(app.id).managed_devices.get()
        requests += 1
        ids = [d.id for d in page.value or []]
        while page.odata_next_link:
            page = await client.device_management.detected_apps.by_detected_app_id(app.id).managed_devices \
                .with_url(page.odata_next_link).get()
            requests += 1
            ids += [d.id for d in page.value or []]
        holders[app.id] = ids
        progress["appsDone"] = len(holders)
    token = (await credential.get_token(DEFENDER_SCOPE)).token
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.get(env["MEMSYNC_DEFENDER_URL"] + "/api/machines", params={"$top": "10000"},
                                  headers={"Authorization": f"Bearer {token}"})
        requests += 1
        machines = {m.get("aadDeviceId"): m for m in response.json().get("value", [])}
    await credential.close()
    read_s = time.perf_counter() - started

    partition = f"naive_{tenant_id}"
    by_device: dict[str, list[str]] = {}
    for app_id_, ids in holders.items():
        for device_id in ids:
            by_device.setdefault(device_id, []).append(app_id_)
    written = 0
    progress.update(phase="single upserts", written=0)
    table = tables.client("naiveAssets")
    try:
        await tables.service.create_table("naiveAssets")
    except Exception:  # noqa: BLE001  # exists from an earlier run
        pass
    for device in devices:
        entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": f"d_{device.id}"}
        for name in DEVICE_FIELDS:
            value = getattr(device, name, None)
            entity[name] = None if value is None else str(value)
        machine = machines.get(device.azure_a_d_device_id)
        if machine is not None:
            entity["defenderHealth"] = machine.get("healthStatus")
            entity["defenderRisk"] = machine.get("riskScore")
        await table.upsert_entity({k: v for k, v in entity.items() if v is not None}, mode=UpdateMode.REPLACE)
        written += 1
        progress["written"] = written
    for app in apps:
        entity = {"PartitionKey": partition, "RowKey": f"a_{app.id}", "displayName": app.display_name,
                  "version": app.version, "publisher": app.publisher, "deviceCount": app.device_count}
        await table.upsert_entity({k: v for k, v in entity.items() if v is not None}, mode=UpdateMode.REPLACE)
        written += 1
        progress["written"] = written
    for device_id, app_ids in by_device.items():
        await table.upsert_entity({"PartitionKey": partition, "RowKey": f"ds_{device_id}",
                                   "apps": ",".join(app_ids)[:30000]}, mode=UpdateMode.REPLACE)
        written += 1
        progress["written"] = written
    for app_id_, ids in holders.items():
        await table.upsert_entity({"PartitionKey": partition, "RowKey": f"sd_{app_id_}",
                                   "devices": ",".join(ids)[:30000]}, mode=UpdateMode.REPLACE)
        written += 1
        progress["written"] = written
    return {"seconds": time.perf_counter() - started, "readSeconds": read_s, "requests": requests,
            "entities": written, "devices": len(devices), "apps": len(apps), "machines": len(machines)}
