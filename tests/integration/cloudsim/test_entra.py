"""Entra token endpoint against the real azure-identity ClientSecretCredential."""

from __future__ import annotations

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

from .conftest import Sim

pytestmark = pytest.mark.integration
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _credential(sim: Sim, tenant_id: str, app_id: str, secret: str) -> ClientSecretCredential:
    return ClientSecretCredential(tenant_id, app_id, secret, authority=sim.authority, disable_instance_discovery=True)


def test_client_credentials_token_carries_granted_roles(fresh: Sim) -> None:
    registration = fresh.scenario()["registrations"][0]
    tenant = fresh.tenant("healthy-gdap")
    token = _credential(fresh, tenant["tenantId"], registration["syncAppId"], registration["syncAppSecret"]).get_token(
        GRAPH_SCOPE
    )
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["tid"] == tenant["tenantId"]
    assert claims["appid"] == registration["syncAppId"]
    assert set(claims["roles"]) == set(tenant["consents"][registration["syncAppId"]]["https://graph.microsoft.com"])
    assert {"iss", "oid", "iat", "nbf", "exp", "ver"} <= claims.keys()
    # The signature verifies against the published JWKS.
    jwks = fresh.http.get(f"{fresh.authority}/{tenant['tenantId']}/discovery/v2.0/keys").json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    jwt.decode(token.token, key, algorithms=["RS256"], audience="https://graph.microsoft.com")


@pytest.mark.parametrize(
    ("tenant_key", "code"),
    [("app-missing", "AADSTS700016"), ("consent-missing", "AADSTS65001"), ("gdap-unauthorized", "AADSTS90099")],
)
def test_tenant_errors_surface_as_client_authentication_error(fresh: Sim, tenant_key: str, code: str) -> None:
    registration = fresh.scenario()["registrations"][0]
    tenant = fresh.tenant(tenant_key)
    with pytest.raises(ClientAuthenticationError, match=code):
        _credential(fresh, tenant["tenantId"], registration["syncAppId"], registration["syncAppSecret"]).get_token(
            GRAPH_SCOPE
        )


def test_expired_and_wrong_secrets(fresh: Sim) -> None:
    registrations = {r["displayName"]: r for r in fresh.scenario()["registrations"]}
    expired = registrations["Lamna Healthcare (expired secret)"]
    wrong = registrations["Trey Research (wrong secret)"]
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000222"):
        _credential(fresh, expired["tenantId"], expired["syncAppId"], expired["syncAppSecret"]).get_token(GRAPH_SCOPE)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        _credential(fresh, wrong["tenantId"], wrong["syncAppId"], wrong["syncAppSecret"]).get_token(GRAPH_SCOPE)


def test_unknown_tenant_reports_90002(fresh: Sim) -> None:
    # As with the real service, MSAL's OIDC discovery fails first (400 invalid_tenant with
    # AADSTS90002 in the body), and azure-identity reports only "Unable to get authority configuration".
    registration = fresh.scenario()["registrations"][0]
    tenant = fresh.tenant("tenant-gone")
    meta = fresh.http.get(f"{fresh.authority}/{tenant['tenantId']}/v2.0/.well-known/openid-configuration")
    assert meta.status_code == 400 and meta.json()["error_description"].startswith("AADSTS90002: ")
    with pytest.raises(ClientAuthenticationError, match="Unable to get authority configuration"):
        _credential(fresh, tenant["tenantId"], registration["syncAppId"], registration["syncAppSecret"]).get_token(
            GRAPH_SCOPE
        )
    raw = fresh.http.post(
        f"{fresh.authority}/{tenant['tenantId']}/oauth2/v2.0/token",
        data={
            "client_id": registration["syncAppId"],
            "client_secret": "x",
            "scope": GRAPH_SCOPE,
            "grant_type": "client_credentials",
        },
    )
    assert raw.status_code == 400
    assert raw.json()["error"] == "invalid_request"
    assert raw.json()["error_codes"] == [90002]


def test_error_body_has_entra_shape(fresh: Sim) -> None:
    registration = fresh.scenario()["registrations"][0]
    tenant = fresh.tenant("healthy-gdap")
    response = fresh.http.post(
        f"{fresh.authority}/{tenant['tenantId']}/oauth2/v2.0/token",
        data={
            "client_id": registration["syncAppId"],
            "client_secret": registration["syncAppSecret"],
            "scope": "https://example.contoso.com/.default",
            "grant_type": "client_credentials",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_scope"
    assert body["error_description"].startswith("AADSTS70011: ")
    assert "\r\nTrace ID: " in body["error_description"] and "\r\nCorrelation ID: " in body["error_description"]
    assert body["error_codes"] == [70011]
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= body.keys()
    wrong = fresh.http.post(
        f"{fresh.authority}/{tenant['tenantId']}/oauth2/v2.0/token",
        data={
            "client_id": registration["syncAppId"],
            "client_secret": "nope",
            "scope": GRAPH_SCOPE,
            "grant_type": "client_credentials",
        },
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_domain_name_tenant_and_metadata(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-dap")
    meta = fresh.http.get(
        f"{fresh.authority}/{tenant['defaultDomainName']}/v2.0/.well-known/openid-configuration"
    ).json()
    assert meta["token_endpoint"].endswith(f"/{tenant['tenantId']}/oauth2/v2.0/token")
    assert "authorization_endpoint" in meta and "device_authorization_endpoint" in meta
    common = fresh.http.get(f"{fresh.authority}/organizations/v2.0/.well-known/openid-configuration")
    assert common.status_code == 200


def test_device_code_and_refresh_token(fresh: Sim) -> None:
    app = fresh.app("partner-app")
    partner = fresh.scenario()["partner"]["tenantId"]
    scope = "https://api.partnercenter.microsoft.com/user_impersonation offline_access"
    flow = fresh.http.post(
        f"{fresh.authority}/organizations/oauth2/v2.0/devicecode", data={"client_id": app["appId"], "scope": scope}
    ).json()
    assert flow["user_code"] and flow["verification_uri"]
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "client_id": app["appId"],
        "device_code": flow["device_code"],
    }
    pending = fresh.http.post(f"{fresh.authority}/organizations/oauth2/v2.0/token", data=grant)
    assert pending.json()["error"] == "authorization_pending"
    done = fresh.http.post(f"{fresh.authority}/organizations/oauth2/v2.0/token", data=grant).json()
    claims = jwt.decode(done["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://api.partnercenter.microsoft.com" and claims["tid"] == partner and claims["upn"]
    refreshed = fresh.http.post(
        f"{fresh.authority}/{partner}/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["appId"],
            "refresh_token": done["refresh_token"],
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()
    assert (
        jwt.decode(refreshed["access_token"], options={"verify_signature": False})["aud"]
        == "https://graph.microsoft.com"
    )
