"""Scenario files for the simulator (devstack/cloudsim/README.md: scenario file), written at run time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SYNC_APP = "bench-sync-app"
PARTNER_APP = "bench-partner-app"


def _tenant(key: str, devices: int, apps: int, *, coverage: float = 0.9, defender: bool = True) -> dict[str, Any]:
    return {"key": key, "displayName": key.title(), "defaultDomainName": f"{key}.onmicrosoft.com",
            "relationship": "gdap", "intuneLicensed": True, "defenderLicensed": defender,
            "devices": devices, "apps": apps, "defenderCoverage": coverage, "defenderOnly": 0,
            "consents": {SYNC_APP: "full"}}


def _spec(name: str, tenants: list[dict[str, Any]], singles: list[str]) -> dict[str, Any]:
    return {
        "name": name, "seed": 8, "options": {"limits": True, "exportJobPolls": 2},
        "hostIdentity": {"key": "memsync-host", "home": "msp"},
        "partner": {"key": "msp", "displayName": "Bench MSP", "defaultDomainName": "benchmsp.onmicrosoft.com"},
        "apps": [{"key": PARTNER_APP, "displayName": "Bench PC app", "home": "msp",
                  "secrets": [{"expiresInDays": 365}]},
                 {"key": SYNC_APP, "displayName": "Bench sync app", "home": "msp",
                  "secrets": [{"expiresInDays": 365}]}],
        "tenants": tenants,
        "registrations": [
            {"kind": "multiTenant", "displayName": "Bench MSP", "partner": "msp", "partnerApp": PARTNER_APP,
             "syncApp": SYNC_APP, "includeDefender": True},
            *({"kind": "singleTenant", "displayName": key, "tenant": key, "syncApp": SYNC_APP,
               "includeDefender": True} for key in singles),
        ],
    }


def single_tenant_spec(*, devices: int, apps: int, huge_devices: int, fanout_tenants: int) -> dict[str, Any]:
    """One MSP: `big` (the full-sync tenant), `huge` (the memory case), `small` (cold start) and
    `fanout_tenants` empty customers (the fan-out case)."""
    # 0.9 coverage of 10,000 devices is about 9,000 Defender machines.
    tenants = [_tenant("big", devices, apps, coverage=0.9), _tenant("huge", huge_devices, 3000),
               _tenant("small", 250, 60)]
    tenants += [_tenant(f"cust{i:04d}", 0, 0, defender=False) for i in range(fanout_tenants)]
    return _spec("bench-a", tenants, ["big", "huge", "small"])


def host_spec(*, tenants: int, devices: int) -> dict[str, Any]:
    """`tenants` customers of `devices` devices each, synced through the local Functions host."""
    return _spec("bench-b", [_tenant(f"t{i:03d}", devices, 60) for i in range(tenants)], [])


def write(spec: dict[str, Any], directory: Path) -> Path:
    path = directory / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    return path
