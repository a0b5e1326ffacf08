"""A small stand-in for memsync's HTTP API (docs/api.md) that also serves the console page.

The console's own browser tests run against it to pin what the page does with every shape the API may
answer (paging by nextLink, errors, hostile display names, a 401), independently of the real API; the
tests in test_console_stack.py then run the page against the real stack.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from devstack.stack import free_port
from functions.console import build_page

HOSTILE_NAME = '<img src=x onerror="document.body.dataset.pwned=1">Evil & Co'
NOW = datetime.now(UTC)
HOME_PRO_10 = "https://learn.microsoft.com/lifecycle/products/windows-10-home-and-pro"
HOME_PRO_11 = "https://learn.microsoft.com/lifecycle/products/windows-11-home-and-pro"
NO_DATE = {"status": "unknown", "endsOn": None, "release": None, "source": None}


def os_support_of(version: str, n: int) -> tuple[str, dict[str, Any]]:
    """A device's osVersion and `osSupport` as the API gives them (docs/api.md, Device): Windows 10 22H2 and
    Windows 11 23H2 ended; every sixth 23H2 device is on 25H2 instead, ending within 180 days (a date
    relative to now, so the page always has one), and another sixth on 26H1, supported."""
    if version == "10.0.19045.5011":
        return version, {"status": "ended", "endsOn": "2025-10-14", "release": "Windows 10 22H2",
                         "source": HOME_PRO_10}
    if version != "10.0.22631.4317":
        return version, dict(NO_DATE)
    if n % 6 == 2:
        return "10.0.26200.6899", {"status": "endingSoon", "endsOn": (NOW + timedelta(days=90)).date().isoformat(),
                                   "release": "Windows 11 25H2", "source": HOME_PRO_11}
    if n % 6 == 4:
        return "10.0.28000.1575", {"status": "supported", "endsOn": (NOW + timedelta(days=500)).date().isoformat(),
                                   "release": "Windows 11 26H1", "source": HOME_PRO_11}
    return version, {"status": "ended", "endsOn": "2025-11-11", "release": "Windows 11 23H2", "source": HOME_PRO_11}


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_devices(tenant_id: str, count: int, seed: int, defender_share: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    systems = [
        ("Windows", "10.0.22631.4317"),
        ("Windows", "10.0.19045.5011"),
        ("macOS", "14.6.1"),
        ("iOS", "18.1"),
        ("Android", "14"),
    ]
    devices = []
    for n in range(count):
        os_name, version = rng.choice(systems)
        in_defender = os_name == "Windows" and rng.random() < defender_share
        version, os_support = os_support_of(version, n)
        devices.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "tenantId": tenant_id,
                "deviceName": f"DEV-{seed}-{n:03d}",
                "serialNumber": f"SN{seed}{n:04d}",
                "manufacturer": "Dell Inc.",
                "model": "Latitude 5440",
                "operatingSystem": os_name,
                "osVersion": version,
                "osSupport": os_support,
                "complianceState": rng.choice(["compliant", "compliant", "noncompliant", "inGracePeriod"]),
                "managementAgent": "mdm",
                "ownerType": "company",
                "enrolledDateTime": iso(NOW - timedelta(days=rng.randrange(5, 1000))),
                "lastSyncDateTime": iso(NOW - timedelta(hours=rng.randrange(1, 100))),
                "userPrincipalName": f"user{n}@example.com",
                "azureADDeviceId": None,
                "defender": (
                    {
                        "machineId": f"m{n}",
                        "healthStatus": "Active",
                        "riskScore": rng.choice(["Low", "Medium", "High"]),
                        "exposureLevel": rng.choice(["Low", "Medium"]),
                        "onboardingStatus": "Onboarded",
                        "lastSeen": iso(NOW),
                    }
                    if in_defender
                    else None
                ),
                "removedAt": None,
                "autopilot": None,
                "entraDevice": None,
                "vulnerabilities": None,
            }
        )
    return devices


def make_software(tenant_id: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"sw{n}",
            "tenantId": tenant_id,
            "displayName": f"App {n:03d}",
            "version": f"1.{n}",
            "publisher": "Contoso",
            "platform": "windows",
            "sizeInByte": 0,
            "deviceCount": n + 1,
        }
        for n in range(count)
    ]


SEVERITIES = ("Critical", "High", "Medium", "Low")
HOSTILE_SOURCE = "javascript:document.body.dataset.pwned=1"
HOSTILE_PRODUCT = '<svg onload="document.body.dataset.pwned=1">Evil Reader'


def make_entra_devices(
    tenant_id: str, devices: list[dict[str, Any]], seed: int, unmanaged: int
) -> list[dict[str, Any]]:
    """One Entra device per Intune device (managed, joined by azureADDeviceId), then `unmanaged` more that
    Intune does not know; each Intune device gets its `entraDevice` summary."""
    rng = random.Random(seed * 7)
    out = []
    for n, device in enumerate(devices):
        device_id = str(uuid.UUID(int=rng.getrandbits(128)))
        entra = {
            "id": f"e{seed}-{n}",
            "trustType": "AzureAd" if device["operatingSystem"] == "Windows" else "Workplace",
            "isCompliant": device["complianceState"] == "compliant",
            "accountEnabled": n % 9 != 8,
            "approximateLastSignInDateTime": iso(NOW - timedelta(days=rng.randrange(0, 30))),
            "registrationDateTime": device["enrolledDateTime"],
        }
        device["azureADDeviceId"] = device_id
        device["entraDevice"] = entra
        out.append(_entra_row(tenant_id, entra, device_id, device["deviceName"], device["operatingSystem"], True))
    for n in range(unmanaged):
        entra = {
            "id": f"e{seed}-u{n}",
            "trustType": "Workplace",
            "isCompliant": None,
            "accountEnabled": True,
            "approximateLastSignInDateTime": iso(NOW - timedelta(days=rng.randrange(0, 90))),
            "registrationDateTime": iso(NOW - timedelta(days=rng.randrange(90, 900))),
        }
        device_id = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append(_entra_row(tenant_id, entra, device_id, f"BYOD-{seed}-{n:02d}", "Windows", False))
    return out


def _entra_row(
    tenant_id: str, entra: dict[str, Any], device_id: str, name: str, os_name: str, managed: bool
) -> dict[str, Any]:
    return {
        "id": entra["id"],
        "tenantId": tenant_id,
        "deviceId": device_id,
        "displayName": name,
        "operatingSystem": os_name,
        "operatingSystemVersion": "10.0.22631.4317" if os_name == "Windows" else "14",
        "manufacturer": "Dell Inc.",
        "model": "Latitude 5440",
        "trustType": entra["trustType"],
        "isManaged": managed,
        "isCompliant": entra["isCompliant"],
        "accountEnabled": entra["accountEnabled"],
        "approximateLastSignInDateTime": entra["approximateLastSignInDateTime"],
        "registrationDateTime": entra["registrationDateTime"],
    }


def make_autopilot(
    tenant_id: str, devices: list[dict[str, Any]], seed: int, unenrolled: int, group_tag: str
) -> list[dict[str, Any]]:
    """An Autopilot identity for every Windows device (the first matched by serial number, the others by
    managed device id), then `unenrolled` identities of hardware that never enrolled."""
    out = []
    windows = [d for d in devices if d["operatingSystem"] == "Windows"]
    for n, device in enumerate(windows):
        identity = {
            "id": f"ap{seed}-{n}",
            "groupTag": group_tag,
            "enrollmentState": "enrolled",
            "purchaseOrderIdentifier": f"PO-{seed}-{n // 10:02d}",
            "lastContactedDateTime": device["lastSyncDateTime"],
            "matchedBy": "serialNumber" if n == 0 else "managedDeviceId",
        }
        device["autopilot"] = identity
        out.append(_autopilot_row(tenant_id, identity, device["serialNumber"], device["id"]))
    for n in range(unenrolled):
        identity = {
            "id": f"ap{seed}-u{n}",
            "groupTag": group_tag,
            "enrollmentState": "notContacted" if n % 3 else "failed",
            "purchaseOrderIdentifier": f"PO-{seed}-new",
            "lastContactedDateTime": "0001-01-01T00:00:00Z",  # as Graph gives "never" (docs/api.md)
            "matchedBy": None,
        }
        out.append(_autopilot_row(tenant_id, identity, f"NEW{seed}{n:04d}", None))
    return out


def _autopilot_row(tenant_id: str, identity: dict[str, Any], serial: str, device_id: str | None) -> dict[str, Any]:
    return {
        "id": identity["id"],
        "tenantId": tenant_id,
        "serialNumber": serial,
        "serialPlaceholder": False,
        "manufacturer": "Dell Inc.",
        "model": "Latitude 5440",
        "groupTag": identity["groupTag"],
        "purchaseOrderIdentifier": identity["purchaseOrderIdentifier"],
        "enrollmentState": identity["enrollmentState"],
        "enrolled": device_id is not None,
        "lastContactedDateTime": identity["lastContactedDateTime"],
        "managedDeviceId": device_id,
        "azureActiveDirectoryDeviceId": None,
        "displayName": None,
        "userPrincipalName": None,
        "skuNumber": None,
        "systemFamily": None,
    }


def make_vulnerabilities(tenant_id: str, devices: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Defender vulnerabilities of the devices in Defender: the first such device has 30 (a list that
    pages at 25, one with a hostile product name), the others a few; each device gets its summary."""
    rng = random.Random(seed * 13)
    out: list[dict[str, Any]] = []
    in_defender = [d for d in devices if d["defender"]]
    for n, device in enumerate(in_defender):
        machine = device["defender"]["machineId"]
        count = 30 if n == 0 else rng.randrange(0, 5)
        rows = []
        for k in range(count):
            severity = SEVERITIES[0] if n == 0 and k < 2 else rng.choice(SEVERITIES)
            cve = f"CVE-2024-{1000 + seed * 100 + k}"
            rows.append(
                {
                    "id": f"{machine}-_-{cve}",
                    "tenantId": tenant_id,
                    "machineId": machine,
                    "cveId": cve,
                    "productName": HOSTILE_PRODUCT if n == 0 and k == 0 else f"product{k % 4}",
                    "productVendor": "contoso",
                    "productVersion": f"1.{k}",
                    "severity": severity,
                    "fixingKbId": str(5031000 + k) if k % 2 else None,
                }
            )
        # As the API sums them (shared/mapping/vulnerabilities.py): by severity, most severe CVEs first.
        rank = {name: i for i, name in enumerate(SEVERITIES)}
        worst = sorted(rows, key=lambda r: (rank[r["severity"]], r["cveId"]))
        device["vulnerabilities"] = (
            {
                **{name.lower(): sum(1 for r in rows if r["severity"] == name) for name in SEVERITIES},
                "total": len(rows),
                "topCves": [r["cveId"] for r in worst[:5]],
            }
            if rows
            else None
        )
        out += rows
    return out


def make_licences(tenant_id: str, seed: int, over: bool) -> list[dict[str, Any]]:
    """Three subscriptions; with `over`, Business Premium uses more seats than are enabled, more than the
    others leave free (so the tenant's sums are over too)."""
    skus = [("SPB", 40, 52 if over else 38), ("EMS", 25, 25 if over else 20), ("O365_BUSINESS_ESSENTIALS", 10, 3)]
    return [
        {
            "id": f"lic{seed}-{n}",
            "tenantId": tenant_id,
            "skuId": str(uuid.UUID(int=seed * 1000 + n)),
            "skuPartNumber": part,
            "capabilityStatus": "Enabled",
            "appliesTo": "User",
            "consumedUnits": consumed,
            "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 5 if n == 1 else 0, "lockedOut": 0},
        }
        for n, (part, enabled, consumed) in enumerate(skus)
    ]


@dataclass
class FakeTenant:
    tenant: dict[str, Any]
    devices: list[dict[str, Any]] = field(default_factory=list)
    software: list[dict[str, Any]] = field(default_factory=list)
    entra_devices: list[dict[str, Any]] = field(default_factory=list)
    autopilot_devices: list[dict[str, Any]] = field(default_factory=list)
    licences: list[dict[str, Any]] = field(default_factory=list)
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)


def os_facts(ft: FakeTenant) -> None:
    """The tenant's devices past and near their OS end of support (`counts.facts.devices`), as a sync
    since memsync judged OS support gives them."""
    statuses = [(d["osSupport"] or {}).get("status") for d in ft.devices]
    ft.tenant["counts"].setdefault("facts", {})["devices"] = {
        "osEnded": statuses.count("ended"), "osEndingSoon": statuses.count("endingSoon")}


def collect(ft: FakeTenant, *, facts: bool = True) -> None:
    """Set the tenant's counts (and, unless an old row, facts) for the optional entities it holds."""
    counts = ft.tenant["counts"]
    found: dict[str, dict[str, int]] = {}
    if ft.autopilot_devices:
        counts["autopilotDevices"] = len(ft.autopilot_devices)
        found["autopilotDevices"] = {"unenrolled": sum(1 for a in ft.autopilot_devices if not a["enrolled"])}
    if ft.entra_devices:
        counts["entraDevices"] = len(ft.entra_devices)
        found["entraDevices"] = {"unmanaged": sum(1 for e in ft.entra_devices if not e["isManaged"])}
    if ft.vulnerabilities:
        counts["vulnerabilities"] = len(ft.vulnerabilities)
        found["vulnerabilities"] = {
            name.lower(): sum(1 for v in ft.vulnerabilities if v["severity"] == name) for name in SEVERITIES
        }
    if ft.licences:
        counts["licences"] = len(ft.licences)
        found["licences"] = {
            "enabled": sum(lic["prepaidUnits"]["enabled"] for lic in ft.licences),
            "consumed": sum(lic["consumedUnits"] for lic in ft.licences),
            "overConsumed": sum(1 for lic in ft.licences if lic["consumedUnits"] > lic["prepaidUnits"]["enabled"]),
        }
    if facts:
        counts["facts"] = found


def contoso(ft: FakeTenant, seed: int) -> None:
    """Every optional entity collected: unmanaged Entra devices, unenrolled Autopilot hardware, critical
    vulnerabilities, licences within what is enabled."""
    tid = ft.tenant["tenantId"]
    ft.entra_devices = make_entra_devices(tid, ft.devices, seed, unmanaged=6)
    ft.autopilot_devices = make_autopilot(tid, ft.devices, seed, unenrolled=4, group_tag="Contoso-Std")
    ft.vulnerabilities = make_vulnerabilities(tid, ft.devices, seed)
    ft.licences = make_licences(tid, seed, over=False)
    collect(ft)


def northwind(ft: FakeTenant, seed: int) -> None:
    """Vulnerabilities not collected (the consent lacks the permission: a note on an ok tenant); every
    Autopilot identity enrolled (a zero, not a dash); more licences used than enabled."""
    tid = ft.tenant["tenantId"]
    ft.entra_devices = make_entra_devices(tid, ft.devices, seed, unmanaged=3)
    ft.autopilot_devices = make_autopilot(tid, ft.devices, seed, unenrolled=0, group_tag="NW")
    ft.licences = make_licences(tid, seed, over=True)
    collect(ft)
    ft.tenant["error"] = {
        "code": "permissionMissing",
        "message": "vulnerabilities not collected: the sync app lacks Vulnerability.Read.All in this tenant.",
        "action": "Grant the sync app the WindowsDefenderATP permission Vulnerability.Read.All and consent again.",
    }


def stale_corp(ft: FakeTenant, seed: int) -> None:
    """An old row: counts for Entra and Autopilot, from before the API gave facts, and devices from before
    memsync judged OS support."""
    tid = ft.tenant["tenantId"]
    for device in ft.devices:
        device["osSupport"] = None
    ft.entra_devices = make_entra_devices(tid, ft.devices, seed, unmanaged=1)
    ft.autopilot_devices = make_autopilot(tid, ft.devices, seed, unenrolled=1, group_tag="")
    collect(ft, facts=False)


OPTIONAL_ENTITIES: dict[str, Callable[[FakeTenant, int], None]] = {
    "Contoso Ltd": contoso,
    "Northwind Traders": northwind,
    "Stale Corp": stale_corp,
}


@dataclass
class FakeApi:
    key: str
    integrations: list[dict[str, Any]] = field(default_factory=list)
    tenants: dict[str, list[FakeTenant]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    sync_requests: list[tuple[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path_qs, key header
    # Changes asked: (method, path, JSON body or None, If-Match or None), as the page sent them.
    changes: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # integration id -> version behind its ETag
    audit: list[dict[str, Any]] = field(default_factory=list)  # newest first
    signin_polls: int = 0
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    # ---------------------------------------------------------------- data
    @classmethod
    def with_demo_data(cls, key: str) -> FakeApi:
        api = cls(key=key)
        integ_id = "11111111-1111-1111-1111-111111111111"
        api.integrations.append(
            {
                "id": integ_id,
                "kind": "multiTenant",
                "displayName": "Fabrikam IT Services",
                "status": "active",
                "partnerTenantId": "p",
                "partnerAppId": "a",
                "syncAppId": "b",
                "includeDefender": True,
                "tenantFilter": None,
                "createdAt": iso(NOW - timedelta(days=30)),
                "error": None,
                "secrets": [
                    {
                        "name": "partnerAppSecret",
                        "appId": "a",
                        "expiresOn": iso(NOW + timedelta(days=150)),
                        "expiresOnSource": "graph",
                    },
                    {
                        "name": "syncAppSecret",
                        "appId": "b",
                        "expiresOn": iso(NOW + timedelta(days=10, hours=1)),
                        "expiresOnSource": "graph",
                    },
                ],
            }
        )
        specs = [
            ("c0000000-0000-0000-0000-000000000001", "Contoso Ltd", "contoso.onmicrosoft.com", "ok", 48, 0.85, 1),
            (
                "c0000000-0000-0000-0000-000000000002",
                "Northwind Traders",
                "northwind.onmicrosoft.com",
                "ok",
                31,
                0.7,
                2,
            ),
            ("c0000000-0000-0000-0000-000000000003", HOSTILE_NAME, "evil.onmicrosoft.com", "ok", 3, 0.0, 3),
            ("c0000000-0000-0000-0000-000000000004", "Woodgrove Bank", "woodgrove.onmicrosoft.com", "error", 0, 0, 4),
            ("c0000000-0000-0000-0000-000000000005", "Litware Inc", "litware.onmicrosoft.com", "excluded", 0, 0, 5),
            ("c0000000-0000-0000-0000-000000000006", "Stale Corp", "stale.onmicrosoft.com", "ok", 4, 1.0, 6),
        ]
        tenants = []
        for tid, name, domain, status, n_devices, share, seed in specs:
            devices = make_devices(tid, n_devices, seed, share)
            software = make_software(tid, n_devices * 2 if n_devices else 0)
            stale = name == "Stale Corp"
            error = None
            if status == "error":
                error = {
                    "code": "appNotFoundInTenant",
                    "message": "The sync app is not consented in this tenant.",
                    "action": "Consent the sync app in this customer through Partner Center <b>now</b>.",
                }
            ft = FakeTenant(
                {
                    "tenantId": tid,
                    "displayName": name,
                    "defaultDomainName": domain,
                    "status": status,
                    "lastSyncStartedAt": iso(NOW - timedelta(hours=20 if stale else 1))
                    if status != "excluded"
                    else None,
                    "lastSyncFinishedAt": iso(NOW - timedelta(hours=20 if stale else 1))
                    if status != "excluded"
                    else None,
                    "lastSuccessAt": (iso(NOW - timedelta(hours=20 if stale else 1)) if status == "ok" else None),
                    "counts": {
                        "devices": len(devices),
                        "software": len(software),
                        "defenderMachines": sum(1 for d in devices if d["defender"]),
                    },
                    "error": error,
                },
                devices,
                software,
            )
            setup = OPTIONAL_ENTITIES.get(name)
            if setup:
                setup(ft, seed)
            if name == HOSTILE_NAME:
                # A release name and a source that must stay text: the page links Microsoft's https pages only.
                devices[0]["osSupport"] = {"status": "ended", "endsOn": "2025-10-14", "release": HOSTILE_NAME,
                                           "source": HOSTILE_SOURCE}
            if status == "ok" and not stale:
                os_facts(ft)
            tenants.append(ft)
        api.tenants[integ_id] = tenants
        api.integrations[0]["collect"] = list(COLLECTABLE)
        api.integrations[0]["tenantFilter"] = {"include": [], "exclude": ["c0000000-0000-0000-0000-000000000005"]}
        for n in range(30):  # more than a page of 25
            api.audit.append(audit_record(
                "integration.sync" if n % 3 else "integration.change", integ_id, NOW - timedelta(hours=n),
                status=202 if n % 3 else (412 if n == 3 else 200), fields=["tenantIds"] if n % 3 else ["displayName"]))
        api.audit.append(audit_record("alerts.check", None, NOW - timedelta(days=3), status=202, fields=[]))
        api.alerts.append(
            {
                "id": "al1",
                "integrationId": integ_id,
                "kind": "secretExpiring",
                "appId": "b",
                "expiresOn": iso(NOW + timedelta(days=10)),
                "daysLeft": 10,
                "status": "open",
                "raisedAt": iso(NOW),
                "message": "The sync app's secret expires in 10 days.",
                "action": "Add a new client secret to the sync app in Entra ID and PUT it to "
                "/api/integrations/{id}/secrets.",
            }
        )
        return api

    # ---------------------------------------------------------------- HTTP
    def app(self) -> web.Application:
        page = build_page()
        app = web.Application()

        async def console(request: web.Request) -> web.Response:
            return web.Response(body=page.html, headers=page.headers)

        app.router.add_get("/api/console", console)
        app.router.add_route("*", "/api/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        presented = request.headers.get("x-functions-key") or request.query.get("code")
        self.requests.append((request.method, request.path_qs, request.headers.get("x-functions-key")))
        if presented != self.key:
            return web.Response(status=401)
        parts = [p for p in request.path.split("/") if p][1:]  # drop "api"
        if request.method in ("POST", "PATCH", "PUT", "DELETE") and not (len(parts) == 3 and parts[2] == "sync"):
            body = await request.json() if request.can_read_body else None
            self.changes.append((request.method, request.path, body, request.headers.get("if-match")))
            answer = self.change(request, parts, body)
            self.record(request, parts, answer)
            return answer
        if parts == ["integrations"]:
            return self.page(request, self.integrations)
        if len(parts) == 2 and parts[0] == "integrations":
            integ = self.integration(parts[1])
            if integ is None:
                return self.problem(404, "Not found")
            return web.json_response(integ, headers={"ETag": self.etag(parts[1])})
        if len(parts) == 3 and parts[0] == "integrations" and parts[2] == "partner-signin":
            self.signin_polls += 1
            if self.signin_polls < 2:
                return web.json_response(self.signin_pending(parts[1]))
            return web.json_response({"integrationId": parts[1], "status": "done", "autoConsent": False,
                                      "signedInAt": iso(datetime.now(UTC)), "signedInAs": "admin@fabrikam.example"})
        if parts == ["audit"]:
            wanted_id = request.query.get("integrationId")
            records = [a for a in self.audit if not wanted_id or a["integrationId"] == wanted_id]
            if request.query.get("format") == "csv":
                rows = ["id,at,action,outcome"] + [f"{a['id']},{a['at']},{a['action']},{a['outcome']}" for a in records]
                return web.Response(text="\n".join(rows), content_type="text/csv")
            return self.page(request, records)
        if parts == ["alerts"]:
            status = request.query.get("status")
            return self.page(request, [a for a in self.alerts if not status or a["status"] == status])
        if len(parts) >= 3 and parts[0] == "integrations" and parts[2] == "sync" and request.method == "POST":
            body = await request.json() if request.can_read_body else None
            self.sync_requests.append((parts[1], body))
            wanted = (body or {}).get("tenantIds")
            for ft in self.tenants.get(parts[1], []):
                if ft.tenant["status"] != "excluded" and (not wanted or ft.tenant["tenantId"] in wanted):
                    self.start_sync(ft)
            return web.json_response({"queued": len(wanted or [])}, status=202)
        if len(parts) == 3 and parts[0] == "integrations" and parts[2] == "tenants":
            return self.page(request, [ft.tenant for ft in self.tenants.get(parts[1], [])])
        if len(parts) >= 5 and parts[0] == "integrations" and parts[2] == "tenants":
            ft = next((t for t in self.tenants.get(parts[1], []) if t.tenant["tenantId"] == parts[3]), None)
            if ft is None:
                return self.problem(404, "Not found")
            return self.tenant_route(request, ft, parts[4:])
        return self.problem(404, "Not found")

    # ---------------------------------------------------------------- changes (docs/api.md, Integrations)
    def integration(self, integ_id: str) -> dict[str, Any] | None:
        return next((i for i in self.integrations if i["id"] == integ_id), None)

    def etag(self, integ_id: str) -> str:
        return f'W/"{integ_id[:8]}-{self.versions.get(integ_id, 1)}"'

    def touch(self, integ_id: str, **change: Any) -> None:
        """Someone else changes the integration: its ETag moves on."""
        self.integration(integ_id).update(change)  # type: ignore[union-attr]
        self.versions[integ_id] = self.versions.get(integ_id, 1) + 1

    @staticmethod
    def signin_pending(integ_id: str) -> dict[str, Any]:
        return {"integrationId": integ_id, "status": "pending", "userCode": "FAKE-CODE-42",
                "verificationUri": "https://microsoft.com/devicelogin", "interval": 1,
                "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin.",
                "expiresAt": iso(datetime.now(UTC) + timedelta(minutes=15))}

    def change(self, request: web.Request, parts: list[str], body: Any) -> web.Response:
        if parts == ["integrations"] and request.method == "POST":
            return self.register(body or {})
        if parts == ["alerts", "check"]:
            return web.json_response({"secretsChecked": 2, "alertsRaised": 1, "alertsResolved": 0, "failures": [],
                                      "delivery": {"configured": False, "delivered": 0, "failed": 0, "errors": []}},
                                     status=202)
        if len(parts) < 2 or parts[0] != "integrations" or self.integration(parts[1]) is None:
            return self.problem(404, "Not found")
        integ_id, rest = parts[1], parts[2:]
        integ = self.integration(integ_id)
        assert integ is not None
        if not rest and request.method == "PATCH":
            return self.patch(request, integ, body or {})
        if not rest and request.method == "DELETE":
            integ.update(status="disabled", secrets=[])
            self.versions[integ_id] = self.versions.get(integ_id, 1) + 1
            return web.Response(status=204)
        if rest == ["secrets"] and request.method == "PUT":
            wrong = [f for f in ("syncAppSecret", "partnerAppSecret") if (body or {}).get(f) == "wrong-secret"]
            if wrong:
                return self.problem(422, "A credential was refused", errors=[{
                    "field": f, "code": "invalidSecret",
                    "message": f"{f} is not valid for the app (AADSTS7000215).",
                    "action": "Send the secret's Value from Certificates & secrets, not its Secret ID.",
                } for f in wrong])
            for secret in integ["secrets"]:
                if secret["name"] in (body or {}):
                    secret.update(expiresOn=iso(NOW + timedelta(days=180)), expiresOnSource="graph")
            self.versions[integ_id] = self.versions.get(integ_id, 1) + 1
            return web.json_response(integ, headers={"ETag": self.etag(integ_id)})
        if rest == ["partner-signin"]:
            self.signin_polls = 0
            return web.json_response(self.signin_pending(integ_id), status=202)
        if rest == ["consent"]:
            tried = [ft.tenant["tenantId"] for ft in self.tenants.get(integ_id, []) if ft.tenant["status"] == "error"]
            value = [{"tenantId": t, "status": "consented", "queued": True, "access": None, "error": None}
                     for t in tried]
            return web.json_response({"value": value, "consented": len(value), "failed": 0})
        if len(rest) == 3 and rest[0] == "tenants" and rest[2] == "consent":
            return web.json_response({"tenantId": rest[1], "status": "consented", "queued": True, "access": None,
                                      "error": None})
        return self.problem(404, "Not found")

    def patch(self, request: web.Request, integ: dict[str, Any], body: dict[str, Any]) -> web.Response:
        if_match = request.headers.get("if-match")
        if if_match and if_match not in ("*", self.etag(integ["id"])):
            return self.problem(412, "The integration changed meanwhile", errors=[{
                "field": "If-Match", "code": "changedMeanwhile",
                "message": "The integration changed since it was read.",
                "action": "GET it again and send the change with its new ETag."}])
        errors = []
        if "displayName" in body and not str(body["displayName"]).strip():
            errors.append({"field": "displayName", "code": "blank", "message": "displayName must not be blank.",
                           "action": "Send a name of 1-256 characters."})
        defender = body.get("includeDefender", integ["includeDefender"])
        if "vulnerabilities" in (body.get("collect") or []) and defender is False:
            errors.append({"field": "collect", "code": "conflictingOptions",
                           "message": "vulnerabilities are read from Defender, which includeDefender turns off.",
                           "action": "Include Defender, or do not collect vulnerabilities."})
        for name in ("include", "exclude"):
            for n, tid in enumerate((body.get("tenantFilter") or {}).get(name, [])):
                if not is_guid(tid):
                    errors.append({"field": f"tenantFilter.{name}[{n}]", "code": "invalidGuid",
                                   "message": f"tenantFilter.{name}[{n}] must be a GUID.",
                                   "action": "Send the customer's tenant ID."})
        if errors:
            return self.problem(400, "The request is not valid", errors=errors)
        integ.update(body)
        self.versions[integ["id"]] = self.versions.get(integ["id"], 1) + 1
        return web.json_response(integ, headers={"ETag": self.etag(integ["id"])})

    def register(self, body: dict[str, Any]) -> web.Response:
        kind = body.get("kind", "multiTenant")
        ids = ["partnerTenantId", "partnerAppId", "syncAppId"] if kind == "multiTenant" else ["tenantId", "syncAppId"]
        secrets = ["partnerAppSecret", "syncAppSecret"] if kind == "multiTenant" else ["syncAppSecret"]
        errors = []
        for name in ids + secrets:
            if not str(body.get(name) or "").strip():
                errors.append({"field": name, "code": "required", "message": f"{name} is required.",
                               "action": f"Send {name}."})
            elif name in ids and not is_guid(body[name]):
                errors.append({"field": name, "code": "invalidGuid", "message": f"{name} must be a GUID.",
                               "action": "Copy the ID from Azure portal > Microsoft Entra ID > App registrations."})
        if errors:
            return self.problem(400, "The request is not valid", errors=errors)
        integ_id = str(uuid.uuid4())
        integ = {"id": integ_id, "kind": kind, "status": "active",
                 "displayName": body.get("displayName") or f"Tenant {body.get('tenantId')}",
                 **{name: body[name] for name in ids},
                 "includeDefender": body.get("includeDefender", True), "collect": body.get("collect", COLLECTABLE),
                 "tenantFilter": body.get("tenantFilter") or {"include": [], "exclude": []},
                 "secrets": [{"name": name, "appId": body["syncAppId"], "expiresOn": iso(NOW + timedelta(days=180)),
                              "expiresOnSource": "assumed"} for name in secrets],
                 "createdAt": iso(datetime.now(UTC)), "error": None}
        self.integrations.append(integ)
        self.tenants[integ_id] = []
        warnings = [] if kind == "multiTenant" else [{
            "field": "syncAppId", "code": "permissionMissing",
            "message": "The sync app lacks DeviceManagementServiceConfig.Read.All: "
                       "Autopilot identities go uncollected.",
            "action": "Add the Graph application permission DeviceManagementServiceConfig.Read.All and grant consent."}]
        return web.json_response({**integ, "warnings": warnings}, status=201,
                                 headers={"Location": f"/api/integrations/{integ_id}", "ETag": self.etag(integ_id)})

    def record(self, request: web.Request, parts: list[str], answer: web.Response) -> None:
        action = {"POST": "integration.register", "PATCH": "integration.change", "DELETE": "integration.delete",
                  "PUT": "integration.rotateSecrets"}[request.method]
        if parts[-1] == "consent":
            action = "tenant.consent" if "tenants" in parts else "integration.consent"
        elif parts[-1] == "partner-signin":
            action = "integration.partnerSignin"
        elif parts == ["alerts", "check"]:
            action = "alerts.check"
        self.audit.insert(0, audit_record(action, parts[1] if len(parts) > 1 and parts[0] == "integrations" else None,
                                          datetime.now(UTC), status=answer.status, fields=[]))

    def tenant_route(self, request: web.Request, ft: FakeTenant, rest: list[str]) -> web.Response:
        """GET .../tenants/{tenantId}/<rest>: the tenant's lists and a device's vulnerabilities."""
        q = request.query
        items: list[dict[str, Any]]
        if rest == ["devices"]:
            items = ft.devices
        elif rest == ["software"]:
            items = ft.software
        elif rest == ["entraDevices"]:
            items = [e for e in ft.entra_devices if wanted(q.get("managed"), e["isManaged"])]
        elif rest == ["autopilotDevices"]:
            items = [a for a in ft.autopilot_devices if wanted(q.get("enrolled"), a["enrolled"])]
        elif rest == ["licences"]:
            items = ft.licences
        elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "vulnerabilities":
            device = next((d for d in ft.devices if d["id"] == rest[1]), None)
            if device is None:
                return self.problem(404, "Not found")
            machine = (device["defender"] or {}).get("machineId")
            items = [v for v in ft.vulnerabilities if machine and v["machineId"] == machine]
        else:
            return self.problem(404, "Not found")
        search = q.get("search", "").lower()
        if search:
            names = ("deviceName", "displayName", "serialNumber", "skuPartNumber")
            items = [i for i in items if any(search in (i.get(n) or "").lower() for n in names)]
        if q.get("format") == "csv" or (q.get("format") != "json" and "text/csv" in request.headers.get("accept", "")):
            name = next(n for n in ("deviceName", "displayName", "serialNumber", "skuPartNumber", "cveId", "id")
                        if not items or n in items[0])
            rows = ["id,name"] + [f"{i['id']},{i.get(name)}" for i in items]
            return web.Response(text="\n".join(rows), content_type="text/csv")
        return self.page(request, items)

    def start_sync(self, ft: FakeTenant) -> None:
        ft.tenant.update(status="syncing", lastSyncStartedAt=iso(datetime.now(UTC)))

        def finish() -> None:
            done = iso(datetime.now(UTC))
            ft.tenant.update(
                status="ok" if ft.tenant["error"] is None else "error",
                lastSyncFinishedAt=done,
                lastSuccessAt=done if ft.tenant["error"] is None else None,
            )

        asyncio.get_running_loop().call_later(1.5, finish)

    def page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        top = int(request.query.get("top", "100"))
        if not 1 <= top <= 1000:
            return self.problem(400, "top must be 1-1000")
        start = int(request.query.get("skip", "0"))
        body: dict[str, Any] = {"value": items[start : start + top]}
        if start + top < len(items):
            query = {k: v for k, v in request.query.items() if k != "skip"}
            query["skip"] = str(start + top)
            # Absolute, and under "localhost" rather than the page's 127.0.0.1: the page must keep only
            # the path and query (connect-src 'self').
            body["nextLink"] = str(request.url.with_host("localhost").with_query(query))
        return web.json_response(body)

    @staticmethod
    def problem(status: int, title: str, errors: list[dict[str, Any]] | None = None) -> web.Response:
        return web.Response(
            status=status,
            content_type="application/problem+json",
            text=json.dumps({"type": "about:blank", "title": title, "status": status,
                             "detail": f"{len(errors)} problem(s); see errors[]." if errors else title,
                             "errors": errors or []}),
        )


COLLECTABLE = ("autopilotDevices", "entraDevices", "vulnerabilities", "licences")


def is_guid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return len(str(value)) == 36


def audit_record(action: str, integ_id: str | None, at: datetime, *, status: int, fields: list[str]) -> dict[str, Any]:
    """One audit record as GET /api/audit gives it (docs/api.md, Audit)."""
    return {"id": str(uuid.uuid4()), "at": iso(at), "action": action,
            "outcome": "done" if status < 400 else "refused" if status < 500 else "failed", "status": status,
            "actor": {"kind": "functionKey", "name": "function key", "id": None},
            "integrationId": integ_id, "tenantId": None, "fields": fields,
            "code": "changedMeanwhile" if status == 412 else None, "address": "203.0.113.7",
            "method": "PATCH" if action == "integration.change" else "POST", "route": "/api/integrations"}


def wanted(flag: str | None, value: bool) -> bool:
    """`?managed=false` / `?enrolled=true`: absent keeps every row."""
    return flag is None or flag == str(value).lower()


@contextmanager
def serve(api: FakeApi) -> Iterator[FakeApi]:
    """Run the fake API on a free loopback port in a background thread."""
    api.port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner = web.AppRunner(api.app(), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", api.port).start()
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(10):
        raise TimeoutError("the fake API did not start")
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
