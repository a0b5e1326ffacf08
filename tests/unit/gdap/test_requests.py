"""What memsync sends for GDAP-era access: the consent body, Partner Center's consent calls, Entra's
device-code and refresh-token grants, and the alerts about relationships and the sign-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from shared.clients.partner_center import (
    DelegatedGrants,
    EntraGrantError,
    PartnerCenterClient,
    user_impersonation_scope,
)
from shared.http import ApiClient, Budget, CallStats, FatalApiError
from shared.models import AppRole, CustomerTenant, GdapRelationship, Integration, IntegrationKind, SecretRef
from shared.services.alerting import expiry_alert, relationship_alert, relationship_mark
from shared.services.consent import consent_body, partner_center_error
from shared.stores.alerts import AlertKind

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PARTNER = "aaaaaaaa-0000-4000-8000-000000000001"
CUSTOMER = "bbbbbbbb-0000-4000-8000-000000000002"
SYNC_APP = "cccccccc-0000-4000-8000-000000000003"
PARTNER_APP = "dddddddd-0000-4000-8000-000000000004"


def integration(defender: bool = True) -> Integration:
    return Integration(id="eeeeeeee-0000-4000-8000-000000000005", kind=IntegrationKind.MULTI_TENANT,
                       display_name="Contoso MSP", partner_tenant_id=PARTNER, partner_app_id=PARTNER_APP,
                       sync_app_id=SYNC_APP, include_defender=defender, created_at=NOW)


def test_the_consent_body_grants_exactly_what_the_sync_reads_with():
    assert consent_body(integration()) == {
        "applicationId": SYNC_APP,
        "applicationGrants": [
            {"enterpriseApplicationId": "00000003-0000-0000-c000-000000000000",
             "scope": "DeviceManagementManagedDevices.Read.All,DeviceManagementApps.Read.All,Organization.Read.All,"
                      "DeviceManagementServiceConfig.Read.All,Device.Read.All"},
            {"enterpriseApplicationId": "fc780465-2017-40d4-a0c5-307022471b92",
             "scope": "Machine.Read.All,Vulnerability.Read.All"},
        ],
        "displayName": "memsync (Contoso MSP)",
    }
    assert [g["enterpriseApplicationId"] for g in consent_body(integration(False))["applicationGrants"]] == [
        "00000003-0000-0000-c000-000000000000"]
    # Only what the chosen entities read with: no Autopilot, Entra or vulnerability permission here.
    narrow = integration().model_copy(update={"collect": ["licences"]})
    assert [g["scope"] for g in consent_body(narrow)["applicationGrants"]] == [
        "DeviceManagementManagedDevices.Read.All,DeviceManagementApps.Read.All,Organization.Read.All",
        "Machine.Read.All"]


def _partner_center(handler):
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def token(fresh: bool) -> str:
        return "delegated-token"

    api = ApiClient(httpx.AsyncClient(transport=httpx.MockTransport(record)), service="partnerCenter",
                    token=token, budget=Budget(10), stats=CallStats())
    return PartnerCenterClient("https://pc.test", api), seen


async def test_the_consent_call_posts_the_body_to_the_customer_and_409_counts_as_success():
    answers = iter([httpx.Response(201, json={}), httpx.Response(409, json={
        "code": 409, "description": "Permission entry already exists."})])
    client, seen = _partner_center(lambda request: next(answers))
    body = consent_body(integration())
    assert await client.create_application_consent(CUSTOMER, body) == "created"
    assert await client.create_application_consent(CUSTOMER, body) == "exists"
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"https://pc.test/v1/customers/{CUSTOMER}/applicationconsents"
    assert request.headers["Authorization"] == "Bearer delegated-token"
    assert json.loads(request.content) == body


async def test_a_refused_consent_raises_and_names_its_cause():
    client, seen = _partner_center(lambda request: httpx.Response(403, json={
        "code": 600008, "description": "The partner has no admin relationship with customer."}))
    with pytest.raises(FatalApiError) as caught:
        await client.create_application_consent(CUSTOMER, consent_body(integration()))
    tenant = CustomerTenant(integration_id="i", tenant_id=CUSTOMER, display_name="Fabrikam")
    error = partner_center_error(caught.value, tenant)
    assert error.code == "partnerCenterForbidden"
    assert "Fabrikam" in error.message and "no admin relationship" in error.message
    assert "Cloud Application Administrator" in error.action
    assert len(seen) == 1  # a 403 is not retried


async def test_deleting_a_consent_that_is_gone_is_not_an_error():
    client, seen = _partner_center(lambda request: httpx.Response(404, json={"code": 600014}))
    await client.delete_application_consent(CUSTOMER, SYNC_APP)
    assert seen[0].method == "DELETE"
    assert str(seen[0].url) == f"https://pc.test/v1/customers/{CUSTOMER}/applicationconsents/{SYNC_APP}"


def _grants(handler):
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    grants = DelegatedGrants(httpx.AsyncClient(transport=httpx.MockTransport(record)),
                             authority_host="https://login.test", tenant_id=PARTNER, client_id=PARTNER_APP,
                             client_secret=SecretStr("s3cret-value"),
                             scope=user_impersonation_scope("https://api.partnercenter.microsoft.com/.default"))
    return grants, seen


def _form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def test_the_device_code_flow_asks_for_partner_center_user_impersonation():
    grants, seen = _grants(lambda request: httpx.Response(200, json={
        "device_code": "DC", "user_code": "ABCD-EFGH", "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": 900, "interval": 5, "message": "To sign in..."}))
    code = await grants.start_device_code()
    assert str(seen[0].url) == f"https://login.test/{PARTNER}/oauth2/v2.0/devicecode"
    assert _form(seen[0]) == {"client_id": PARTNER_APP,
                              "scope": "https://api.partnercenter.microsoft.com/user_impersonation offline_access"}
    assert (code.user_code, code.interval, code.device_code.get_secret_value()) == ("ABCD-EFGH", 5, "DC")
    assert "DC" not in repr(code)


async def test_redeeming_and_refreshing_send_the_grant_and_report_entra_errors():
    answers = iter([
        httpx.Response(400, json={"error": "authorization_pending", "error_codes": [70016],
                                  "error_description": "AADSTS70016: pending"}),
        httpx.Response(200, json={"access_token": "AT", "refresh_token": "RT2", "token_type": "Bearer"}),
        httpx.Response(400, json={"error": "invalid_grant", "error_codes": [70008],
                                  "error_description": "AADSTS70008: expired"}),
    ])
    grants, seen = _grants(lambda request: next(answers))
    with pytest.raises(EntraGrantError) as pending:
        await grants.redeem_device_code(SecretStr("DC"))
    assert pending.value.error == "authorization_pending" and pending.value.codes == [70016]
    assert _form(seen[0]) == {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                              "client_id": PARTNER_APP, "client_secret": "s3cret-value", "device_code": "DC"}
    token = await grants.refresh(SecretStr("RT1"))
    assert token.refresh_token is not None and token.refresh_token.get_secret_value() == "RT2"
    assert _form(seen[1]) == {"grant_type": "refresh_token", "client_id": PARTNER_APP,
                              "client_secret": "s3cret-value", "refresh_token": "RT1",
                              "scope": "https://api.partnercenter.microsoft.com/user_impersonation offline_access"}
    with pytest.raises(EntraGrantError) as expired:
        await grants.refresh(SecretStr("RT2"))
    assert expired.value.codes == [70008]


def _relationship(end_days: float) -> GdapRelationship:
    return GdapRelationship(id="rel-9", display_name="memsync-fabrikam", status="active",
                            end_date_time=NOW + timedelta(days=end_days))


def test_relationship_alerts_raise_the_most_urgent_mark_once_per_end_date():
    thresholds = [30, 14, 7, 3, 1, 0]
    assert relationship_mark(NOW + timedelta(days=45), NOW, thresholds) is None
    assert relationship_mark(NOW + timedelta(days=20), NOW, thresholds) == 30
    assert relationship_mark(NOW + timedelta(days=5), NOW, thresholds) == 7
    assert relationship_mark(NOW - timedelta(days=50), NOW, thresholds) == 0
    tenant = CustomerTenant(integration_id="i", tenant_id=CUSTOMER, display_name="Fabrikam")
    soon = relationship_alert(integration(), tenant, _relationship(5), mark=7, now=NOW)
    assert soon is not None and soon.kind is AlertKind.RELATIONSHIP_EXPIRING
    assert "Fabrikam" in soon.message and "2026-06-06" in soon.message and soon.days_left == 5
    gone = relationship_alert(integration(), tenant, _relationship(-2), mark=0, now=NOW)
    assert gone is not None and gone.kind is AlertKind.RELATIONSHIP_EXPIRED
    again = relationship_alert(integration(), tenant, _relationship(5), mark=7, now=NOW + timedelta(hours=6))
    assert again is not None and again.id == soon.id
    extended = relationship_alert(integration(), tenant, _relationship(400), mark=7, now=NOW)
    assert extended is not None and extended.id != soon.id


def test_the_sign_in_expiry_alert_says_to_sign_in_again():
    ref = SecretRef(name="memsync-x-partnerSignin", role=AppRole.PARTNER_SIGNIN, app_id=PARTNER_APP,
                    expires_on=NOW + timedelta(days=6), expires_on_source="assumed", version="v3")
    alert = expiry_alert(integration(), ref, version="v3", mark=7, expires_on=NOW + timedelta(days=6),
                         source="assumed", now=NOW)
    assert alert.kind is AlertKind.SECRET_EXPIRING and alert.role is AppRole.PARTNER_SIGNIN
    assert "partner admin sign-in" in alert.message and "client secret" not in alert.message
    assert "/partner-signin" in alert.action
