"""PATCH /api/integrations/{id}: what may change, how it is validated, and If-Match (shared.services.editing,
shared.api.views.integration_etag / if_match_admits)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.api.models import IntegrationPatch
from shared.api.parsing import parse_model
from shared.api.problems import ApiProblem
from shared.api.views import if_match_admits, integration_etag, integration_view
from shared.errors import ChangedMeanwhile, Conflict, InvalidInput
from shared.models import (
    AppRole,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    SecretRef,
    TenantFilter,
)
from shared.services.editing import change_integration, changed
from tests.unit.api.fakes import FakeTokens, fake_runtime

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, tzinfo=UTC)
MSP = Integration(id="a0000000-0000-4000-8000-000000000001", kind=IntegrationKind.MULTI_TENANT,
                  display_name="Contoso MSP", partner_tenant_id="b0000000-0000-4000-8000-000000000002",
                  partner_app_id="c0000000-0000-4000-8000-000000000003",
                  sync_app_id="d0000000-0000-4000-8000-000000000004", created_at=NOW,
                  secrets=[SecretRef(name="memsync-x-sync", role=AppRole.SYNC,
                                     app_id="d0000000-0000-4000-8000-000000000004")])
SINGLE = MSP.model_copy(update={"kind": IntegrationKind.SINGLE_TENANT, "partner_tenant_id": None,
                                "tenant_id": "e0000000-0000-4000-8000-000000000005", "partner_app_id": None})
CUSTOMER = "f0000000-0000-4000-8000-000000000006"


def patch(body: dict) -> object:
    return parse_model(IntegrationPatch, body).to_domain()


def test_fields_left_out_stay_and_given_ones_replace():
    after = changed(MSP, patch({"displayName": "  Contoso North  ", "tenantFilter": {"exclude": [CUSTOMER]}}))
    assert after.display_name == "Contoso North" and after.tenant_filter == TenantFilter(exclude=[CUSTOMER])
    assert after.include_defender is True and after.collect is None and after.status == IntegrationStatus.ACTIVE
    assert changed(MSP, patch({})) == MSP


def test_collect_null_means_every_optional_entity_again_and_absent_keeps_the_choice():
    narrow = changed(MSP, patch({"collect": ["licences"]}))
    assert narrow.collect == ["licences"]
    assert changed(narrow, patch({"displayName": "x"})).collect == ["licences"]
    assert changed(narrow, patch({"collect": None})).collect is None


@pytest.mark.parametrize(("start", "body", "field"), [
    (MSP, {"collect": ["vulnerabilities"], "includeDefender": False}, "collect"),
    (MSP.model_copy(update={"collect": ["vulnerabilities"]}), {"includeDefender": False}, "includeDefender"),
    (SINGLE, {"tenantFilter": {"include": [CUSTOMER]}}, "tenantFilter"),
])
def test_a_change_that_registration_would_refuse_is_refused_and_nothing_changes(start, body, field):
    with pytest.raises(InvalidInput) as refused:
        changed(start, patch(body))
    assert [p.field for p in refused.value.problems] == [field]
    assert all(p.action for p in refused.value.problems)


def test_disable_and_enable_but_a_deleted_integration_stays_deleted():
    off = changed(MSP, patch({"status": "disabled"}))
    assert off.status == IntegrationStatus.DISABLED
    assert changed(off, patch({"status": "active"})).status == IntegrationStatus.ACTIVE
    errored = MSP.model_copy(update={"status": IntegrationStatus.ERROR})
    assert changed(errored, patch({"status": "active"})).status == IntegrationStatus.ERROR  # until it syncs
    deleted = off.model_copy(update={"secrets": []})
    with pytest.raises(Conflict):
        changed(deleted, patch({"status": "active"}))


@pytest.mark.parametrize("body", [
    {"status": "error"}, {"kind": "singleTenant"}, {"syncAppSecret": "x"}, {"collect": ["licences", "licences"]},
    {"displayName": ""}, {"includeDefender": "true"},
])
def test_what_may_not_change_here_is_a_400_naming_the_field(body):
    with pytest.raises(ApiProblem) as refused:
        patch(body)
    assert refused.value.status == 400
    assert refused.value.errors and all(e.field.split("[")[0].split(".")[0] in body for e in refused.value.errors)


def test_the_etag_follows_what_get_shows_and_if_match_compares_weakly():
    tag = integration_etag(MSP)
    assert tag.startswith('W/"') and tag == integration_etag(MSP.model_copy())
    assert integration_etag(MSP.model_copy(update={"display_name": "Other"})) != tag
    # A change GET does not show (autoConsent, which GET ./partner-signin shows) keeps the tag.
    assert integration_view(MSP.model_copy(update={"auto_consent": True})) == integration_view(MSP)
    assert integration_etag(MSP.model_copy(update={"auto_consent": True})) == tag
    assert if_match_admits(None, tag) and if_match_admits("*", tag)
    assert if_match_admits(tag, tag) and if_match_admits(tag.removeprefix("W/"), tag)
    assert if_match_admits(f'"nope", {tag}', tag)
    assert not if_match_admits('W/"0000"', tag) and not if_match_admits("", tag)


async def test_a_stale_if_match_is_refused_with_what_to_do():
    rt = fake_runtime(FakeTokens(secrets={}))
    await rt.integrations.create_integration(MSP)
    seen = integration_etag(MSP)
    renamed = await change_integration(rt, MSP.id, patch({"displayName": "First"}),
                                       expected=lambda c: if_match_admits(seen, integration_etag(c)))
    assert renamed.display_name == "First"
    with pytest.raises(ChangedMeanwhile) as late:
        await change_integration(rt, MSP.id, patch({"displayName": "Second"}),
                                 expected=lambda c: if_match_admits(seen, integration_etag(c)))
    assert late.value.problems[0].field == "If-Match" and "ETag" in late.value.problems[0].action
    assert (await rt.integrations.get_integration(MSP.id)).display_name == "First"
