"""Helpers for the sync's service-level tests: integrations stored directly, assets read back, the
simulator's ground truth and request log."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from shared.clients.keyvault import secret_name
from shared.models import AppRole, Integration, IntegrationKind, SecretRef
from shared.stores.assets import AssetStore
from shared.stores.queues import SyncJob

# In a list response Intune gives 0 / null for these (FACTS.md); memsync stores what the list says.
LIST_ONLY_FIELDS = {"physicalMemoryInBytes", "ethernetMacAddress"}
PLAIN_FIELDS = (
    "deviceName", "manufacturer", "model", "operatingSystem", "osVersion", "complianceState",
    "managementAgent", "enrolledDateTime", "lastSyncDateTime", "userPrincipalName", "azureADDeviceId",
    "totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "wiFiMacAddress", "imei", "isEncrypted",
)
ZERO_GUID = "00000000-0000-0000-0000-000000000000"


async def store_integration(rt: Any, registration: dict[str, Any]) -> Integration:
    """What registration stores, without the HTTP API (and without queueing a sync)."""
    integration_id = str(uuid.uuid4())
    multi = registration["kind"] == "multiTenant"
    refs = []
    roles = [(AppRole.SYNC, registration["syncAppId"], registration["syncAppSecret"])]
    if multi:
        roles.append((AppRole.PARTNER, registration["partnerAppId"], registration["partnerAppSecret"]))
    for role, app_id, value in roles:
        name = secret_name(integration_id, role)
        version = await rt.secrets.set_secret(name, SecretStr(value), expires_on=None,
                                              tags={"integrationId": integration_id, "role": role.value})
        refs.append(SecretRef(name=name, role=role, app_id=app_id, version=version))
    integration = Integration(
        id=integration_id,
        kind=IntegrationKind(registration["kind"]),
        display_name=registration["displayName"],
        partner_tenant_id=registration.get("partnerTenantId"),
        tenant_id=registration.get("tenantId"),
        partner_app_id=registration.get("partnerAppId"),
        sync_app_id=registration["syncAppId"],
        include_defender=registration.get("includeDefender", True),
        secrets=refs,
        created_at=datetime.now(UTC),
    )
    await rt.integrations.create_integration(integration)
    return integration


def job(integration: Integration, tenant_id: str, run_id: str | None = None, trigger: str = "manual") -> SyncJob:
    return SyncJob.model_validate({"integrationId": integration.id, "tenantId": tenant_id,
                                   "runId": run_id or str(uuid.uuid4()), "trigger": trigger})


async def all_devices(rt: Any, integration_id: str, tenant_id: str, *, removed: bool | None = False,
                      top: int = 7) -> dict[str, dict[str, Any]]:
    """Every stored device, read through the paged API (a small `top` exercises the continuation)."""
    store = AssetStore(rt.tables)
    out: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        page, token = await store.list_devices(integration_id, tenant_id, top=top, continuation=token,
                                               removed=removed)
        for device in page:
            assert device["id"] not in out, "a device appeared on two pages"
            out[device["id"]] = device
        if token is None:
            return out


async def all_software(rt: Any, integration_id: str, tenant_id: str) -> dict[str, dict[str, Any]]:
    store = AssetStore(rt.tables)
    out: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        page, token = await store.list_software(integration_id, tenant_id, top=5, continuation=token)
        out.update({a["id"]: a for a in page})
        if token is None:
            return out


def truth(stack: Any, tenant_id: str) -> dict[str, Any]:
    with stack.sim() as sim:
        response = sim.get(f"/tenants/{tenant_id}/truth")
        response.raise_for_status()
        return dict(response.json())


def sim_call(stack: Any, method: str, path: str, **kwargs: Any) -> Any:
    with stack.sim() as sim:
        response = sim.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None


def requests_since(stack: Any, seq: int, tenant_id: str | None = None) -> list[dict[str, Any]]:
    params = {"since": str(seq)}
    if tenant_id:
        params["tenantId"] = tenant_id
    with stack.sim() as sim:
        return list(sim.get("/requests", params=params).json()["value"])


def last_seq(stack: Any) -> int:
    with stack.sim() as sim:
        return int(sim.get("/requests", params={"since": "999999999"}).json()["lastSeq"])


def assert_devices_match_truth(stored: dict[str, dict[str, Any]], tenant_truth: dict[str, Any],
                               *, include_defender: bool) -> None:
    """Field by field, every device the simulator holds against what memsync stored."""
    raw_devices = {d["id"]: d for d in tenant_truth["managedDevices"]}
    assert set(stored) == set(raw_devices)
    machines: dict[str, dict[str, Any]] = {}
    if include_defender and tenant_truth["tenant"]["defenderLicensed"]:
        for m in tenant_truth["machines"]:
            aad = (m.get("aadDeviceId") or "").lower()
            if aad and aad != ZERO_GUID and (aad not in machines or m["lastSeen"] > machines[aad]["lastSeen"]):
                machines[aad] = m
    for device_id, raw in raw_devices.items():
        device = stored[device_id]
        for name in PLAIN_FIELDS:
            assert device[name] == raw.get(name), (device_id, name, device[name], raw.get(name))
        assert device["ownerType"] == raw.get("managedDeviceOwnerType"), device_id
        serial = (raw.get("serialNumber") or "").strip().upper() or None
        assert device["serialNumber"] == serial, device_id
        assert device["removedAt"] is None and device["firstSeenAt"] and device["lastSeenAt"]
        machine = machines.get((raw.get("azureADDeviceId") or "").lower())
        if machine is None:
            assert device["defender"] is None, device_id
        else:
            assert device["defender"] == {
                "machineId": machine["id"], "healthStatus": machine.get("healthStatus"),
                "riskScore": machine.get("riskScore"), "exposureLevel": machine.get("exposureLevel"),
                "onboardingStatus": machine.get("onboardingStatus"), "lastSeen": machine.get("lastSeen"),
            }, device_id


def assert_software_matches_truth(stored: dict[str, dict[str, Any]], tenant_truth: dict[str, Any]) -> None:
    raw_apps = {a["id"]: a for a in tenant_truth["detectedApps"]}
    assert set(stored) == set(raw_apps)
    for app_id, raw in raw_apps.items():
        for name in ("displayName", "version", "publisher", "platform", "sizeInByte", "deviceCount"):
            assert stored[app_id][name] == raw.get(name), (app_id, name)


async def wait_for(predicate: Any, seconds: float = 120.0, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(interval)
