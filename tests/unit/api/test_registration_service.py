"""The registration service: credentials tried first, secrets only in the vault, nothing half-made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.api.models import MultiTenantRegistration, SecretRotation, SingleTenantRegistration
from shared.api.problems import ApiProblem
from shared.errors import unreachable
from shared.models import IntegrationStatus
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


def multi(**overrides) -> MultiTenantRegistration:
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
    return MultiTenantRegistration.model_validate(body)


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
    # Every token was asked fresh, in the partner tenant, for each audience the sync will use.
    asked = {(t, a, s) for t, a, s, fresh in rt.tokens.calls if fresh}
    assert (PARTNER_TENANT, PARTNER_APP, "https://api.partnercenter.microsoft.com/.default") in asked
    assert (PARTNER_TENANT, SYNC_APP, f"{GRAPH}/.default") in asked
    assert len(asked) == len(rt.tokens.calls)


async def test_every_credential_problem_is_reported_at_once_with_its_field():
    rt = fake_runtime(tokens(aadsts={(PARTNER_TENANT, PARTNER_APP): 7000222}))
    rt.tokens.secrets[SYNC_APP] = "another value"
    with pytest.raises(ApiProblem) as caught:
        await registration.register(rt, multi(), enqueue=Enqueued())
    problem = caught.value
    assert problem.status == 422
    assert {(e.field, e.code) for e in problem.errors} == {
        ("partnerAppSecret", "secretExpired"),
        ("syncAppSecret", "invalidSecret"),
    }
    assert rt.secrets.values == {}
    assert rt.integrations.records == {}


def single(**overrides) -> SingleTenantRegistration:
    body = {
        "kind": "singleTenant",
        "tenantId": PARTNER_TENANT,
        "syncAppId": SYNC_APP,
        "syncAppSecret": SYNC_SECRET,
        **overrides,
    }
    return SingleTenantRegistration.model_validate(body)


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
    with pytest.raises(ApiProblem) as caught:
        await registration.register(rt, single(), enqueue=Enqueued())
    [missing] = caught.value.errors
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
    body = SingleTenantRegistration.model_validate(
        {
            "kind": "singleTenant",
            "tenantId": PARTNER_TENANT,
            "syncAppId": SYNC_APP,
            "syncAppSecret": SYNC_SECRET,
        }
    )
    with pytest.raises(ApiProblem) as caught:
        await registration.register(rt, body, enqueue=Enqueued())
    [error] = caught.value.errors
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
    with pytest.raises(ApiProblem) as caught:
        await registration.register(rt, multi(displayName="again"), enqueue=Enqueued())
    assert caught.value.status == 409
    assert first.id in caught.value.errors[0].message


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
    with pytest.raises(ApiProblem) as caught:
        await registration.register(rt, multi(), enqueue=Enqueued(unreachable("Partner Center", "timeout")))
    assert caught.value.status == 503
    assert rt.integrations.records == {}
    assert rt.secrets.values == {}


async def test_a_failed_rotation_changes_nothing_and_a_good_one_adds_a_version():
    rt = fake_runtime(tokens())
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    name = f"memsync-{integration.id}-sync"
    bad = SecretRotation.model_validate({"syncAppSecret": "wrong-value-0123456789"})
    with pytest.raises(ApiProblem) as caught:
        await registration.rotate_secrets(rt, integration.id, bad)
    assert caught.value.status == 422
    assert caught.value.errors[0].code == "invalidSecret"
    assert rt.secrets.values[name] == [SYNC_SECRET]

    new_value = "rotated~Secret.value-0123456789abcdefghi"
    rt.tokens.secrets[SYNC_APP] = new_value
    updated = await registration.rotate_secrets(
        rt, integration.id, SecretRotation.model_validate({"syncAppSecret": new_value})
    )
    assert rt.secrets.values[name] == [SYNC_SECRET, new_value]
    assert updated.secret(registration.AppRole.SYNC).version == "v2"
    stored = await rt.integrations.get_integration(integration.id)
    assert stored.secret(registration.AppRole.SYNC).version == "v2"


async def test_rotation_problems_are_field_errors():
    rt = fake_runtime(tokens())
    body = SingleTenantRegistration.model_validate(
        {
            "kind": "singleTenant",
            "tenantId": PARTNER_TENANT,
            "syncAppId": SYNC_APP,
            "syncAppSecret": SYNC_SECRET,
        }
    )
    integration = await registration.register(rt, body, enqueue=Enqueued())
    for rotation, field in [({"partnerAppSecret": "x" * 20}, "partnerAppSecret"), ({}, "body")]:
        with pytest.raises(ApiProblem) as caught:
            await registration.rotate_secrets(rt, integration.id, SecretRotation.model_validate(rotation))
        assert caught.value.status == 400
        assert caught.value.errors[0].field == field


async def test_delete_disables_and_removes_secrets_then_sync_is_refused():
    rt = fake_runtime(tokens())
    integration = await registration.register(rt, multi(), enqueue=Enqueued())
    await registration.remove_integration(rt, integration.id, purge_assets=False)
    stored = await rt.integrations.get_integration(integration.id)
    assert stored.status == IntegrationStatus.DISABLED
    assert stored.secrets == []
    assert rt.secrets.values == {}
    with pytest.raises(ApiProblem) as caught:
        await registration.request_sync(rt, integration.id, None)
    assert caught.value.status == 409
    # A removed integration does not block registering the same apps again.
    again = await registration.register(rt, multi(), enqueue=Enqueued())
    assert again.id != integration.id


async def test_unknown_integration_is_404():
    rt = fake_runtime(tokens())
    with pytest.raises(ApiProblem) as caught:
        await registration.remove_integration(rt, "44444444-4444-4444-4444-444444444444", purge_assets=False)
    assert caught.value.status == 404
