"""The access verdict: relationship facts and the sync's (or a probe's) outcome -> one verdict and action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.clients.gdap import CLOUD_APPLICATION_ADMINISTRATOR, allows_consent, is_active, map_relationship
from shared.models import CustomerTenant, ErrorModel, GdapRelationship, RelationshipFacts, TenantStatus, TokenFacts
from shared.services.diagnosis import current_access, diagnose, rediagnosed, same_facts, token_from_sync

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TID = "5a1b2c3d-0000-4000-8000-000000000001"
INTEGRATION = "9f8e7d6c-0000-4000-8000-000000000002"
SYNC_APP = "11111111-2222-4333-8444-555555555555"
INTUNE_ADMIN = "3a2c62db-5318-420d-8d74-23affee5d9d5"


def gdap(*roles: str, status: str = "active", end_days: float | None = 365) -> GdapRelationship:
    end = NOW + timedelta(days=end_days) if end_days is not None else None
    return GdapRelationship(id="rel-1", display_name="memsync", status=status, end_date_time=end,
                            roles=list(roles), role_ids=list(roles))


def tenant(status: TenantStatus = TenantStatus.ERROR, code: str | None = None, message: str = "") -> CustomerTenant:
    error = ErrorModel(code=code, message=message or f"{code} happened", action="do the thing {id}") if code else None
    finished = NOW - timedelta(minutes=5) if status in (TenantStatus.OK, TenantStatus.ERROR) else None
    return CustomerTenant(integration_id=INTEGRATION, tenant_id=TID, display_name="Contoso", status=status,
                          error=error, last_sync_finished_at=finished,
                          last_success_at=finished if status == TenantStatus.OK else None)


def verdict(t: CustomerTenant, facts: RelationshipFacts, probe: TokenFacts | None = None) -> tuple[str, str | None]:
    access = diagnose(t, facts, sync_app_id=SYNC_APP, integration_id=INTEGRATION, defender_included=True,
                      probe=probe, now=NOW)
    return access.verdict, access.action


DAP = RelationshipFacts(partner_center="reseller", dap=True)
GDAP_CONSENT = RelationshipFacts(partner_center="reseller", gdap=[gdap(INTUNE_ADMIN, CLOUD_APPLICATION_ADMINISTRATOR)])
GDAP_READONLY = RelationshipFacts(partner_center="reseller", gdap=[gdap(INTUNE_ADMIN)])
GDAP_LAPSED = RelationshipFacts(partner_center="reseller",
                                gdap=[gdap(CLOUD_APPLICATION_ADMINISTRATOR, status="expired", end_days=-5)])
RESELLER_ONLY = RelationshipFacts(partner_center="reseller")
INDIRECT = RelationshipFacts(partner_center="advisor", dap=True)


@pytest.mark.parametrize(
    ("facts", "code", "want", "action_says"),
    [
        (DAP, "appNotFoundInTenant", "consentMissing", "/partner-signin"),
        (GDAP_CONSENT, "consentMissing", "consentMissing", f"/tenants/{TID}/consent"),
        (GDAP_READONLY, "appNotFoundInTenant", "consentMissing", "Cloud Application Administrator"),
        (GDAP_LAPSED, "appNotFoundInTenant", "noRelationship", "request a GDAP relationship"),
        (RESELLER_ONLY, "appNotFoundInTenant", "noRelationship", SYNC_APP),
        (INDIRECT, "appNotFoundInTenant", "unsupportedRelationship", "'advisor'"),
        (DAP, "permissionMissing", "permissionMissing", "consent"),
        (DAP, "intuneNotLicensed", "intuneNotLicensed", "Intune licence"),
        (DAP, "throttled", "unknown", f"do the thing {INTEGRATION}"),
    ],
)
def test_verdicts_follow_the_relationship_and_the_sync_outcome(facts, code, want, action_says):
    got, action = verdict(tenant(code=code), facts)
    assert got == want
    assert action is not None and action_says in action


def test_a_tenant_that_syncs_is_ok_whatever_the_relationship():
    for facts in (DAP, GDAP_READONLY, GDAP_LAPSED, RESELLER_ONLY, INDIRECT):
        assert verdict(tenant(TenantStatus.OK), facts) == ("ok", None)
    # Defender being unavailable is a note, not a verdict.
    access = diagnose(tenant(TenantStatus.OK, "defenderUnavailable"), DAP, sync_app_id=SYNC_APP,
                      integration_id=INTEGRATION, defender_included=True, now=NOW)
    assert (access.verdict, access.defender, access.intune, access.token.ok) == ("ok", "unavailable", "ok", True)


def test_a_tenant_not_synced_yet_is_pending():
    assert verdict(tenant(TenantStatus.PENDING), DAP)[0] == "pending"


def test_an_indirect_customer_with_a_consenting_gdap_relationship_can_be_consented():
    facts = RelationshipFacts(partner_center="advisor", gdap=[gdap(CLOUD_APPLICATION_ADMINISTRATOR)])
    assert verdict(tenant(code="appNotFoundInTenant"), facts)[0] == "consentMissing"


def test_a_probe_newer_than_the_sync_speaks_for_the_token():
    stale = tenant(code="appNotFoundInTenant")
    probe = TokenFacts(ok=True, roles=["DeviceManagementManagedDevices.Read.All"], source="probe", checked_at=NOW)
    assert verdict(stale, DAP, probe)[0] == "ok"
    lacking = TokenFacts(ok=True, missing=["Organization.Read.All"], source="probe", checked_at=NOW)
    got, action = verdict(tenant(code="permissionMissing"), DAP, lacking)
    assert got == "permissionMissing" and "Organization.Read.All" in (action or "")
    # A sync that finished after the probe wins again.
    old = probe.model_copy(update={"checked_at": NOW - timedelta(hours=1)})
    assert verdict(stale, DAP, old)[0] == "consentMissing"


def test_the_sync_outcome_becomes_token_facts():
    assert token_from_sync(tenant(code="consentMissing")).ok is False
    missing = token_from_sync(tenant(code="permissionMissing", message=(
        f"The app {SYNC_APP} lacks the application permission(s) DeviceManagementManagedDevices.Read.All, "
        f"Organization.Read.All in tenant {TID}.")))
    assert missing.ok is True and missing.missing == ["DeviceManagementManagedDevices.Read.All",
                                                      "Organization.Read.All"]
    assert token_from_sync(tenant(TenantStatus.PENDING)).ok is None


def test_the_view_recomputes_with_the_latest_sync_and_unchanged_facts_are_not_rewritten():
    from shared.models import Integration, IntegrationKind

    integration = Integration(id=INTEGRATION, kind=IntegrationKind.MULTI_TENANT, display_name="MSP",
                              partner_tenant_id=TID, partner_app_id=SYNC_APP, sync_app_id=SYNC_APP,
                              created_at=NOW)
    pending = tenant(TenantStatus.PENDING).model_copy(update={"discovered_by": ["partnerCenter", "contracts"],
                                                              "relationship": "reseller"})
    stored = rediagnosed(pending, integration, [], now=NOW)
    assert stored is not None and stored.access is not None
    assert stored.access.verdict == "pending" and stored.access.relationship.dap is True
    assert rediagnosed(stored, integration, [], now=NOW + timedelta(hours=6)) is None  # only the time moved
    synced = stored.model_copy(update={"status": TenantStatus.ERROR, "last_sync_finished_at": NOW,
                                       "error": ErrorModel(code="appNotFoundInTenant", message="m", action="a")})
    fresh = current_access(synced, now=NOW)
    assert fresh is not None and fresh.verdict == "consentMissing" and SYNC_APP in (fresh.action or "")
    assert not same_facts(stored.access, fresh)
    # The GDAP listing failing (None) keeps the relationships stored before.
    with_gdap = rediagnosed(pending, integration, [gdap(INTUNE_ADMIN)], now=NOW)
    assert with_gdap is not None
    kept = rediagnosed(with_gdap.model_copy(update={"status": TenantStatus.OK}), integration, None, now=NOW)
    assert kept is not None and kept.access is not None and len(kept.access.relationship.gdap) == 1


def test_graph_relationships_map_to_roles_and_activity():
    item = {
        "id": "abc-1", "displayName": "memsync-contoso", "status": "active",
        "endDateTime": "2026-06-20T00:00:00Z", "customer": {"tenantId": TID.upper(), "displayName": "Contoso"},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": INTUNE_ADMIN},
                                           {"roleDefinitionId": CLOUD_APPLICATION_ADMINISTRATOR}]},
    }
    mapped = map_relationship(item)
    assert mapped is not None
    assert mapped.roles == ["Intune Administrator", "Cloud Application Administrator"]
    assert mapped.end_date_time == datetime(2026, 6, 20, tzinfo=UTC)
    assert is_active(mapped, NOW) and allows_consent(mapped, NOW)
    assert not is_active(mapped, datetime(2026, 7, 1, tzinfo=UTC))
    assert not allows_consent(gdap(INTUNE_ADMIN), NOW)
    assert not is_active(gdap(CLOUD_APPLICATION_ADMINISTRATOR, status="terminated"), NOW)
    assert map_relationship({"displayName": "no id"}) is None
