"""Every AADSTS code the simulator can answer, mapped as Microsoft's error-code reference describes it.

https://learn.microsoft.com/entra/identity-platform/reference-error-codes. AADSTS500011
(InvalidResourceServicePrincipalNotFound: "The resource principal named {name} was not found in the
tenant") is about the API asked for, not the client app: for Defender for Endpoint it means Defender is
not set up in that tenant.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.cloudsim.entra import TOKEN_ERRORS
from shared import sdk
from shared.api.models import SingleTenantRegistration
from shared.api.problems import problem_from_domain
from shared.auth import AppCredential, TenantTokens
from shared.errors import (
    DEFENDER_API_APP_ID,
    ActionableError,
    DomainError,
    ErrorCode,
    credential_problem,
    from_aadsts,
    resource_service,
)
from shared.services import registration
from shared.settings import load_settings
from tests.unit.api.fakes import Enqueued, FakeTokens, fake_runtime

pytestmark = pytest.mark.unit

APP = "33333333-3333-4333-8333-333333333333"
TENANT = "11111111-1111-4111-8111-111111111111"
SECRET = "sync~Secret.value-0123456789abcdefghijklm"
DEFENDER = "https://api.securitycenter.microsoft.com/.default"
GRAPH = "https://graph.microsoft.com/.default"
PARTNER_CENTER = "https://api.partnercenter.microsoft.com/.default"

# What memsync answers to each code the simulator returns. Codes of flows memsync does not run app-only
# (device code 70016, refresh 70000/70008) or of requests it never sends (a missing parameter, a GET, an
# unknown grant type, /common) keep the generic answer, which names the code and where to look it up.
EXPECTED = {
    90002: ErrorCode.TENANT_NOT_FOUND,  # InvalidTenantName
    700016: ErrorCode.APP_NOT_FOUND_IN_TENANT,  # UnauthorizedClient_DoesNotMatchRequest
    7000215: ErrorCode.INVALID_SECRET,  # InvalidClientSecretProvided
    7000222: ErrorCode.SECRET_EXPIRED,  # InvalidClientSecretExpiredKeysProvided
    7000112: ErrorCode.APP_DISABLED,  # UnauthorizedClientApplicationDisabled
    65001: ErrorCode.CONSENT_MISSING,  # DelegationDoesNotExist
    90094: ErrorCode.CONSENT_MISSING,  # AdminConsentRequired
    90099: ErrorCode.CONSENT_MISSING,  # the app is not authorized in the customer (GDAP)
    500011: ErrorCode.DEFENDER_UNAVAILABLE,  # for Defender's API; see the test below for the others
    70011: ErrorCode.INTERNAL,  # InvalidScope: memsync's request, not the app registration
    7000218: ErrorCode.UNREACHABLE,
    900144: ErrorCode.UNREACHABLE,
    50059: ErrorCode.UNREACHABLE,
    70016: ErrorCode.UNREACHABLE,
    70000: ErrorCode.UNREACHABLE,
    70008: ErrorCode.UNREACHABLE,
    900561: ErrorCode.UNREACHABLE,
    1002012: ErrorCode.UNREACHABLE,
}


def test_every_code_the_simulator_answers_is_audited() -> None:
    assert set(TOKEN_ERRORS) == set(EXPECTED), "a new simulator code: check it against the reference, add it here"


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_code_maps_to_its_meaning_with_an_action(code: int) -> None:
    error = from_aadsts(code, app_id=APP, tenant_id=TENANT, app_label="sync app", resource=DEFENDER)
    assert error.code is EXPECTED[code]
    assert f"AADSTS{code}" in error.info.message and error.info.action
    assert SECRET not in error.info.message + error.info.action


def test_defender_500011_names_the_missing_defender_service_principal() -> None:
    error = from_aadsts(500011, app_id=APP, tenant_id=TENANT, app_label="sync app", resource=DEFENDER)
    assert error.code is ErrorCode.DEFENDER_UNAVAILABLE and not error.retriable
    assert error.info.message == (
        f"The Defender for Endpoint API has no service principal in tenant {TENANT} (AADSTS500011): Defender for "
        "Endpoint is not set up there (or was never onboarded), so no app can read it.")
    assert "not present" not in error.info.message
    action = error.info.action
    assert "includeDefender false" in action and "Settings > Endpoints" in action and "Machine.Read.All" in action
    assert APP in action


@pytest.mark.parametrize(
    ("scope", "code", "words"),
    [
        (GRAPH, ErrorCode.TENANT_NOT_FOUND, "Microsoft Graph has no service principal"),
        ("https://graph.microsoft.us/.default", ErrorCode.TENANT_NOT_FOUND, "another cloud"),
        (PARTNER_CENTER, ErrorCode.PERMISSION_MISSING, "not a Partner Center (CSP) partner tenant"),
        ("https://api-gov.securitycenter.microsoft.us/.default", ErrorCode.DEFENDER_UNAVAILABLE,
         "Defender for Endpoint is not set up"),
        (None, ErrorCode.UNREACHABLE, "has no service principal"),
    ],
)
def test_500011_is_about_the_resource_in_every_cloud_never_the_app(scope: str | None, code: ErrorCode,
                                                                    words: str) -> None:
    error = from_aadsts(500011, app_id=APP, tenant_id=TENANT, resource=scope)
    assert error.code is code and words in error.info.message
    assert "is not present in tenant" not in error.info.message


def test_resource_service_reads_scopes_and_resources() -> None:
    assert resource_service(DEFENDER) == "defender"
    assert resource_service("https://api.securitycenter.microsoft.com") == "defender"
    assert resource_service("https://api.securitycenter.azure.cn/.default") == "defender"
    assert resource_service("HTTPS://GRAPH.MICROSOFT.COM/.default") == "graph"
    assert resource_service(PARTNER_CENTER) == "partnerCenter"
    assert resource_service("https://vault.azure.net/.default") is None
    assert resource_service(None) is None
    assert DEFENDER_API_APP_ID == "fc780465-2017-40d4-a0c5-307022471b92"  # WindowsDefenderATP


def test_at_registration_defender_not_set_up_is_permission_missing_with_the_defender_words() -> None:
    error = from_aadsts(500011, app_id=APP, tenant_id=TENANT, resource=DEFENDER)
    problem = credential_problem(error, "syncAppId")
    assert (problem.field, problem.code) == ("syncAppId", ErrorCode.PERMISSION_MISSING)
    assert problem.message == error.info.message and problem.action == error.info.action


class DefenderMissing(FakeTokens):
    """Entra for a tenant without Defender for Endpoint: Graph tokens come, Defender's API answers 500011."""

    async def get_token(self, tenant_id: str, app: AppCredential, scope: str, *, fresh: bool = False) -> str:
        if scope == DEFENDER:
            self.calls.append((tenant_id, app.app_id, scope, fresh))
            raise from_aadsts(500011, app_id=app.app_id, tenant_id=tenant_id, app_label=app.label, resource=scope)
        return await super().get_token(tenant_id, app, scope, fresh=fresh)


async def test_single_tenant_registration_with_defender_in_a_tenant_without_it() -> None:
    rt = fake_runtime(DefenderMissing(secrets={APP: SECRET},
                                      roles={(TENANT, APP, "https://graph.microsoft.com"): ["Directory.Read.All"]}))
    body = {"kind": "singleTenant", "tenantId": TENANT, "syncAppId": APP, "syncAppSecret": SECRET}
    with pytest.raises(DomainError) as caught:
        await registration.register(rt, SingleTenantRegistration.model_validate(body).to_domain(),
                                    enqueue=Enqueued())
    problem = problem_from_domain(caught.value)
    assert problem.status == 422
    # Both problems at once: the Graph permissions the token lacks, and Defender not set up there.
    assert [(e.field, e.code) for e in problem.errors] == [("syncAppId", "permissionMissing")] * 2
    assert "DeviceManagementManagedDevices.Read.All" in problem.errors[0].message
    assert "Defender for Endpoint is not set up there" in problem.errors[1].message
    assert "includeDefender false" in problem.errors[1].action


class RefusingCredential:
    """azure-identity's ClientSecretCredential as Entra refuses a Defender token (its message names the code)."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.scopes: list[str] = []

    async def get_token(self, scope: str) -> Any:
        self.scopes.append(scope)
        if "securitycenter" in scope:
            raise sdk.ClientAuthenticationError(message=(
                "ClientSecretCredential.get_token failed: AADSTS500011: The resource principal named "
                "https://api.securitycenter.microsoft.com was not found in the tenant named Contoso."))
        return SimpleNamespace(token="t", expires_on=time.time() + 3600)

    async def close(self) -> None:
        return None


async def test_tenant_tokens_hand_the_scope_to_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk, "ClientSecretCredential", RefusingCredential)
    tokens = TenantTokens(load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                         "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"}))
    app = AppCredential(APP, SecretStr(SECRET), "sync app")
    assert await tokens.get_token(TENANT, app, GRAPH) == "t"
    with pytest.raises(ActionableError) as caught:
        await tokens.get_token(TENANT, app, DEFENDER)
    assert caught.value.code is ErrorCode.DEFENDER_UNAVAILABLE
    assert "Defender for Endpoint is not set up" in caught.value.info.message
    await tokens.close()
