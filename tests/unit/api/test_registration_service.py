"""The registration service: credentials tried first, secrets only in the vault, nothing half-made.

The service refuses with domain errors; each is checked as the API renders it (`problem_from_domain`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.api.models import MultiTenantRegistration, SecretRotation, SingleTenantRegistration
from shared.api.parsing import parse_registration
from shared.api.problems import ApiProblem, problem_from_domain
from shared.errors import DomainError, unreachable
from shared.models import IntegrationStatus, NewIntegration, NewSecrets
from shared.services import registration

from .fakes import Enqueued, FakeTokens, fake_runtime

pytestmark = pytest.mark.unit

PARTNER_TENANT = "11111111-1111-1111-1111-111111111111"
PARTNER_APP = "22222222-2222-2222-2222-222222222222"
SYNC_APP = "33333333-3333-3333-3333-333333333333"
PARTNER_SECRET = "partner~Secret.value-0123456789abcdefghij"
SYNC_SECRET = "sync~Secret.value-0123456789abcdefghijklm"
GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"


def multi(**overrides) -> NewIntegration:
    body = {
        "kind": "multiTenant",
        "displayName": "Contoso MSP",
        "partnerTenantId": PARTNER_TENANT,
        "partnerAppId": PARTNER_APP,
        "partnerAppSecret": PARTNER_SECRET,
        "syncAppId": SYNC_APP,
        "syncAppSecret": SYNC_SECRET,
        **overrides,
    }
    return MultiTenantRegistration.model_validate(body).to_domain()


def rotation(body: dict) -> NewSecrets:
    return SecretRotation.model_validate(body).to_domain()


async def refused(call) -> ApiProblem:
    """The domain error `call` raises, as the API answers it."""
    with pytest.raises(DomainError) as caught:
        await call
    return problem_from_domain(caught.value)


def tokens(**kwargs) -> FakeTokens:
    return FakeTokens(secrets={PARTNER_APP: PARTNER_SECRET, SYNC_APP: SYNC_SECRET}, **kwargs)


async def test_registration_stores_secrets_in_the_vault_only_and_queues_the_first_sync():
    rt = fake_runtime(tokens())
    enqueue = Enqueued()
    expires = (datetime.now(UTC) + timedelta(days=300)).replace(microsecond=0)
    integration = await registration.register(
        rt, multi(syncAppSecretExpiresOn=expires.isoformat()), enqueue=enqueue
    )
    assert enqueue.calls == [(integration.id, "registration")]
    assert rt.secrets.values == {
        f"memsync-{integration.id}-partner": [PARTNER_SECRET],
        f"memsync-{integration.id}-sync": [SYNC_SECRET],
    }
    assert rt.secrets.meta[f"memsync-{integration.id}-sync"]["tags"] == {
        "integrationId": integration.id,
        "role": "sync",
        "appId": SYNC_APP,
    }
    record, _ = rt.integrations.records[integration.id]
    assert PARTNER_SECRET not in record
    assert SYNC_SECRET not in record
    refs = {s.role.value: s for s in integration.secrets}
    assert refs["sync"].expires_on == expires
    assert refs["sync"].expires_on_source == "given"
    assert refs["partner"].expires_on_source == "assumed"
    assert rt.secrets.meta[f"memsync-{integration.id}-partner"]["expires_on"] is None
    # Every token the check asked for was asked fresh, in the partner tenant, for each audience the sync
    # will use; the only others are the Graph tokens (from the cache) that read each secret's expiry.
    asked = {(t, a, s) for t, a, s, fresh in rt.tokens.calls if fresh}
    assert (PARTNER_TENANT, PARTNER_APP, "https://api.partnercenter.microsoft.com/.default") in asked
    assert (PARTNER_TENANT, SYNC_APP, f"{GRAPH}/.default") in asked
    cached = sorted((t, a, s) for t, a, s, fresh in rt.tokens.calls if not fresh)
    assert cached == sorted((PARTNER_TENANT, app, f"{GRAPH}/.default") for app in (PARTNER_APP, SYNC_APP))
    assert len(asked) + len(cached) == len(rt.tokens.calls)


async def test_every_credential_problem_is_reported_at_once_with_its_field():
    rt = fake_runtime(tokens(aadsts={(PARTNER_TENANT, PARTNER_APP): 7000222}))
    rt.tokens.secrets[SYNC_APP] = "another value"
    problem = await refused(registration.register(rt, multi(), enqueue=Enqueued()))
    assert problem.status == 422
    assert {(e.field, e.code) for e in problem.errors} == {
        ("partnerAppSecret", "secretExpired"),
        ("syncAppSecret", "invalidSecret"),
    }
    assert rt.secrets.values == {}
    assert rt.integrations.records == {}


def single(**overrides) -> NewIntegration:
    body = {
        "kind": "singleTenant",
        "tenantId": PARTNER_TENANT,
        "syncAppId": SYNC_APP,
        "syncAppSecret": SYNC_SECRET,
        **overrides,
    }
    return SingleTenantRegistration.model_validate(body).to_domain()


async def test_each_missing_permission_is_named_and_broader_ones_count():
    rt = fake_runtime(
        tokens(
            roles={
                (PARTNER_TENANT, SYNC_APP, GRAPH): [
                    "Directory.Read.All",
                    "DeviceManagementApps.ReadWrite.All",
                ],
                (PARTNER_TENANT, SYNC_APP, DEFENDER): [],
            }
        )
    )
    problem = await refused(registration.register(rt, single(), enqueue=Enqueued()))
    [missing] = problem.errors
    assert (missing.field, missing.code) == ("syncAppId", "permissionMissing")
    assert "DeviceManagementManagedDevices.Read.All" in missing.message
    assert "Machine.Read.All" in missing.message
    assert "Organization.Read.All" not in missing.message
    assert "DeviceManagementApps.Read.All" not in missing.message


@pytest.mark.parametrize(
    ("code", "expected", "field"),
    [
        (7000215, "invalidSecret", "syncAppSecret"),
        (7000222, "secretExpired", "syncAppSecret"),
        (700016, "appNotFoundInTenant", "syncAppId"),
        (65001, "consentMissing", "syncAppId"),
        (90099, "consentMissing", "syncAppId"),
        (90002, "tenantNotFound", "tenantId"),
        (7000112, "appNotFoundInTenant", "syncAppId"),
        (50000, "unreachable", "syncAppId"),
    ],
)
async def test_aadsts_codes_become_contract_codes_with_actions(code, expected, field):
    rt = fake_runtime(tokens(aadsts={(PARTNER_TENANT, SYNC_APP): code}))
    problem = await refused(registration.register(rt, single(), enqueue=Enqueued()))
    [error] = problem.errors
    assert (error.code, error.field) == (expected, field)
    assert error.action
    assert SYNC_SECRET not in error.message + error.action


async def test_defender_not_required_when_excluded():
    rt = fake_runtime(tokens(roles={(PARTNER_TENANT, SYNC_APP, DEFENDER): []}))
    integration = await registration.register(rt, single(includeDefender=False), enqueue=Enqueued())
    assert integration.include_defender is False
    assert not any(scope.startswith(DEFENDER) for _, _, scope, _ in rt.tokens.calls)


async def test_the_same_apps_twice_is_a_409_naming_the_first():
    rt = fake_runtime(tokens())
    first = await registration.register(rt, multi(), enqueue=Enqueued())
    problem = await refused(registration.register(rt, multi(displayName="again"), enqueue=Enqueued()))
    assert problem.status == 409
    assert problem.headers == {}
    assert (problem.errors[0].field, problem.errors[0].code) == ("syncAppId", "alreadyRegistered")
    assert first.id in problem.errors[0].message


@pytest.mark.parametrize("failure", ["record", "enqueue"])
async def test_a_failure_after_the_vault_write_leaves_nothing_behind(failure):
    rt = fake_runtime(tokens())
    enqueue = Enqueued(ConnectionError("queue down") if failure == "enqueue" else None)
    rt.integrations.fail_create = failure == "record"
    with pytest.raises(ConnectionError):
        await registration.register(rt, multi(), enqueue=enqueue)
    assert rt.secrets.values == {}
    assert len(rt.secrets.deleted) == 2
    assert rt.integrations.records == {}


async def test_a_retriable_discovery_failure_is_a_503_and_is_undone():
    rt = fake_runtime(tokens())
    problem = await refused(
        registration.register(rt, multi(), enqueue=Enqueued(unreachable("Partner Center", "timeout")))
    )
    assert problem.status == 503
    assert problem.headers == {"Retry-After": "30"}
    assert problem.errors[0].code == "unreachable"
    assert rt.integrations.records == {}
    assert rt.secrets.values == {}


async def test_a_failed_rotation_changes_nothing_and_a_good_one_adds_a_version():
    rt = fake_runtime(tokens())
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    name = f"memsync-{integration.id}-sync"
    bad = rotation({"syncAppSecret": "wrong-value-0123456789"})
    problem = await refused(registration.rotate_secrets(rt, integration.id, bad))
    assert problem.status == 422
    assert problem.errors[0].code == "invalidSecret"
    assert rt.secrets.values[name] == [SYNC_SECRET]

    new_value = "rotated~Secret.value-0123456789abcdefghi"
    rt.tokens.secrets[SYNC_APP] = new_value
    updated = await registration.rotate_secrets(rt, integration.id, rotation({"syncAppSecret": new_value}))
    assert rt.secrets.values[name] == [SYNC_SECRET, new_value]
    assert updated.secret(registration.AppRole.SYNC).version == "v2"
    stored = await rt.integrations.get_integration(integration.id)
    assert stored.secret(registration.AppRole.SYNC).version == "v2"


async def test_rotation_problems_are_field_errors():
    rt = fake_runtime(tokens())
    integration = await registration.register(rt, single(), enqueue=Enqueued())
    for body, field, code in [
        ({"partnerAppSecret": "x" * 20}, "partnerAppSecret", "notApplicable"),
        ({"syncAppSecretExpiresOn": "2027-05-01T00:00:00Z"}, "syncAppSecretExpiresOn", "requiresSecret"),
        ({}, "body", "required"),
    ]:
        problem = await refused(registration.rotate_secrets(rt, integration.id, rotation(body)))
        assert problem.status == 400
        assert problem.title == "The request is not valid"
        assert (problem.errors[0].field, problem.errors[0].code) == (field, code)
        assert problem.to_json()["detail"] == "1 problem with the request; see errors[]."


async def test_delete_disables_and_removes_secrets_then_sync_is_refused():
    rt = fake_runtime(tokens())
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    await registration.remove_integration(rt, integration.id, purge_assets=False)
    stored = await rt.integrations.get_integration(integration.id)
    assert stored.status == IntegrationStatus.DISABLED
    assert stored.secrets == []
    assert rt.secrets.values == {}
    problem = await refused(registration.request_sync(rt, integration.id, None))
    assert problem.status == 409
    assert problem.errors[0].code == "integrationDisabled"
    # A removed integration does not block registering the same apps again.
    again = await registration.register(rt, multi(), enqueue=Enqueued())
    assert again.id != integration.id


async def test_unknown_integration_is_404():
    rt = fake_runtime(tokens())
    problem = await refused(
        registration.remove_integration(rt, "44444444-4444-4444-4444-444444444444", purge_assets=False)
    )
    assert problem.to_json() == {
        "type": "urn:memsync:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "No integration with that id.",
        "errors": [
            {
                "field": "id",
                "code": "notFound",
                "message": "No integration with that id exists.",
                "action": "List the integrations with GET /api/integrations.",
            }
        ],
    }


async def test_unknown_tenants_of_a_manual_sync_are_each_named():
    rt = fake_runtime(tokens())
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    unknown = "55555555-5555-5555-5555-555555555555"
    problem = await refused(registration.request_sync(rt, integration.id, [unknown]))
    assert problem.status == 404
    assert problem.detail == "Some tenants are not part of this integration."
    assert [(e.field, e.code) for e in problem.errors] == [("tenantIds[0]", "notFound")]


async def test_an_optional_permission_the_sync_app_lacks_is_a_warning_not_a_refusal():
    rt = fake_runtime(tokens())  # the required roles only: no optional Graph or Defender permission
    warnings: list = []
    integration = await registration.register(rt, single(), enqueue=Enqueued(), warnings=warnings)
    assert integration.status == IntegrationStatus.ACTIVE
    graph, defender = warnings  # one per resource: Graph's token, then Defender's
    assert {(w.field, w.code.value) for w in warnings} == {("syncAppId", "permissionMissing")}
    assert "DeviceManagementServiceConfig.Read.All" in graph.message + graph.action
    assert "autopilotDevices" in graph.message and "entraDevices" in graph.message
    assert "Vulnerability.Read.All" in defender.message + defender.action
    assert "vulnerabilities" in defender.message


async def test_only_the_permissions_of_the_entities_collected_are_asked_about():
    rt = fake_runtime(tokens())
    warnings: list = []
    integration = await registration.register(rt, single(collect=["autopilotDevices", "licences"]),
                                              enqueue=Enqueued(), warnings=warnings)
    assert integration.collect == ["autopilotDevices", "licences"]
    [warning] = warnings  # licences read with Organization.Read.All, which the sync holds already
    assert "DeviceManagementServiceConfig.Read.All" in warning.message
    assert "Device.Read.All" not in warning.message and "Vulnerability" not in warning.message
    without_defender: list = []
    await registration.register(fake_runtime(tokens()), single(includeDefender=False), enqueue=Enqueued(),
                                warnings=without_defender)
    assert all("Vulnerability.Read.All" not in w.message for w in without_defender)


@pytest.mark.parametrize(("body", "code"), [
    ({"collect": ["vulnerabilities"], "includeDefender": False}, "conflictingOptions"),
    ({"collect": ["licences", "licences"]}, "duplicate"),
    ({"collect": ["devices"]}, "invalidValue"),
    ({"collect": "licences"}, "invalidType"),
])
def test_a_collect_option_that_cannot_be_honoured_is_refused_with_its_reason(body, code):
    with pytest.raises(ApiProblem) as caught:
        parse_registration({"kind": "singleTenant", "tenantId": PARTNER_TENANT, "syncAppId": SYNC_APP,
                            "syncAppSecret": SYNC_SECRET, **body})
    problem = caught.value
    assert problem.status == 400
    assert [e.code for e in problem.errors] == [code], problem.errors
    assert all(e.field.startswith("collect") for e in problem.errors)
    assert all("autopilotDevices" in e.action for e in problem.errors)


async def test_no_warning_when_the_optional_permission_is_granted_or_the_integration_is_an_msp():
    granted = ["DeviceManagementManagedDevices.Read.All", "DeviceManagementApps.Read.All",
               "Organization.Read.All", "DeviceManagementServiceConfig.ReadWrite.All", "Directory.Read.All"]
    rt = fake_runtime(tokens(roles={(PARTNER_TENANT, SYNC_APP, GRAPH): granted,
                                    (PARTNER_TENANT, SYNC_APP, DEFENDER): ["Machine.Read.All",
                                                                           "Vulnerability.Read.All"]}))
    warnings: list = []
    await registration.register(rt, single(), enqueue=Enqueued(), warnings=warnings)
    assert warnings == []
    msp: list = []
    await registration.register(fake_runtime(tokens()), multi(), enqueue=Enqueued(), warnings=msp)
    assert msp == []  # a multi-tenant sync app's permissions are checked per customer, by each sync
