"""`make demo`'s per-tenant summary (devstack/demo.py): the fixed columns first and as they always were,
then one column per optional entity, with "-" where the tenant's last sync did not collect it."""

from __future__ import annotations

import pytest

from devstack.demo import fact_cells, summary_lines

pytestmark = pytest.mark.unit

INTEGRATION = {"displayName": "Fabrikam IT Services", "kind": "multiTenant",
               "id": "11111111-1111-1111-1111-111111111111"}
CONTOSO = "c0000000-0000-0000-0000-000000000001"
OLD = "c0000000-0000-0000-0000-000000000002"
NOTE = {
    "code": "permissionMissing",
    "message": "vulnerabilities not collected: the sync app lacks Vulnerability.Read.All",
    "action": "Grant the sync app Vulnerability.Read.All in this customer.",
}


def everything() -> dict:
    return {
        "devices": 48, "software": 96, "defenderMachines": 40, "skipped": 0,
        "autopilotDevices": 50, "entraDevices": 80, "vulnerabilities": 312, "licences": 4,
        "facts": {
            "autopilotDevices": {"unenrolled": 3},
            "entraDevices": {"unmanaged": 12},
            "vulnerabilities": {"critical": 4, "high": 17, "medium": 200, "low": 91},
            "licences": {"enabled": 100, "consumed": 95},
        },
    }


def fixed_part(tenant_id: str, name: str, devices: int, software: int, defender: int, status: str) -> str:
    """The line `make demo` printed before the optional entities, character for character."""
    return f"  {tenant_id:<38} {name[:24]:<24} {devices:>7} {software:>8} {defender:>8}  {status}"


def test_every_collected_entity_gets_its_cell():
    assert fact_cells(everything()) == ("50 (3)", "80 (12)", "4/17", "95/100")


def test_a_tenant_that_collected_nothing_new_shows_dashes_not_zeros():
    counts = {"devices": 3, "software": 6, "defenderMachines": 0, "skipped": 0}
    assert fact_cells(counts) == ("-", "-", "-", "-")
    assert fact_cells({}) == ("-", "-", "-", "-")


def test_an_old_row_with_counts_but_no_facts_shows_the_count_and_a_dash():
    counts = {"devices": 4, "autopilotDevices": 5, "entraDevices": 6, "vulnerabilities": 7, "licences": 2}
    assert fact_cells(counts) == ("5 (-)", "6 (-)", "-", "-")


def test_only_the_collected_entities_have_facts():
    counts = everything()
    del counts["vulnerabilities"], counts["facts"]["vulnerabilities"]
    counts["facts"]["licences"] = {"enabled": 25, "consumed": 31}  # over-consumed: shown as it is
    assert fact_cells(counts) == ("50 (3)", "80 (12)", "-", "31/25")


def test_the_fixed_columns_come_first_and_unchanged_then_the_new_ones():
    tenants = [
        {"tenantId": OLD, "displayName": "Northwind Traders", "status": "ok", "error": None,
         "counts": {"devices": 31, "software": 62, "defenderMachines": 20, "skipped": 0}},
        {"tenantId": CONTOSO, "displayName": "Contoso Ltd", "status": "ok", "error": NOTE, "counts": everything()},
    ]
    lines = summary_lines(INTEGRATION, tenants)
    assert lines[0] == ""
    assert lines[1] == "  Fabrikam IT Services (multiTenant, id 11111111-1111-1111-1111-111111111111)"
    header, rule = lines[2], lines[3]
    assert header.startswith(f"  {'tenant':<38} {'name':<24} {'devices':>7} {'software':>8} {'defender':>8}  status")
    assert header.split()[6:] == ["autopilot", "(unenrolled)", "entra", "(unmanaged)", "vulns", "crit/high",
                                  "licences", "used/enabled"]
    assert rule == "  " + "-" * (len(header) - 2)
    # Sorted by name; the fixed part is what the summary always printed, the new cells follow.
    contoso, note, action, northwind = lines[4:]
    assert contoso.startswith(fixed_part(CONTOSO, "Contoso Ltd", 48, 96, 40, "ok"))
    assert contoso.split()[-6:] == ["50", "(3)", "80", "(12)", "4/17", "95/100"]
    assert northwind.startswith(fixed_part(OLD, "Northwind Traders", 31, 62, 20, "ok"))
    assert northwind.split()[-4:] == ["-", "-", "-", "-"]
    # The permission note is printed as every error is, after its tenant's line.
    assert note == f"      permissionMissing: {NOTE['message']}"
    assert action == f"      action: {NOTE['action']}"
    # Every cell sits under its column: the rows are as wide as the header.
    assert len(contoso) == len(northwind) == len(header)


def test_an_error_tenant_and_an_excluded_one_keep_their_status_column():
    tenants = [
        {"tenantId": CONTOSO, "displayName": "Woodgrove Bank", "status": "error", "counts": None,
         "error": {"code": "appNotFoundInTenant", "message": "not consented", "action": "Consent it."}},
        {"tenantId": OLD, "displayName": None, "status": "excluded", "counts": {}, "error": None},
    ]
    excluded, woodgrove, message, action = summary_lines(INTEGRATION, tenants)[4:]
    assert excluded.startswith(fixed_part(OLD, "", 0, 0, 0, "excluded"))
    assert woodgrove.startswith(fixed_part(CONTOSO, "Woodgrove Bank", 0, 0, 0, "error"))
    assert woodgrove.split()[-4:] == ["-", "-", "-", "-"]
    assert (message, action) == ("      appNotFoundInTenant: not consented", "      action: Consent it.")
