"""Every read's permission, from one place, against Microsoft's documented permission for its endpoint.

The documented lists (Application row, least privileged first) are copied from the pages cited here; a
permission memsync declares must be one that the page lists, and the broader ones it accepts must be
listed too, or be documented supersets (permissions reference).
"""

from __future__ import annotations

import pytest

from shared.entities import ENTITIES, LISTED, chosen_areas
from shared.permissions import (
    OPTIONAL_AREAS,
    READS,
    SYNC_AREAS,
    Resource,
    consent_scopes,
    lacking,
    missing,
    optional_roles,
    read_permission,
    required_roles,
    sync_permissions,
)
from shared.ratelimit import AREA_LIMITS, RateLimits

pytestmark = pytest.mark.unit

DOCUMENTED: dict[str, tuple[str, ...]] = {
    # https://learn.microsoft.com/graph/api/intune-devices-manageddevice-list
    "devices": ("DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/intune-devices-detectedapp-list
    "apps": ("DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/intune-reporting-devicemanagementexportjob-get
    "exports": ("DeviceManagementConfiguration.Read.All", "DeviceManagementConfiguration.ReadWrite.All",
                "DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All",
                "DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/organization-list
    "organization": ("Organization.Read.All", "Directory.Read.All", "Organization.ReadWrite.All",
                     "Directory.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/contract-list
    "contracts": ("Directory.Read.All", "Directory.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadmincustomers
    "gdap": ("DelegatedAdminRelationship.Read.All", "DelegatedAdminRelationship.ReadWrite.All"),
    # https://learn.microsoft.com/defender-endpoint/api/get-machines
    "defender": ("Machine.Read.All", "Machine.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-list
    "autopilot": ("DeviceManagementServiceConfig.Read.All", "DeviceManagementServiceConfig.ReadWrite.All"),
    # https://learn.microsoft.com/graph/api/device-list
    "entraDevices": ("Device.Read.All", "Directory.Read.All", "Device.ReadWrite.All", "Directory.ReadWrite.All"),
    # https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines
    "vulnerabilities": ("Vulnerability.Read.All",),
    # https://learn.microsoft.com/graph/api/subscribedsku-list
    "licences": ("LicenseAssignment.Read.All", "Directory.Read.All", "Organization.Read.All",
                 "LicenseAssignment.ReadWrite.All", "Directory.ReadWrite.All", "Organization.ReadWrite.All"),
}


@pytest.mark.parametrize("area", sorted(READS))
def test_each_read_permission_is_the_documented_one(area):
    permission = READS[area]
    assert permission.name in DOCUMENTED[area]
    assert set(permission.implied_by) <= set(DOCUMENTED[area])


@pytest.mark.parametrize("name", sorted(ENTITIES))
def test_every_entity_reads_with_a_declared_permission_and_rate_limit_area(name):
    entity = ENTITIES[name]
    assert entity.permission is READS[entity.permission_area]
    assert entity.rate_limit_area in AREA_LIMITS
    if entity.optional:
        assert entity.permission_area in OPTIONAL_AREAS
    else:
        assert entity.permission in sync_permissions(include_defender=entity.source.service == "defender")


def test_every_listed_entity_is_read_by_the_sync():
    assert {e.permission_area for e in LISTED if not e.optional} <= set(SYNC_AREAS)
    assert {e.permission_area for e in LISTED if e.optional} <= set(OPTIONAL_AREAS)


def test_registration_consent_and_diagnosis_ask_for_the_same_roles():
    assert required_roles(Resource.GRAPH) == (
        "DeviceManagementManagedDevices.Read.All", "DeviceManagementApps.Read.All", "Organization.Read.All")
    assert required_roles(Resource.DEFENDER) == ("Machine.Read.All",)
    # Consent also asks for what the optional entities read with (a sync goes on without it).
    # (Licences read with Organization.Read.All, which the sync needs anyway: asked for once.)
    assert optional_roles(Resource.GRAPH) == ("DeviceManagementServiceConfig.Read.All", "Device.Read.All",
                                              "Organization.Read.All")
    assert optional_roles(Resource.DEFENDER) == ("Vulnerability.Read.All",)
    assert consent_scopes(include_defender=True) == {
        Resource.GRAPH: (*required_roles(Resource.GRAPH), "DeviceManagementServiceConfig.Read.All", "Device.Read.All"),
        Resource.DEFENDER: ("Machine.Read.All", "Vulnerability.Read.All")}
    # An integration's choice (shared.entities.chosen_areas) narrows what consent asks for.
    chosen = chosen_areas(include_defender=False, collect=None)
    assert "vulnerabilities" not in chosen
    assert Resource.DEFENDER not in consent_scopes(include_defender=False, optional=chosen)
    assert consent_scopes(include_defender=True, optional=chosen_areas(include_defender=True,
                                                                       collect=["licences"])) == {
        Resource.GRAPH: required_roles(Resource.GRAPH), Resource.DEFENDER: ("Machine.Read.All",)}


def test_broader_permissions_imply_narrower_ones():
    graph = required_roles(Resource.GRAPH)
    assert lacking(graph, {"DeviceManagementManagedDevices.ReadWrite.All", "Directory.Read.All",
                           "DeviceManagementApps.ReadWrite.All"}) == []
    assert lacking(graph, {"Directory.Read.All"}) == [
        "DeviceManagementManagedDevices.Read.All", "DeviceManagementApps.Read.All"]
    assert missing("devices", frozenset({"Directory.Read.All"})) == ["DeviceManagementManagedDevices.Read.All"]
    assert missing("devices", frozenset()) == []  # a token without the roles claim says nothing


def test_an_undeclared_area_fails_loudly():
    with pytest.raises(KeyError, match=r"shared\.permissions"):
        read_permission("somethingNew")
    with pytest.raises(KeyError, match="AREA_LIMITS"):
        RateLimits().bucket("somethingNew", "t", "a")
