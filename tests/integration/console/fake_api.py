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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from devstack.stack import free_port
from functions.console import build_page

HOSTILE_NAME = '<img src=x onerror="document.body.dataset.pwned=1">Evil & Co'
NOW = datetime.now(UTC)


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


@dataclass
class FakeTenant:
    tenant: dict[str, Any]
    devices: list[dict[str, Any]] = field(default_factory=list)
    software: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeApi:
    key: str
    integrations: list[dict[str, Any]] = field(default_factory=list)
    tenants: dict[str, list[FakeTenant]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    sync_requests: list[tuple[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path_qs, key header
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
            tenants.append(
                FakeTenant(
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
            )
        api.tenants[integ_id] = tenants
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
        if parts == ["integrations"]:
            return self.page(request, self.integrations)
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
        if (
            len(parts) == 5
            and parts[0] == "integrations"
            and parts[2] == "tenants"
            and parts[4] in ("devices", "software")
        ):
            ft = next((t for t in self.tenants.get(parts[1], []) if t.tenant["tenantId"] == parts[3]), None)
            if ft is None:
                return self.problem(404, "Not found")
            items = ft.devices if parts[4] == "devices" else ft.software
            search = request.query.get("search", "").lower()
            if search:
                items = [i for i in items if search in (i.get("deviceName") or i.get("displayName") or "").lower()]
            if request.query.get("format") == "csv":
                rows = ["id,name"] + [f"{i['id']},{i.get('deviceName') or i.get('displayName')}" for i in items]
                return web.Response(text="\n".join(rows), content_type="text/csv")
            return self.page(request, items)
        return self.problem(404, "Not found")

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
    def problem(status: int, title: str) -> web.Response:
        return web.Response(
            status=status,
            content_type="application/problem+json",
            text=json.dumps({"type": "about:blank", "title": title, "status": status, "detail": title, "errors": []}),
        )


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
