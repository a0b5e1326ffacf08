"""Which application permissions memsync needs, for what, and which broader ones imply them: one place.

Each `Permission` is an application permission (an app role of a Microsoft resource) with the broader
roles that also grant it. The reads that need them are named by area (`READS`), the synced entities name
their read in `shared.entities`, and every action derives its list from here:

- sync (`shared.services.tenant_sync`, `shared.clients.graph.graph_error`): each read's `READS[area]`;
- consent (`shared.services.consent`): `consent_scopes`, what a sync reads, per resource;
- registration check and diagnosis (`shared.services.registration`, `shared.services.diagnosis`):
  `required_roles` per resource, each satisfied by the permission or one that implies it.

Microsoft's documented permission for each endpoint (Application row, least privileged first):
- managedDevices: https://learn.microsoft.com/graph/api/intune-devices-manageddevice-list
- detectedApps: https://learn.microsoft.com/graph/api/intune-devices-detectedapp-list
- export jobs: https://learn.microsoft.com/graph/api/intune-reporting-devicemanagementexportjob-get
  (Configuration, Apps or ManagedDevices, Read or ReadWrite; memsync asks DeviceManagementApps.Read.All
  for the app-inventory report)
- organization: https://learn.microsoft.com/graph/api/organization-list
- contracts: https://learn.microsoft.com/graph/api/contract-list
- delegatedAdminCustomers: https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadmincustomers
- Defender machines: https://learn.microsoft.com/defender-endpoint/api/get-machines
- Defender vulnerabilities: https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines
- subscribedSkus: https://learn.microsoft.com/graph/api/subscribedsku-list (LicenseAssignment.Read.All is
  the least privileged; memsync's sync already holds Organization.Read.All, which the page also lists)
Broader roles: https://learn.microsoft.com/graph/permissions-reference
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Resource(StrEnum):
    """The Microsoft resources whose app roles memsync asks for, by their enterprise application id."""

    GRAPH = "00000003-0000-0000-c000-000000000000"
    DEFENDER = "fc780465-2017-40d4-a0c5-307022471b92"  # WindowsDefenderATP


@dataclass(frozen=True)
class Permission:
    """An application permission, and the broader ones that grant it too."""

    resource: Resource
    name: str
    implied_by: frozenset[str] = frozenset()

    def granted(self, roles: Iterable[str]) -> bool:
        held = frozenset(roles)
        return self.name in held or bool(self.implied_by & held)


MANAGED_DEVICES_READ = Permission(Resource.GRAPH, "DeviceManagementManagedDevices.Read.All",
                                  frozenset({"DeviceManagementManagedDevices.ReadWrite.All"}))
APPS_READ = Permission(Resource.GRAPH, "DeviceManagementApps.Read.All",
                       frozenset({"DeviceManagementApps.ReadWrite.All"}))
ORGANIZATION_READ = Permission(Resource.GRAPH, "Organization.Read.All", frozenset(
    {"Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}))
DIRECTORY_READ = Permission(Resource.GRAPH, "Directory.Read.All", frozenset({"Directory.ReadWrite.All"}))
GDAP_READ = Permission(Resource.GRAPH, "DelegatedAdminRelationship.Read.All",
                       frozenset({"DelegatedAdminRelationship.ReadWrite.All"}))
MACHINE_READ = Permission(Resource.DEFENDER, "Machine.Read.All", frozenset({"Machine.ReadWrite.All"}))
# https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-list
AUTOPILOT_READ = Permission(Resource.GRAPH, "DeviceManagementServiceConfig.Read.All",
                            frozenset({"DeviceManagementServiceConfig.ReadWrite.All"}))
# https://learn.microsoft.com/graph/api/device-list
ENTRA_DEVICES_READ = Permission(Resource.GRAPH, "Device.Read.All",
                                frozenset({"Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}))
# https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines (WindowsDefenderATP)
VULNERABILITY_READ = Permission(Resource.DEFENDER, "Vulnerability.Read.All")

# Every read memsync makes, by the area its Graph or Defender client names in errors.
READS: dict[str, Permission] = {
    "devices": MANAGED_DEVICES_READ,  # /deviceManagement/managedDevices
    "apps": MANAGED_DEVICES_READ,  # /deviceManagement/detectedApps (and each app's managedDevices)
    "exports": APPS_READ,  # /deviceManagement/reports/exportJobs (AppInvRawData)
    "organization": ORGANIZATION_READ,  # /organization
    "contracts": DIRECTORY_READ,  # /contracts, in the partner tenant
    "gdap": GDAP_READ,  # /tenantRelationships/delegatedAdminCustomers, in the partner tenant
    "defender": MACHINE_READ,  # Defender /api/machines
    "autopilot": AUTOPILOT_READ,  # /deviceManagement/windowsAutopilotDeviceIdentities
    "entraDevices": ENTRA_DEVICES_READ,  # /devices
    "vulnerabilities": VULNERABILITY_READ,  # Defender /api/vulnerabilities/machinesVulnerabilities
    "licences": ORGANIZATION_READ,  # /subscribedSkus
}


def read_permission(area: str) -> Permission:
    """The permission a read needs; an unknown area is a programming error, never a silent default."""
    try:
        return READS[area]
    except KeyError:
        raise KeyError(f"no permission is declared for the read area {area!r} in shared.permissions") from None


def missing(area: str, roles: frozenset[str]) -> list[str]:
    """The permission a read needs when the token's `roles` grant none of its alternatives; [] otherwise.

    An empty `roles` says nothing (a token without the claim), so nothing is reported missing then.
    """
    permission = read_permission(area)
    if not roles or permission.granted(roles):
        return []
    return [permission.name]


READ_BY_NAME: dict[str, Permission] = {p.name: p for p in READS.values()}

# The reads of one tenant's sync, in the order consent and messages name their permissions. Each synced
# entity in `shared.entities` reads through one of these areas (a unit test holds them together).
SYNC_AREAS = ("devices", "apps", "exports", "organization")
DEFENDER_AREAS = ("defender",)
# The reads of optional entities (`shared.entities.Entity.optional`): a sync makes each where the tenant
# grants its permission and goes on without it where it does not (the tenant's status names what is
# missing); a Partner Center consent asks for them with the rest.
OPTIONAL_AREAS: tuple[str, ...] = ("autopilot", "entraDevices", "vulnerabilities", "licences")


def sync_permissions(*, include_defender: bool) -> tuple[Permission, ...]:
    """What a tenant's sync reads with, each permission once."""
    areas = SYNC_AREAS + (DEFENDER_AREAS if include_defender else ())
    unique: list[Permission] = []
    for area in areas:
        if READS[area] not in unique:
            unique.append(READS[area])
    return tuple(unique)


def required_roles(resource: Resource, *, include_defender: bool = True) -> tuple[str, ...]:
    """The app roles of one resource a sync app must hold (registration check, diagnosis probe)."""
    return tuple(p.name for p in sync_permissions(include_defender=include_defender) if p.resource == resource)


def optional_roles(resource: Resource, areas: Iterable[str] = OPTIONAL_AREAS) -> tuple[str, ...]:
    """The app roles of one resource that optional entities read with (`areas`, by default every one of
    `OPTIONAL_AREAS`; an integration's choice from `shared.entities.chosen_areas`), each once."""
    names: list[str] = []
    for area in areas:
        permission = READS[area]
        if permission.resource == resource and permission.name not in names:
            names.append(permission.name)
    return tuple(names)


def consent_scopes(
    *, include_defender: bool, optional: Iterable[str] = OPTIONAL_AREAS
) -> dict[Resource, tuple[str, ...]]:
    """The application grants a Partner Center consent asks for, per resource (no resource without one):
    what the sync needs and what the optional entities it collects read with (`optional`, their areas)."""
    scopes: dict[Resource, tuple[str, ...]] = {}
    chosen = tuple(optional)
    for resource in Resource:
        needed = required_roles(resource, include_defender=include_defender)
        names = needed + tuple(n for n in optional_roles(resource, chosen) if n not in needed)
        if names:
            scopes[resource] = names
    return scopes


def lacking(needed: Iterable[str], roles: Iterable[str]) -> list[str]:
    """The permissions of `needed` (names of declared reads) that `roles` neither holds nor implies."""
    held = frozenset(roles)
    return [name for name in needed if not READ_BY_NAME[name].granted(held)]
