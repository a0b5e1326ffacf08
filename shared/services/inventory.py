"""Per-device installed software: read by the sync from one Intune export job, served to the API.

The sync side (`InventorySync`) asks Intune for the `AppInvRawData` report (one request to create the
job, a few polls, one download) instead of one request per detected app. When the export is refused
(403), fails, or does not complete within its bounded wait, it falls back to the per-app device listing
(`/detectedApps/{id}/managedDevices`), a few apps at a time through the same rate-limited client. The
pairs are stored as rows of ids (`shared.stores.device_software`), written only where they changed.

An inventory that cannot be read at all is a note on the run; it does not fail the tenant's sync, and
the rows from the last complete inventory stay as they are.

The API side answers "what is on this device" and "which devices have this title" from those rows,
resolving a page of ids to the stored Software / Device assets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.clients.exports import ExportJobsClient, ExportUnavailable
from shared.errors import ActionableError, ErrorCode, ErrorInfo, NotFound
from shared.http import ApiError, FatalApiError, RetriableApiError
from shared.mapping.inventory import APP_INV_REPORT, APP_INV_SELECT, InventoryCounts, InventoryIndex, inventory_rows
from shared.stores.assets import AssetStore, partition_key
from shared.stores.device_software import DeviceSoftwareStore, page_after

if TYPE_CHECKING:
    from shared.clients.graph import GraphClient
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

FALLBACK_APPS_IN_FLIGHT = 8
RESOLVE_IN_FLIGHT = 16
ROWS_PER_YIELD = 500
Source = Literal["export", "perApp", "none"]


@dataclass
class InventorySync:
    """One tenant's device <-> app pairs: read (export, else per app), diffed by hash, written."""

    graph: GraphClient
    exports: ExportJobsClient
    store: DeviceSoftwareStore
    integration_id: str
    tenant_id: str
    fallback_in_flight: int = FALLBACK_APPS_IN_FLIGHT
    source: Source = "none"
    export_problem: str | None = None
    counts: InventoryCounts = field(default_factory=InventoryCounts)

    async def read(self, app_ids: Callable[[], Awaitable[list[str]]]) -> InventoryIndex:
        """Every pair of the tenant; `app_ids` gives the detected apps for the fallback."""
        try:
            index = InventoryIndex()
            async for row in self.exports.rows(APP_INV_REPORT, APP_INV_SELECT):
                index.add(row.get("DeviceId"), row.get("ApplicationKey"))
            self.source = "export"
            return index
        except ExportUnavailable as exc:
            self.export_problem = exc.reason
            log.info("tenant %s: inventory export not used (%s); listing devices per app", self.tenant_id,
                     exc.reason)
        apps = await app_ids()
        index = InventoryIndex()
        slots = asyncio.Semaphore(self.fallback_in_flight)

        async def one(app_id: str) -> None:
            async with slots:
                try:
                    async for page in self.graph.app_devices(app_id):
                        for device in page:
                            index.add(device.get("id"), app_id)
                except FatalApiError as exc:
                    if exc.status != 404:  # an app gone since the listing has no devices to report
                        raise

        async with asyncio.TaskGroup() as tasks:
            for app_id in apps:
                tasks.create_task(one(app_id))
        self.source = "perApp"
        return index

    async def write(self, index: InventoryIndex, stored: Awaitable[dict[str, str]]) -> InventoryCounts:
        """Rows whose hash changed are written; rows of a previous inventory that are gone, deleted."""
        hashes = await stored
        partition = partition_key(self.integration_id, self.tenant_id)
        writer = self.store.writer()
        seen: set[str] = set()
        counts = self.counts
        for n, row in enumerate(inventory_rows(index, counts), start=1):
            seen.add(row.row_key)
            if hashes.get(row.row_key) == row.content_hash:
                counts.unchanged += 1
            else:
                counts.written += 1
                await writer.upsert(row.entity(partition))
            if n % ROWS_PER_YIELD == 0:
                await asyncio.sleep(0)  # let the transactions in flight (and the other reads) proceed
        for key in hashes:
            if key not in seen:
                counts.deleted += 1
                await writer.delete(partition, key)
        await writer.close()
        return counts

    async def run(
        self, app_ids: Callable[[], Awaitable[list[str]]], stored: Awaitable[dict[str, str]]
    ) -> ErrorInfo | None:
        """Read and write the inventory; None when it is stored, else the note saying why not."""
        try:
            index = await self.read(app_ids)
        except (ApiError, ActionableError) as exc:
            self.source = "none"
            return _not_read(self.tenant_id, exc, self.export_problem)
        except BaseExceptionGroup as group:  # from the per-app TaskGroup
            cause = _first(group)
            if not isinstance(cause, ApiError | ActionableError):
                raise
            self.source = "none"
            return _not_read(self.tenant_id, cause, self.export_problem)
        await self.write(index, stored)
        return None


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup):
        inner = inner.exceptions[0]
    return inner


def _not_read(tenant_id: str, cause: BaseException, export_problem: str | None) -> ErrorInfo:
    if isinstance(cause, ActionableError):
        return cause.info
    throttled = isinstance(cause, RetriableApiError) and cause.throttled
    code = ErrorCode.THROTTLED if throttled else ErrorCode.UNREACHABLE
    why = f"the export was not available ({export_problem}) and " if export_problem else ""
    return ErrorInfo(
        code,
        f"Installed software per device of tenant {tenant_id} was not updated: {why}the per-app device "
        f"listing failed ({cause}). Devices and software were synced; the previous per-device software "
        "stays until the next run.",
        "No action needed unless it repeats; if it does, check that the sync app has "
        "DeviceManagementManagedDevices.Read.All and DeviceManagementApps.Read.All in the tenant.",
    )


# -- the API's side ------------------------------------------------------------------------------------


async def _known_tenant(rt: Runtime, integration_id: str, tenant_id: str) -> None:
    if await rt.integrations.get_integration(integration_id) is None:
        raise NotFound("integration", "id", "List the integrations with GET /api/integrations.")
    if await rt.tenants.get_tenant(integration_id, tenant_id) is None:
        raise NotFound("tenant in this integration", "tenantId",
                        "List the integration's tenants with GET /api/integrations/{id}/tenants.")


async def device_software(
    rt: Runtime, integration_id: str, tenant_id: str, device_id: str, *, top: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the software installed on one device (Software assets) and the last id shown when more
    follow. Raises `NotFound` for an unknown integration, tenant or device."""
    await _known_tenant(rt, integration_id, tenant_id)
    assets = AssetStore(rt.tables)
    device, ids = await asyncio.gather(
        assets.get_asset("devices", integration_id, tenant_id, device_id),
        DeviceSoftwareStore(rt.tables).ids(integration_id, tenant_id, "d", device_id),
    )
    if device is None:
        raise NotFound("device in this tenant", "deviceId",
                        "List the tenant's devices with GET /api/integrations/{id}/tenants/{tenantId}/devices.")
    page, last = page_after(ids or [], after, top)
    return await _resolve(assets, "software", integration_id, tenant_id, page), last


async def software_devices(
    rt: Runtime, integration_id: str, tenant_id: str, software_id: str, *, top: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the devices that have one detected app (Device assets) and the last id shown when more
    follow. Raises `NotFound` for an unknown integration, tenant or app."""
    await _known_tenant(rt, integration_id, tenant_id)
    assets = AssetStore(rt.tables)
    app, ids = await asyncio.gather(
        assets.get_asset("software", integration_id, tenant_id, software_id),
        DeviceSoftwareStore(rt.tables).ids(integration_id, tenant_id, "a", software_id),
    )
    if app is None:
        raise NotFound("software in this tenant", "softwareId",
                        "List the tenant's software with GET /api/integrations/{id}/tenants/{tenantId}/software.")
    page, last = page_after(ids or [], after, top)
    return await _resolve(assets, "devices", integration_id, tenant_id, page), last


async def _resolve(
    assets: Any, kind: Literal["devices", "software"], integration_id: str, tenant_id: str, ids: list[str]
) -> list[dict[str, Any]]:
    """The stored assets of a page of ids, in the ids' order.

    An id the asset table does not hold (in the export, never in a listing) is returned with its id and
    tenant only, so the list still says what the inventory said.
    """
    found = await assets.get_assets(kind, integration_id, tenant_id, ids, in_flight=RESOLVE_IN_FLIGHT)
    return [a if a is not None else {"id": i, "tenantId": tenant_id} for i, a in zip(ids, found, strict=True)]


async def device_vulnerabilities(
    rt: Runtime, integration_id: str, tenant_id: str, device_id: str, *, top: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the vulnerabilities Defender lists for one device's machine (joined by Entra device id:
    the device's `defender.machineId`) and the last id shown when more follow; none for a device Defender
    does not know. Raises `NotFound` for an unknown integration, tenant or device."""
    await _known_tenant(rt, integration_id, tenant_id)
    assets = AssetStore(rt.tables)
    device = await assets.get_asset("devices", integration_id, tenant_id, device_id)
    if device is None:
        raise NotFound("device in this tenant", "deviceId",
                       "List the tenant's devices with GET /api/integrations/{id}/tenants/{tenantId}/devices.")
    machine = (device.get("defender") or {}).get("machineId")
    if not isinstance(machine, str) or not machine:
        return [], None
    return await assets.list_matching("vulnerabilities", integration_id, tenant_id, "machineId", machine.lower(),
                                      top=top, after=after)
