"""Mapping on Microsoft's own sample payloads: devices, Defender machines, software, tenants."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from shared.mapping.devices import (
    DEVICE_FIELDS,
    MANAGED_DEVICE_SELECT,
    DefenderIndex,
    SkippedRecord,
    is_placeholder_serial,
    map_device,
    normalise_serial,
)
from shared.mapping.software import map_software
from shared.mapping.tenants import (
    from_contract,
    from_delegated_admin_customer,
    from_partner_center_customer,
    merge_tenants,
    organization_names,
)

from .samples import repair_as_printed, sample_json, sample_text

pytestmark = pytest.mark.unit
TENANT = "84841066-274d-4ec0-a5c1-276be684bdd3"
CONTRACT_DEVICE_FIELDS = {
    "id", "tenantId", "deviceName", "serialNumber", "manufacturer", "model", "operatingSystem", "osVersion",
    "complianceState", "managementAgent", "ownerType", "enrolledDateTime", "lastSyncDateTime",
    "userPrincipalName", "azureADDeviceId", "totalStorageSpaceInBytes", "freeStorageSpaceInBytes",
    "physicalMemoryInBytes", "wiFiMacAddress", "ethernetMacAddress", "imei", "isEncrypted", "defender",
}


def test_select_names_every_contract_intune_field_by_its_v1_name():
    wanted = (CONTRACT_DEVICE_FIELDS - {"tenantId", "defender", "ownerType"}) | {"managedDeviceOwnerType"}
    assert set(MANAGED_DEVICE_SELECT) == wanted
    assert "ownerType" not in MANAGED_DEVICE_SELECT  # beta only


def test_managed_device_sample_maps_to_contract_fields():
    raw = sample_json("graph-v1-manageddevice-list-response.json")["value"][0]
    device = map_device(raw, tenant_id=TENANT)
    assert CONTRACT_DEVICE_FIELDS <= set(device)
    assert set(device) == set(DEVICE_FIELDS)
    assert device["id"] == "705c034c-034c-705c-4c03-5c704c035c70"
    assert device["tenantId"] == TENANT
    assert device["ownerType"] == "company"  # from managedDeviceOwnerType
    assert device["deviceName"] == "Device Name value"
    assert device["serialNumber"] == "SERIAL NUMBER VALUE"
    assert device["serialPlaceholder"] is False
    assert device["complianceState"] == "compliant"
    assert device["managementAgent"] == "mdm"
    # The instants Microsoft wrote, in UTC, to the microsecond (shared.mapping.dates: stored as DateTime).
    assert device["enrolledDateTime"] == "2017-01-01T07:59:43.797191Z"  # from 2016-12-31T23:59:43.797191-08:00
    assert device["lastSyncDateTime"] == "2017-01-01T08:02:49.320597Z"  # from ...00:02:49.3205976-08:00
    assert device["totalStorageSpaceInBytes"] == 8
    assert device["freeStorageSpaceInBytes"] == 7
    assert device["physicalMemoryInBytes"] == 5
    assert device["ethernetMacAddress"] == "Ethernet Mac Address value"
    assert device["wiFiMacAddress"] == "Wi Fi Mac Address value"
    assert device["isEncrypted"] is True
    assert device["defender"] is None


def test_list_response_zero_memory_means_unknown():
    raw = {"id": "a1", "physicalMemoryInBytes": 0, "totalStorageSpaceInBytes": 256_060_514_304}
    device = map_device(raw, tenant_id=TENANT)
    assert device["physicalMemoryInBytes"] is None
    assert device["totalStorageSpaceInBytes"] == 256_060_514_304  # beyond Int32 stays exact


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"id": None},
        {"id": 42},
        {"id": ""},
        {"id": "a/b"},
        {"id": "~marker"},
        {"id": "ok", "deviceName": ["x"]},
        {"id": "ok", "totalStorageSpaceInBytes": "big"},
        {"id": "ok", "isEncrypted": "yes"},
        {"id": "ok", "serialNumber": 12345},
    ],
)
def test_device_with_missing_id_or_odd_types_is_skipped(raw):
    with pytest.raises(SkippedRecord):
        map_device(raw, tenant_id=TENANT)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [(" pf3abc12 ", "PF3ABC12"), ("5CG1234XYZ", "5CG1234XYZ"), ("\tc02xk0jd\n", "C02XK0JD"), (None, None)],
)
def test_serial_normalisation(raw, normalised):
    assert normalise_serial(raw) == normalised


@pytest.mark.parametrize(
    "serial",
    ["Default string", "To be filled by O.E.M.", "0", "", "   ", "System Serial Number", "None", "N/A",
     "00000000", "0000-0000-0000", "ffffffff", "To Be Filled By OEM", None, "123456789"],
)
def test_placeholder_serials_are_flagged(serial):
    assert is_placeholder_serial(serial)
    device = map_device({"id": "d1", "serialNumber": serial}, tenant_id=TENANT)
    assert device["serialPlaceholder"] is True


@pytest.mark.parametrize("serial", ["PF3ABC12", "5CG1234XYZ", "C02XK0JDJG5J", "0F00A1"])
def test_real_serials_are_not_flagged(serial):
    assert not is_placeholder_serial(serial)


def test_two_machines_with_placeholder_serials_stay_two_devices():
    a = map_device({"id": "d1", "serialNumber": "Default string"}, tenant_id=TENANT)
    b = map_device({"id": "d2", "serialNumber": "default string "}, tenant_id=TENANT)
    assert a["serialNumber"] == b["serialNumber"] and a["id"] != b["id"]
    assert a["serialPlaceholder"] and b["serialPlaceholder"]  # a serial match must not merge them


@pytest.mark.parametrize(
    "name",
    [
        "mde-get-machines-response-defenderdocs-AS-PRINTED-not-valid-json.txt",
        "mde-get-machines-response-m365docs-securitycenter-AS-PRINTED-not-valid-json.txt",
        "mde-odata-example4-machines-healthstatus-filter-response-AS-PRINTED-not-valid-json.txt",
    ],
)
def test_defender_samples_join_on_aad_device_id_case_insensitively(name):
    machines = repair_as_printed(sample_text(name))["value"]
    assert machines[0]["osPlatform"] == "Windows10"
    index = DefenderIndex()
    assert index.add(machines[0])
    aad = machines[0]["aadDeviceId"]
    raw = {"id": "d1", "azureADDeviceId": aad.upper()}
    found = index.match(raw["azureADDeviceId"])
    assert found is not None
    device = map_device(raw, tenant_id=TENANT, defender=found.to_json())
    assert device["defender"] == {
        "machineId": machines[0]["id"],
        "healthStatus": machines[0]["healthStatus"],
        "riskScore": machines[0]["riskScore"],
        "exposureLevel": machines[0]["exposureLevel"],
        "onboardingStatus": machines[0].get("onboardingStatus"),
        "lastSeen": device["defender"]["lastSeen"],
    }
    # lastSeen: the same instant in UTC, to the microsecond (Graph's seventh digit dropped), ending in Z.
    seen, written = device["defender"]["lastSeen"], machines[0]["lastSeen"]
    assert seen.endswith("Z") and len(seen.rpartition(".")[2]) <= 7
    assert datetime.fromisoformat(seen.replace("Z", "+00:00")) == datetime.fromisoformat(
        re.sub(r"(\.\d{6})\d+", r"\1", written).replace("Z", "+00:00"))


def test_defender_machine_by_id_sample_and_reonboarded_device_keeps_latest():
    machine = repair_as_printed(sample_text("mde-get-machine-by-id-response-AS-PRINTED-not-valid-json.txt"))
    older = {**machine, "id": "old", "lastSeen": "2018-01-01T00:00:00Z"}
    index = DefenderIndex()
    index.add(machine)
    index.add(older)
    index.add({"id": "no-aad", "aadDeviceId": None})
    assert len(index) == 1
    found = index.match("80FE8FF8-2624-418E-9591-41F0491218F9")
    assert found is not None and found.machine_id == machine["id"]
    assert index.match(None) is None and index.match("unknown") is None


def test_detected_app_sample_maps_to_software_fields():
    raw = sample_json("graph-v1-detectedapp-list-response.json")["value"][0]
    app = map_software(raw, tenant_id=TENANT)
    assert set(app) == {"id", "tenantId", "displayName", "version", "publisher", "platform", "sizeInByte",
                        "deviceCount"}
    assert app["id"] == raw["id"]
    assert app["displayName"] == raw["displayName"]
    assert app["version"] == raw["version"]
    assert app["sizeInByte"] == raw["sizeInByte"]
    assert app["deviceCount"] == raw["deviceCount"]
    with pytest.raises(SkippedRecord):
        map_software({"displayName": "no id"}, tenant_id=TENANT)


def test_partner_center_contracts_and_gdap_merge_by_tenant_id():
    pc = sample_json("partnercenter-get-customers-response.json")["items"][0]
    tid = "0d6a0b41-58e3-4a7b-9b89-9b2c2b0b1a11"
    pc = {**pc, "companyProfile": {**pc["companyProfile"], "tenantId": tid.upper()}}
    contract = {**sample_json("graph-v1-contract-list-response.json")["value"][0], "customerId": tid}
    gdap = {"id": tid, "tenantId": tid, "displayName": "Contoso (GDAP)"}
    found = [from_partner_center_customer(pc), from_contract(contract), from_delegated_admin_customer(gdap)]
    merged = merge_tenants([f for f in found if f is not None])
    assert list(merged) == [tid]
    tenant = merged[tid]
    assert tenant.discovered_by == ["partnerCenter", "contracts", "gdap"]
    assert tenant.relationship == "reseller"
    assert tenant.display_name == "companyName"  # Partner Center's profile wins over snapshots
    assert tenant.default_domain_name == "domain"


def test_partner_center_customer_id_stands_in_for_a_missing_profile_tenant_id():
    # The docs print "<guid>" for companyProfile.tenantId; the customer's id is its tenant id.
    item = sample_json("partnercenter-get-customers-response.json")["items"][0]
    found = from_partner_center_customer(item)
    assert found is not None and found.tenant_id == "b44bb1fb-c595-45b0-9e09-d657365580bf"
    assert from_partner_center_customer({**item, "id": "x"}) is None


def test_organization_sample_names():
    org = sample_json("graph-v1-organization-list-response.json")["value"][0]
    assert organization_names(org) == ("Contoso", "Contoso.onmicrosoft.com")
