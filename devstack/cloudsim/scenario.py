"""Scenarios: built-in specs (demo, edge, large) or a JSON file, built into a ``Simulation``.

A spec names things by ``key``; GUIDs derive from (seed, key) with uuid5, so the same spec gives
the same ids, secrets and data on every run. The file format is documented in README.md.
"""

from __future__ import annotations

import copy
import functools
import gc
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .faults import FaultRule
from .generate import (
    default_skus,
    generate_autopilot,
    generate_detected_apps,
    generate_devices,
    generate_entra_devices,
    generate_machines,
    generate_subscribed_skus,
    generate_vulnerabilities,
    machine_facts,
)
from .model import (
    DEFENDER,
    GRAPH,
    PARTNER_CENTER,
    RESOURCE_SHORT_NAMES,
    ROLE_IDS,
    AppRegistration,
    AppSecret,
    RecordList,
    TenantState,
    canonical_resource,
)
from .timeutil import iso_seconds, parse_datetime, utcnow

NAMESPACE = uuid.UUID("5b0c3e2a-7d1f-4c55-9a7e-0c1d5e6f7a80")

SYNC_ROLES_FULL: dict[str, list[str]] = {
    "graph": [
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementApps.Read.All",
        "Directory.Read.All",  # also grants Device.Read.All (/devices)
        "DeviceManagementServiceConfig.Read.All",  # windowsAutopilotDeviceIdentities
    ],
    "defender": [
        "Machine.Read.All",
        "Vulnerability.Read.All",  # /api/vulnerabilities/machinesVulnerabilities
    ],
}
PARTNER_APP_ROLES: dict[str, list[str]] = {
    "graph": ["Directory.Read.All", "Application.Read.All", "DelegatedAdminRelationship.Read.All"],
    "partnercenter": [],
}

# The optional reads a sync makes beside devices, apps and machines, each as the roles any one of which allows
# it (the APIs' permission tables): Autopilot identities, Entra ID devices and subscribed SKUs on Graph, and
# the machines' vulnerabilities on Defender. A tenant whose sync app lacks one still syncs, with a
# permissionMissing note that comes after the Defender one.
OPTIONAL_READS: dict[str, tuple[tuple[str, ...], ...]] = {
    GRAPH: (
        ("DeviceManagementServiceConfig.Read.All", "DeviceManagementServiceConfig.ReadWrite.All"),
        ("Device.Read.All", "Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
        ("LicenseAssignment.Read.All", "Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All",
         "Directory.ReadWrite.All"),
    ),
    DEFENDER: (("Vulnerability.Read.All",),),
}

# Token errors a tenant can be told to answer with, and what a person has to do about each.
EXPECTED_BY_TOKEN_ERROR = {
    65001: "consentMissing",
    90094: "consentMissing",
    90099: "consentMissing",
    700016: "appNotFoundInTenant",
    90002: "tenantNotFound",
    7000112: "appNotFoundInTenant",
    500011: "consentMissing",
}


def stable_guid(seed: int, *parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([str(seed), *parts])))


def secret_value(rng: random.Random) -> str:
    """Shaped like Entra's generated client secrets: 3 chars, ``8Q~``, 34 chars (40 in all)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.~"
    head = "".join(rng.choices(alphabet[:62], k=3))
    return head + "8Q~" + "".join(rng.choices(alphabet, k=34))


def _tenant(key: str, name: str, domain: str, relationship: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "displayName": name, "defaultDomainName": domain, "relationship": relationship, **extra}


def _builtin_demo() -> dict[str, Any]:
    return {
        "name": "demo",
        "seed": 1,
        "options": {"limits": True},
        "hostIdentity": {"key": "memsync-host", "displayName": "memsync (Fabrikam host identity)", "home": "fabrikam"},
        "partner": _tenant("fabrikam", "Fabrikam IT Services", "fabrikamit.onmicrosoft.com", "partner"),
        "apps": [
            {
                "key": "partner-app",
                "displayName": "memsync Partner Center",
                "home": "fabrikam",
                "secrets": [{"expiresInDays": 150, "startedDaysAgo": 215}],
            },
            {
                "key": "sync-app",
                "displayName": "memsync Sync",
                "home": "fabrikam",
                "secrets": [{"expiresInDays": 10, "startedDaysAgo": 355}],
            },
        ],
        "tenants": [
            _tenant(
                "contoso",
                "Contoso Ltd",
                "contoso.onmicrosoft.com",
                "both",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=48,
                apps=32,
                defenderCoverage=0.85,
                defenderOnly=3,
                consents={"sync-app": "full"},
                subscribedSkus=[
                    {"sku": "SPE_E3", "enabled": 50, "consumed": 46},
                    {"sku": "WIN_DEF_ATP", "enabled": 50, "consumed": 41},
                    {"sku": "FLOW_FREE", "enabled": 10_000, "consumed": 9},
                    {"sku": "POWER_BI_STANDARD", "enabled": 10_000, "consumed": 14},
                ],
            ),
            _tenant(
                "northwind",
                "Northwind Traders",
                "northwindtraders.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=31,
                apps=22,
                defenderCoverage=0.7,
                defenderOnly=2,
                # Consented before vulnerabilities were read: Machine.Read.All but not Vulnerability.Read.All,
                # so /api/machines answers and /api/vulnerabilities/machinesVulnerabilities is a 403.
                consents={"sync-app": {"graph": SYNC_ROLES_FULL["graph"], "defender": ["Machine.Read.All"]}},
                # Three more people than Business Premium licences: consumed above enabled.
                subscribedSkus=[
                    {"sku": "SPB", "enabled": 30, "consumed": 33},
                    {"sku": "WIN_DEF_ATP", "enabled": 25, "consumed": 25},
                    {"sku": "FLOW_FREE", "enabled": 10_000, "consumed": 4},
                ],
            ),
            # Consented before Autopilot and Entra ID devices were read: neither
            # DeviceManagementServiceConfig.Read.All nor Device.Read.All (nor Directory.Read.All, which
            # implies it; Organization.Read.All reads /organization), so windowsAutopilotDeviceIdentities
            # and /devices answer 403 while devices and apps sync.
            _tenant(
                "tailspin",
                "Tailspin Toys",
                "tailspintoys.onmicrosoft.com",
                "dap",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=22,
                apps=14,
                consents={
                    "sync-app": {
                        "graph": [
                            "DeviceManagementManagedDevices.Read.All",
                            "DeviceManagementApps.Read.All",
                            "Organization.Read.All",
                        ],
                        "defender": ["Machine.Read.All"],
                    }
                },
                # Its Defender subscription lapsed (hence no Defender): the SKU stays, Suspended.
                subscribedSkus=[
                    {"sku": "O365_BUSINESS_PREMIUM", "enabled": 25, "consumed": 22},
                    {"sku": "INTUNE_A", "enabled": 25, "consumed": 20},
                    {"sku": "WIN_DEF_ATP", "suspended": 25, "consumed": 18},
                ],
            ),
            # The one problem a person can fix: the sync app was never consented here. Consent it
            # through Partner Center (POST /v1/customers/{tenantId}/applicationconsents).
            _tenant(
                "woodgrove",
                "Woodgrove Bank",
                "woodgrovebank.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=57,
                apps=38,
                defenderCoverage=0.9,
                defenderOnly=4,
                consents={},
                # EMS expired last month and is in its grace period: Warning, every unit in `warning`.
                subscribedSkus=[
                    {"sku": "ENTERPRISEPACK", "enabled": 60, "consumed": 58},
                    {"sku": "EMS", "warning": 60, "consumed": 55},
                    {"sku": "WIN_DEF_ATP", "enabled": 60, "consumed": 52},
                    {"sku": "POWER_BI_STANDARD", "enabled": 10_000, "consumed": 31},
                    {"sku": "FLOW_FREE", "enabled": 10_000, "consumed": 12},
                ],
            ),
        ],
        "registrations": [
            {
                "kind": "multiTenant",
                "displayName": "Fabrikam IT Services",
                "partner": "fabrikam",
                "partnerApp": "partner-app",
                "syncApp": "sync-app",
                "includeDefender": True,
            }
        ],
    }


def _builtin_edge() -> dict[str, Any]:
    full = {"sync-app": "full"}
    return {
        "name": "edge",
        "seed": 2,
        "options": {"limits": True},
        "hostIdentity": {"key": "memsync-host", "displayName": "memsync host", "home": "adatum"},
        "partner": _tenant("adatum", "Adatum Managed Services", "adatumms.onmicrosoft.com", "partner"),
        "apps": [
            {
                "key": "partner-app",
                "displayName": "Adatum PC access",
                "home": "adatum",
                "secrets": [{"expiresInDays": 300}],
            },
            {"key": "sync-app", "displayName": "Adatum memsync", "home": "adatum", "secrets": [{"expiresInDays": 200}]},
            {
                "key": "expired-app",
                "displayName": "Lamna memsync",
                "home": "lamna",
                "secrets": [{"expiresInDays": -3, "startedDaysAgo": 368}],
            },
            {"key": "wrong-app", "displayName": "Trey memsync", "home": "trey", "secrets": [{"expiresInDays": 90}]},
        ],
        "tenants": [
            _tenant(
                "healthy-gdap",
                "Alpine Ski House",
                "alpineskihouse.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=14,
                apps=10,
                defenderCoverage=0.8,
                defenderOnly=1,
                consents=full,
                vulnerableMachines=0.5,
                vulnerabilityOddities=True,
                # Odd but legal: a free SKU nobody uses, a company-wide SKU, a SKU whose units are all zero
                # but still Enabled (a trial being provisioned), and a Deleted one.
                subscribedSkus=[
                    {"sku": "SPE_E5", "enabled": 20, "consumed": 14},
                    {"sku": "FLOW_FREE", "enabled": 10_000, "consumed": 0},
                    {"sku": "WINDOWS_STORE", "enabled": 1, "consumed": 0},
                    {"sku": "POWER_BI_STANDARD", "consumed": 0, "status": "Enabled"},
                    {"sku": "EMS", "consumed": 0},
                ],
            ),
            _tenant(
                "healthy-dap",
                "Coho Winery",
                "cohowinery.onmicrosoft.com",
                "dap",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=9,
                apps=8,
                defenderCoverage=0.6,
                consents=full,
            ),
            _tenant(
                "consent-missing",
                "Fourth Coffee",
                "fourthcoffee.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=6,
                apps=5,
                consents=full,
                forcedTokenError={"code": 65001},
            ),
            _tenant(
                "app-missing",
                "Humongous Insurance",
                "humongousinsurance.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=7,
                apps=5,
                consents={},
            ),
            _tenant(
                "gdap-unauthorized",
                "Wide World Importers",
                "wideworldimporters.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=5,
                apps=4,
                consents=full,
                forcedTokenError={"code": 90099},
            ),
            _tenant(
                "tenant-gone",
                "Proseware (closed)",
                "proseware.onmicrosoft.com",
                "dap",
                intuneLicensed=False,
                defenderLicensed=False,
                devices=0,
                apps=0,
                consents=full,
                exists=False,
            ),
            _tenant(
                "permission-missing",
                "Litware Inc",
                "litwareinc.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=8,
                apps=6,
                consents={
                    "sync-app": {
                        "graph": ["DeviceManagementApps.Read.All", "Directory.Read.All"],
                        "defender": ["Machine.Read.All"],
                    }
                },
            ),
            _tenant(
                "no-intune",
                "Margie's Travel",
                "margiestravel.onmicrosoft.com",
                "gdap",
                intuneLicensed=False,
                defenderLicensed=False,
                devices=0,
                apps=0,
                consents=full,
                # Intune was cancelled long ago: its SKU is Deleted.
                subscribedSkus=[
                    {"sku": "O365_BUSINESS_PREMIUM", "enabled": 12, "consumed": 12},
                    {"sku": "INTUNE_A", "consumed": 0},
                ],
            ),
            _tenant(
                "no-defender",
                "Blue Yonder Airlines",
                "blueyonderairlines.onmicrosoft.com",
                "both",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=11,
                apps=7,
                consents=full,
                # Defender cancelled: LockedOut, its units locked and still assigned.
                subscribedSkus=[
                    {"sku": "SPB", "enabled": 15, "consumed": 11},
                    {"sku": "WIN_DEF_ATP", "lockedOut": 15, "consumed": 11},
                ],
            ),
            _tenant(
                "throttled",
                "Tailwind Traders",
                "tailwindtraders.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=10,
                apps=6,
                defenderCoverage=0.5,
                consents=full,
                faults=[{"service": "graph", "kind": "throttle", "retryAfter": "1", "rate": 1.0}],
            ),
            _tenant(
                "unreachable",
                "Wingtip Toys",
                "wingtiptoys.onmicrosoft.com",
                "gdap",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=10,
                apps=6,
                defenderCoverage=0.5,
                consents=full,
                faults=[
                    {"service": "graph", "kind": "reset", "rate": 1.0},
                    {"service": "defender", "kind": "reset", "rate": 1.0},
                ],
            ),
            _tenant(
                "indirect",
                "VanArsdel Ltd",
                "vanarsdel.onmicrosoft.com",
                "indirect",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=12,
                apps=8,
                defenderCoverage=0.9,
                defenderOnly=2,
                consents=full,
            ),
            _tenant(
                "lamna",
                "Lamna Healthcare",
                "lamnahealthcare.onmicrosoft.com",
                "none",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=6,
                apps=4,
                consents={"expired-app": "full"},
                expected={"status": "error", "errorCode": "secretExpired"},
            ),
            _tenant(
                "trey",
                "Trey Research",
                "treyresearch.onmicrosoft.com",
                "none",
                intuneLicensed=True,
                defenderLicensed=False,
                devices=6,
                apps=4,
                consents={"wrong-app": "full"},
                expected={"status": "error", "errorCode": "invalidSecret"},
            ),
        ],
        "registrations": [
            {
                "kind": "multiTenant",
                "displayName": "Adatum Managed Services",
                "partner": "adatum",
                "partnerApp": "partner-app",
                "syncApp": "sync-app",
                "includeDefender": True,
            },
            {
                "kind": "singleTenant",
                "displayName": "Lamna Healthcare (expired secret)",
                "tenant": "lamna",
                "syncApp": "expired-app",
                "includeDefender": False,
            },
            {
                "kind": "singleTenant",
                "displayName": "Trey Research (wrong secret)",
                "tenant": "trey",
                "syncApp": "wrong-app",
                "includeDefender": False,
                "wrongSecret": True,
            },
        ],
    }


def _builtin_large() -> dict[str, Any]:
    return {
        "name": "large",
        "seed": 3,
        "options": {"limits": True},
        "hostIdentity": {"key": "memsync-host", "displayName": "memsync host", "home": "relecloud-msp"},
        "partner": _tenant("relecloud-msp", "Relecloud MSP", "relecloudmsp.onmicrosoft.com", "partner"),
        "apps": [
            {
                "key": "partner-app",
                "displayName": "Relecloud PC access",
                "home": "relecloud-msp",
                "secrets": [{"expiresInDays": 365}],
            },
            {
                "key": "large-app",
                "displayName": "Relecloud memsync",
                "home": "relecloud",
                "secrets": [{"expiresInDays": 365}],
            },
        ],
        "tenants": [
            _tenant(
                "relecloud",
                "Relecloud",
                "relecloud.onmicrosoft.com",
                "none",
                intuneLicensed=True,
                defenderLicensed=True,
                devices=50_000,
                apps=3_000,
                defenderCoverage=0.9,
                defenderOnly=40,
                # About 30,000 vulnerabilities: several pages of 10,000.
                vulnerableMachines=0.25,
                consents={"large-app": "full"},
            ),
        ],
        "registrations": [
            {
                "kind": "singleTenant",
                "displayName": "Relecloud",
                "tenant": "relecloud",
                "syncApp": "large-app",
                "includeDefender": True,
            }
        ],
    }


def _builtin_gdap() -> dict[str, Any]:
    """GDAP-era access (docs/gdap.md): one customer per way a partner can (or cannot) reach it."""
    full = {"sync-app": "full"}

    def customer(key: str, name: str, relationship: str, **extra: Any) -> dict[str, Any]:
        spec = {"intuneLicensed": True, "defenderLicensed": False, "devices": 5, "apps": 4, "consents": {}}
        return _tenant(key, name, f"{key.replace('-', '')}.onmicrosoft.com", relationship, **{**spec, **extra})

    return {
        "name": "gdap",
        "seed": 7,
        "options": {"limits": True},
        "hostIdentity": {"key": "memsync-host", "displayName": "memsync host", "home": "litware-msp"},
        "partner": _tenant("litware-msp", "Litware MSP", "litwaremsp.onmicrosoft.com", "partner"),
        "apps": [
            {"key": "partner-app", "displayName": "Litware PC access", "home": "litware-msp",
             "secrets": [{"expiresInDays": 300}]},
            {"key": "sync-app", "displayName": "Litware memsync", "home": "litware-msp",
             "secrets": [{"expiresInDays": 300}]},
        ],
        "tenants": [
            # Consented already: syncs whatever the relationship.
            customer("both-ok", "Adventure Works", "both", defenderLicensed=True, defenderCoverage=0.8,
                     consents=full),
            customer("gdap-expiring", "Bellows College", "gdap", consents=full,
                     gdap=[{"roles": ["Intune Administrator", "Cloud Application Administrator"],
                            "endInDays": 10}]),
            customer("no-intune", "Consolidated Messenger", "gdap", intuneLicensed=False, devices=0, apps=0,
                     consents=full),
            customer("permission-missing", "Datum Corporation", "gdap",
                     consents={"sync-app": {"graph": ["DeviceManagementApps.Read.All", "Directory.Read.All"]}}),
            # Not consented: Partner Center can consent (DAP, or GDAP with Cloud Application Administrator).
            customer("dap-only", "Graphic Design Institute", "dap"),
            customer("gdap-only", "Fabrikam Residences", "gdap"),
            # Not consented, and Partner Center cannot: GDAP without a consenting role, an indirect
            # reseller's customer, a customer without any admin relationship, a lapsed GDAP relationship.
            customer("gdap-readonly", "Nod Publishers", "gdap", gdap=[{"roles": ["Intune Administrator"]}]),
            customer("indirect", "Southridge Video", "indirect"),
            customer("reseller-only", "Proseware Labs", "reseller"),
            customer("gdap-lapsed", "School of Fine Art", "gdap",
                     gdap=[{"roles": ["Cloud Application Administrator"], "endInDays": -5}]),
        ],
        "registrations": [
            {"kind": "multiTenant", "displayName": "Litware MSP", "partner": "litware-msp",
             "partnerApp": "partner-app", "syncApp": "sync-app", "includeDefender": True}
        ],
    }


BUILTINS = {"demo": _builtin_demo, "edge": _builtin_edge, "large": _builtin_large, "gdap": _builtin_gdap}


def load_spec(name_or_file: str) -> dict[str, Any]:
    if name_or_file in BUILTINS:
        return BUILTINS[name_or_file]()
    path = Path(name_or_file)
    if not path.is_file():
        raise ValueError(f"unknown scenario {name_or_file!r}: not one of {sorted(BUILTINS)} and not a file")
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ValueError("YAML scenarios need pyyaml, which is not installed; write the scenario as JSON")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ValueError("a scenario file holds one JSON object")
    return spec


@dataclass
class Simulation:
    """Everything the simulator knows; rebuilt from ``spec`` on reset."""

    spec: dict[str, Any]
    name: str
    seed: int
    now: datetime
    options: dict[str, Any]
    host_app_id: str
    host_tenant_id: str
    partner_tenant_id: str
    tenants: dict[str, TenantState] = field(default_factory=dict)
    tenant_keys: dict[str, str] = field(default_factory=dict)  # key -> tenantId
    domains: dict[str, str] = field(default_factory=dict)  # lower-case domain -> tenantId
    apps: dict[str, AppRegistration] = field(default_factory=dict)
    app_keys: dict[str, str] = field(default_factory=dict)  # key -> appId
    registrations: list[dict[str, Any]] = field(default_factory=list)
    reported_tenants: list[str] = field(default_factory=list)
    scenario_faults: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def resolve_tenant(self, tenant: str) -> TenantState | None:
        """A tenant by GUID or by a verified domain, as Entra resolves the authority's tenant."""
        tenant_id = self.domains.get(tenant.lower(), tenant.lower())
        return self.tenants.get(tenant_id)

    def new_secret(self, app: AppRegistration, *, expires_in_days: float, display_name: str = "") -> AppSecret:
        start = utcnow()
        secret = AppSecret(
            key_id=str(uuid.uuid4()),
            value=secret_value(random.Random()),
            start=start,
            end=start + timedelta(days=expires_in_days),
            display_name=display_name or "memsync",
        )
        app.secrets.append(secret)
        return secret


def _roles_from_spec(value: Any) -> dict[str, set[str]]:
    if value == "full":
        value = SYNC_ROLES_FULL
    grants: dict[str, set[str]] = {}
    for resource_name, roles in (value or {}).items():
        resource = RESOURCE_SHORT_NAMES.get(resource_name) or canonical_resource(resource_name)
        if resource is None:
            raise ValueError(f"unknown resource {resource_name!r} in consents")
        grants[resource] = set(roles)
    return grants


def build_simulation(spec: dict[str, Any], *, now: datetime | None = None) -> Simulation:
    # Generation makes only acyclic dicts and lists, hundreds of thousands of them for `large`: the
    # cyclic collector would rescan the growing heap again and again (a third of the time) to free
    # nothing, so it pauses until the simulation is built.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _build_simulation(spec, now=now)
    finally:
        if paused:
            gc.enable()


def _build_simulation(spec: dict[str, Any], *, now: datetime | None = None) -> Simulation:
    spec = copy.deepcopy(spec)
    seed = int(spec.get("seed", 1))
    now = now or utcnow()
    name = str(spec.get("name", "custom"))
    partner_spec = spec.get("partner") or _tenant("partner", "Partner", "partner.onmicrosoft.com", "partner")
    host_spec = spec.get("hostIdentity") or {"key": "memsync-host", "home": partner_spec["key"]}

    def tenant_id_for(key: str, explicit: str | None = None) -> str:
        return explicit or stable_guid(seed, "tenant", key)

    partner_tid = tenant_id_for(partner_spec["key"], partner_spec.get("tenantId"))
    sim = Simulation(
        spec=spec,
        name=name,
        seed=seed,
        now=now,
        options={"limits": True, "exportJobPolls": 2, **(spec.get("options") or {})},
        host_app_id=host_spec.get("clientId") or stable_guid(seed, "app", host_spec.get("key", "memsync-host")),
        host_tenant_id=tenant_id_for(host_spec.get("home", partner_spec["key"]), host_spec.get("tenantId")),
        partner_tenant_id=partner_tid,
        rng=random.Random(f"{seed}:runtime"),
    )

    all_tenant_specs = [dict(partner_spec, relationship="partner", devices=0, apps=0), *spec.get("tenants", [])]
    if host_spec.get("home") and host_spec["home"] not in {t["key"] for t in all_tenant_specs}:
        all_tenant_specs.append(
            _tenant(host_spec["home"], "memsync host tenant", f"{host_spec['home']}.onmicrosoft.com", "host")
        )
    for tenant_spec in all_tenant_specs:
        key = tenant_spec["key"]
        tid = tenant_id_for(key, tenant_spec.get("tenantId"))
        sim.tenant_keys[key] = tid
        rng = random.Random(f"{seed}:{key}")
        tenant = TenantState(
            tenant_id=tid,
            key=key,
            display_name=tenant_spec.get("displayName", key),
            default_domain=tenant_spec.get("defaultDomainName", f"{key}.onmicrosoft.com"),
            relationship=tenant_spec.get("relationship", "gdap"),
            intune_licensed=bool(tenant_spec.get("intuneLicensed", True)),
            defender_licensed=bool(tenant_spec.get("defenderLicensed", False)),
            exists=bool(tenant_spec.get("exists", True)),
            forced_token_error=tenant_spec.get("forcedTokenError"),
            partner_tenant_id=partner_tid
            if tenant_spec.get("relationship", "gdap") in ("dap", "gdap", "both", "indirect", "reseller")
            else None,
            created=now - timedelta(days=rng.randrange(400, 3000)),
            pc_customer_id=stable_guid(seed, "pc-customer", key),
        )
        tenant.gdap_relationships = gdap_relationships(tenant, tenant_spec.get("gdap"), now)
        sim.tenants[tid] = tenant
        if tenant.exists:
            sim.domains[tenant.default_domain.lower()] = tid
        device_count = int(tenant_spec.get("devices", 0))
        if device_count:
            prefix = "".join(ch for ch in key.upper() if ch.isalpha())[:4] or "DEV"
            _, devices = generate_devices(rng, tenant.default_domain, now, device_count, prefix)
            apps, mapping = generate_detected_apps(rng, devices, int(tenant_spec.get("apps", 20)))
            tenant.devices.add_many(devices)
            tenant.detected_apps.add_many(apps)
            tenant.app_devices = mapping
            if tenant.defender_licensed:
                machines = generate_machines(
                    rng,
                    devices,
                    float(tenant_spec.get("defenderCoverage", 0.8)),
                    int(tenant_spec.get("defenderOnly", 0)),
                    prefix,
                    now,
                )
                tenant.machines.add_many(machines)
                # Vulnerabilities are made on first use, from the machines as generated here and a generator
                # of their own, so they change nothing else and do not depend on when they are first read.
                tenant.vulnerabilities = RecordList(
                    functools.partial(
                        generate_vulnerabilities,
                        random.Random(f"{seed}:{key}:vulnerabilities"),
                        machine_facts(machines),
                        share=float(tenant_spec.get("vulnerableMachines", 0.45)),
                        oddities=bool(tenant_spec.get("vulnerabilityOddities", False)),
                    )
                )
            # A generator of its own, so Autopilot leaves every other generated value as it was.
            unenrolled = tenant_spec.get("autopilotUnenrolled")
            identities = generate_autopilot(
                random.Random(f"{seed}:{key}:autopilot"),
                devices,
                prefix,
                now,
                coverage=float(tenant_spec.get("autopilotCoverage", 0.85)),
                unenrolled=None if unenrolled is None else int(unenrolled),
            )
            tenant.autopilot.add_many(identities)
            # Entra ID devices: a generator of their own too, so they change nothing else either.
            entra_unmanaged = tenant_spec.get("entraUnmanaged")
            tenant.entra_devices.add_many(
                generate_entra_devices(
                    random.Random(f"{seed}:{key}:entra"),
                    devices,
                    identities,
                    prefix,
                    now,
                    unmanaged=None if entra_unmanaged is None else int(entra_unmanaged),
                )
            )
        # Subscribed SKUs: the scenario's list, or a plausible set for the tenant's size and licences.
        sku_rng = random.Random(f"{seed}:{key}:skus")
        sku_specs = tenant_spec.get("subscribedSkus")
        if sku_specs is None:
            sku_specs = default_skus(
                sku_rng, devices=device_count, intune=tenant.intune_licensed, defender=tenant.defender_licensed
            )
        if not isinstance(sku_specs, list):
            raise ValueError(f"tenant {key!r}: subscribedSkus must be a list")
        account = tenant.default_domain.split(".", 1)[0]
        tenant.subscribed_skus.add_many(generate_subscribed_skus(sku_rng, tid, account, sku_specs))
        tenant_faults = tenant_spec.get("faults", [])
        if not isinstance(tenant_faults, list):
            raise ValueError(f"tenant {tenant_spec.get('key')!r}: faults must be a list of rules")
        for index, rule in enumerate(tenant_faults):
            scoped = {**rule, "tenantId": tid} if isinstance(rule, dict) else rule
            try:
                FaultRule.from_json(scoped, 0)  # fail at load time, naming the tenant and rule
            except ValueError as exc:
                raise ValueError(f"tenant {tenant_spec.get('key')!r}: faults[{index}]: {exc}") from exc
            sim.scenario_faults.append(scoped)
        if tenant.relationship not in ("partner", "host"):
            sim.reported_tenants.append(tid)

    # App registrations and their secrets.
    app_specs = list(spec.get("apps", []))
    app_specs.insert(
        0,
        {
            "key": host_spec.get("key", "memsync-host"),
            "displayName": host_spec.get("displayName", "memsync host"),
            "home": host_spec.get("home", partner_spec["key"]),
            "appId": sim.host_app_id,
            "secrets": [{"expiresInDays": 180, "value": host_spec.get("clientSecret")}],
            "singleTenant": True,
        },
    )
    for app_spec in app_specs:
        key = app_spec["key"]
        app_id = app_spec.get("appId") or stable_guid(seed, "app", key)
        rng = random.Random(f"{seed}:app:{key}")
        home = sim.tenant_keys.get(app_spec.get("home", partner_spec["key"]), partner_tid)
        app = AppRegistration(
            app_id=app_id,
            object_id=stable_guid(seed, "app-object", key),
            display_name=app_spec.get("displayName", key),
            home_tenant_id=home,
            disabled=bool(app_spec.get("disabled", False)),
            sign_in_audience="AzureADMyOrg" if app_spec.get("singleTenant") else "AzureADMultipleOrgs",
        )
        for index, secret_spec in enumerate(app_spec.get("secrets", [])):
            if "endDateTime" in secret_spec:
                end = parse_datetime(secret_spec["endDateTime"])
                start = parse_datetime(secret_spec.get("startDateTime", iso_seconds(end - timedelta(days=365))))
            else:
                end = now + timedelta(days=float(secret_spec.get("expiresInDays", 180)))
                start = now - timedelta(days=float(secret_spec.get("startedDaysAgo", 1)))
            app.secrets.append(
                AppSecret(
                    key_id=secret_spec.get("keyId") or stable_guid(seed, "secret", key, str(index)),
                    value=secret_spec.get("value") or secret_value(rng),
                    start=start,
                    end=end,
                    display_name=secret_spec.get("displayName", f"{app.display_name} secret"),
                )
            )
        sim.apps[app_id] = app
        sim.app_keys[key] = app_id

    # Consents: a service principal with granted roles, per tenant.
    for tenant_spec in all_tenant_specs:
        tenant = sim.tenants[sim.tenant_keys[tenant_spec["key"]]]
        for app_key, roles in (tenant_spec.get("consents") or {}).items():
            tenant.consents[sim.app_keys[app_key]] = _roles_from_spec(roles)
    partner = sim.tenants[partner_tid]
    for app_key in ("partner-app",):
        if app_key in sim.app_keys:
            partner.consents.setdefault(sim.app_keys[app_key], _roles_from_spec(PARTNER_APP_ROLES))
    for app in sim.apps.values():
        home = sim.tenants[app.home_tenant_id]
        grants = home.consents.setdefault(app.app_id, {})
        # An app may read its own registration in its home tenant (secret expiry dates).
        grants.setdefault(GRAPH, set()).update({"Application.Read.All"} if app.app_id != sim.host_app_id else set())
        if app.home_tenant_id == partner_tid and app.app_id != sim.host_app_id:
            grants[GRAPH].add("Directory.Read.All")
            grants.setdefault(PARTNER_CENTER, set())

    # What a test should expect per tenant, unless the spec says.
    for tenant_spec in all_tenant_specs:
        tenant = sim.tenants[sim.tenant_keys[tenant_spec["key"]]]
        tenant.expected = tenant_spec.get("expected") or _derive_expected(sim, tenant, tenant_spec)

    for reg in spec.get("registrations", []):
        sim.registrations.append(_registration_body(sim, reg))
    return sim


def _derive_expected(sim: Simulation, tenant: TenantState, tenant_spec: dict[str, Any]) -> dict[str, Any]:
    sync_key = next(iter(tenant_spec.get("consents") or {}), "sync-app")
    sync_app_id = sim.app_keys.get(sync_key) or sim.app_keys.get("sync-app")
    if not tenant.exists:
        return {"status": "error", "errorCode": "tenantNotFound"}
    if tenant.forced_token_error:
        code = int(tenant.forced_token_error.get("code", 0))
        return {"status": "error", "errorCode": EXPECTED_BY_TOKEN_ERROR.get(code, "consentMissing")}
    if sync_app_id is None or sync_app_id not in tenant.consents:
        return {"status": "error", "errorCode": "appNotFoundInTenant"}
    for rule in tenant_spec.get("faults", []):
        if rule.get("kind") == "throttle":
            return {"status": "error", "errorCode": "throttled"}
        if rule.get("kind") in ("reset", "status", "slow"):
            return {"status": "error", "errorCode": "unreachable"}
    roles = tenant.consents[sync_app_id].get(GRAPH, set())
    if (
        "DeviceManagementManagedDevices.Read.All" not in roles
        and "DeviceManagementManagedDevices.ReadWrite.All" not in roles
    ):
        return {"status": "error", "errorCode": "permissionMissing"}
    if not tenant.intune_licensed:
        return {"status": "error", "errorCode": "intuneNotLicensed"}
    if not tenant.defender_licensed or not tenant.consents[sync_app_id].get(DEFENDER):
        # A warning, not a failure: devices still sync, Defender fields stay null.
        return {"status": "ok", "errorCode": "defenderUnavailable"}
    grants = tenant.consents[sync_app_id]
    if any(not grants.get(resource, set()) & set(allowed) for resource, reads in OPTIONAL_READS.items()
           for allowed in reads):
        # Also a warning: what the permission reads is left out (northwind's vulnerabilities in demo).
        return {"status": "ok", "errorCode": "permissionMissing"}
    return {"status": "ok", "errorCode": None}


DEFAULT_GDAP_ROLES = ("Intune Administrator", "Cloud Application Administrator")


def gdap_relationships(tenant: TenantState, spec: Any, now: datetime) -> list[dict[str, Any]]:
    """A tenant's GDAP relationships from its spec's ``gdap``: a list of ``{"displayName", "status",
    "roles": [names or ids], "endInDays"}`` (or ``endDateTime``). Tenants related by ``gdap``/``both``
    without one get a single active relationship (Intune + Cloud Application Administrator, a year left)."""
    if spec is None:
        spec = [{}] if tenant.relationship in ("gdap", "both") else []
    out: list[dict[str, Any]] = []
    created = tenant.created or now
    for index, rel in enumerate(spec):
        roles = [ROLE_IDS.get(r, r) for r in rel.get("roles", DEFAULT_GDAP_ROLES)]
        if "endDateTime" in rel:
            end = rel["endDateTime"]
        else:
            end = iso_seconds(now + timedelta(days=float(rel.get("endInDays", 365))))
        status = rel.get("status") or ("expired" if end and parse_datetime(end) <= now else "active")
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"gdap:{tenant.tenant_id}:{index}")) + "-" + tenant.tenant_id[:8]
        out.append(
            {
                "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
                "id": rid,
                "displayName": rel.get("displayName", f"memsync-{tenant.key}" + (f"-{index}" if index else "")),
                "duration": "P730D",
                "status": status,
                "autoExtendDuration": "PT0S" if "Global Administrator" in rel.get("roles", ()) else "P180D",
                "createdDateTime": iso_seconds(created),
                "activatedDateTime": iso_seconds(created),
                "lastModifiedDateTime": iso_seconds(created),
                "endDateTime": end,
                "customer": {"tenantId": tenant.tenant_id, "displayName": tenant.display_name},
                "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in roles]},
            }
        )
    return out


def _current_secret(app: AppRegistration) -> tuple[str, str]:
    latest = max(app.secrets, key=lambda s: s.end)
    return latest.value, iso_seconds(latest.end)


def _registration_body(sim: Simulation, reg: dict[str, Any]) -> dict[str, Any]:
    sync_app = sim.apps[sim.app_keys[reg["syncApp"]]]
    sync_secret, sync_expires = _current_secret(sync_app)
    if reg.get("wrongSecret"):
        sync_secret = sync_secret[:-4] + ("AAAA" if not sync_secret.endswith("AAAA") else "BBBB")
    if reg["kind"] == "multiTenant":
        partner_app = sim.apps[sim.app_keys[reg["partnerApp"]]]
        partner_secret, partner_expires = _current_secret(partner_app)
        return {
            "kind": "multiTenant",
            "displayName": reg.get("displayName", "MSP"),
            "partnerTenantId": sim.tenant_keys[reg["partner"]],
            "partnerAppId": partner_app.app_id,
            "partnerAppSecret": partner_secret,
            "syncAppId": sync_app.app_id,
            "syncAppSecret": sync_secret,
            "includeDefender": bool(reg.get("includeDefender", True)),
            "partnerAppSecretExpiresOn": partner_expires,
            "syncAppSecretExpiresOn": sync_expires,
        }
    return {
        "kind": "singleTenant",
        "displayName": reg.get("displayName", "Tenant"),
        "tenantId": sim.tenant_keys[reg["tenant"]],
        "syncAppId": sync_app.app_id,
        "syncAppSecret": sync_secret,
        "includeDefender": bool(reg.get("includeDefender", True)),
        "syncAppSecretExpiresOn": sync_expires,
    }
