"""Defender, Partner Center and Key Vault (the real SecretClient), plus faults and the control API."""

from __future__ import annotations

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from .conftest import Sim

pytestmark = pytest.mark.integration
DEFENDER = "https://api.securitycenter.microsoft.com"
GRAPH = "https://graph.microsoft.com"
PC = "https://api.partnercenter.microsoft.com"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_defender_paging_filter_and_errors(fresh: Sim) -> None:
    tenant = fresh.tenant("indirect")
    token = fresh.token(tenant["tenantId"], "sync-app", DEFENDER)
    first = fresh.http.get(f"{fresh.defender}/api/machines?$top=5", headers=_bearer(token)).json()
    assert first["@odata.context"].endswith("/api/$metadata#Machines")
    seen = [m["id"] for m in first["value"]]
    link = first.get("@odata.nextLink")
    while link:
        page = fresh.http.get(link, headers=_bearer(token)).json()
        seen += [m["id"] for m in page["value"]]
        link = page.get("@odata.nextLink")
    truth = fresh.http.get(f"{fresh.url}/tenants/{tenant['tenantId']}/truth").json()
    assert seen == [m["id"] for m in truth["machines"]]
    machine = truth["machines"][0]
    assert {
        "id",
        "computerDnsName",
        "aadDeviceId",
        "healthStatus",
        "riskScore",
        "exposureLevel",
        "onboardingStatus",
        "lastSeen",
    } <= machine.keys()
    aad = next(m["aadDeviceId"] for m in truth["machines"] if m["aadDeviceId"])
    one = fresh.http.get(
        f"{fresh.defender}/api/machines", params={"$filter": f"aadDeviceId eq '{aad}'"}, headers=_bearer(token)
    ).json()
    assert [m["aadDeviceId"] for m in one["value"]] == [aad]
    active = fresh.http.get(
        f"{fresh.defender}/api/machines", params={"$filter": "healthStatus ne 'Active'"}, headers=_bearer(token)
    ).json()
    assert all(m["healthStatus"] != "Active" for m in active["value"])
    no_defender = fresh.tenant("no-defender")
    token_nd = fresh.token(no_defender["tenantId"], "sync-app", DEFENDER)
    missing = fresh.http.get(f"{fresh.defender}/api/machines", headers=_bearer(token_nd))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    graph_token = fresh.token(tenant["tenantId"], "sync-app", GRAPH)
    assert fresh.http.get(f"{fresh.defender}/api/machines", headers=_bearer(graph_token)).status_code == 401
    fresh.http.put(
        f"{fresh.url}/tenants/{tenant['tenantId']}/consents/{fresh.app('sync-app')['appId']}",
        json={"roles": {"graph": []}},
    )
    no_role = fresh.token(tenant["tenantId"], "sync-app", DEFENDER)
    assert fresh.http.get(f"{fresh.defender}/api/machines", headers=_bearer(no_role)).status_code == 403


def test_defender_rate_limit(fresh: Sim) -> None:
    tenant = fresh.tenant("indirect")
    token = fresh.token(tenant["tenantId"], "sync-app", DEFENDER)
    statuses = [
        fresh.http.get(f"{fresh.defender}/api/machines?$top=1", headers=_bearer(token)).status_code for _ in range(101)
    ]
    assert statuses[:100] == [200] * 100
    assert statuses[100] == 429
    assert fresh.http.patch(f"{fresh.url}/limits", json={"enabled": False}).json() == {"enabled": False}
    assert fresh.http.get(f"{fresh.defender}/api/machines?$top=1", headers=_bearer(token)).status_code == 200


def test_partner_center_customers_and_consent(fresh: Sim) -> None:
    scenario = fresh.scenario()
    partner = scenario["partner"]["tenantId"]
    token = fresh.token(partner, "partner-app", PC)
    first = fresh.http.get(f"{fresh.partner_center}/v1/customers?size=4", headers=_bearer(token)).json()
    customers = list(first["items"])
    page = first
    while "next" in page["links"]:
        nxt = page["links"]["next"]
        headers = {h["key"]: h["value"] for h in nxt["headers"]}
        assert "seekOperation=Next" in nxt["uri"]
        page = fresh.http.get(f"{fresh.partner_center}{nxt['uri']}", headers={**_bearer(token), **headers}).json()
        customers += page["items"]
    listed = {c["companyProfile"]["tenantId"] for c in customers}
    assert fresh.tenant("tenant-gone")["tenantId"] in listed
    assert fresh.tenant("lamna")["tenantId"] not in listed
    assert customers[0]["companyProfile"]["domain"] and customers[0]["relationshipToPartner"]

    target = fresh.tenant("app-missing")
    sync = fresh.app("sync-app")
    body = {
        "displayName": "memsync",
        "applicationId": sync["appId"],
        "applicationGrants": [
            {
                "enterpriseApplicationId": "00000003-0000-0000-c000-000000000000",
                "scope": "DeviceManagementManagedDevices.Read.All,DeviceManagementApps.Read.All",
            }
        ],
    }
    url = f"{fresh.partner_center}/v1/customers/{target['tenantId']}/applicationconsents"
    assert fresh.http.post(url, json=body, headers=_bearer(token)).status_code == 201
    conflict = fresh.http.post(url, json=body, headers=_bearer(token))
    assert conflict.status_code == 409 and conflict.json()["description"]
    graph_token = fresh.token(target["tenantId"], "sync-app", GRAPH)
    assert set(jwt.decode(graph_token, options={"verify_signature": False})["roles"]) == {
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementApps.Read.All",
    }
    outsider = fresh.tenant("lamna")
    forbidden = fresh.http.post(
        f"{fresh.partner_center}/v1/customers/{outsider['tenantId']}/applicationconsents",
        json=body,
        headers=_bearer(token),
    )
    assert forbidden.status_code == 403


def test_key_vault_with_real_secret_client(fresh: Sim) -> None:
    scenario = fresh.scenario()
    host = scenario["hostIdentity"]
    credential = ClientSecretCredential(
        host["tenantId"],
        host["clientId"],
        host["clientSecret"],
        authority=fresh.authority,
        disable_instance_discovery=True,
    )
    client = SecretClient(fresh.vault, credential, verify_challenge_resource=False)
    first = client.set_secret("integration-abc-sync", "one", content_type="text/plain", tags={"integration": "abc"})
    second = client.set_secret("integration-abc-sync", "two")
    assert client.get_secret("integration-abc-sync").value == "two"
    assert client.get_secret("integration-abc-sync", first.properties.version).value == "one"
    assert [p.name for p in client.list_properties_of_secrets()] == ["integration-abc-sync"]
    assert len(list(client.list_properties_of_secret_versions("integration-abc-sync"))) == 2
    client.begin_delete_secret("integration-abc-sync").wait()
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("integration-abc-sync")
    assert client.get_deleted_secret("integration-abc-sync").name == "integration-abc-sync"
    client.begin_recover_deleted_secret("integration-abc-sync").wait()
    assert client.get_secret("integration-abc-sync").properties.version == second.properties.version
    client.begin_delete_secret("integration-abc-sync").wait()
    client.purge_deleted_secret("integration-abc-sync")
    assert list(client.list_deleted_secrets()) == []
    # Only the host identity may use the vault.
    sync = fresh.app("sync-app")
    other = ClientSecretCredential(
        scenario["partner"]["tenantId"],
        sync["appId"],
        sync["secrets"][0]["value"],
        authority=fresh.authority,
        disable_instance_discovery=True,
    )
    with pytest.raises(HttpResponseError) as info:
        SecretClient(fresh.vault, other, verify_challenge_resource=False).get_secret("x")
    assert info.value.status_code == 403
    challenge = fresh.http.get(f"{fresh.vault}secrets/x?api-version=7.5")
    assert challenge.status_code == 401
    assert f'/{host["tenantId"]}", resource="https://vault.azure.net"' in challenge.headers["WWW-Authenticate"]


def test_faults_throttle_reset_and_mid_listing(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-gdap")
    token = fresh.token(tenant["tenantId"], "sync-app", GRAPH)
    url = f"{fresh.graph}/v1.0/deviceManagement/managedDevices"
    throttled = fresh.tenant("throttled")
    t_token = fresh.token(throttled["tenantId"], "sync-app", GRAPH)
    storm = fresh.http.get(url, headers=_bearer(t_token))
    assert storm.status_code == 429 and storm.headers["Retry-After"] == "1"
    assert storm.json()["error"]["code"] == "TooManyRequests"
    unreachable = fresh.tenant("unreachable")
    u_token = fresh.token(unreachable["tenantId"], "sync-app", GRAPH)
    with pytest.raises(httpx.TransportError):
        fresh.http.get(url, headers=_bearer(u_token))
    rule = {
        "service": "graph",
        "tenantId": tenant["tenantId"],
        "pathContains": "managedDevices",
        "kind": "status",
        "status": 503,
        "afterRequests": 1,
        "count": 1,
    }
    assert fresh.http.post(f"{fresh.url}/faults", json={"rules": [rule]}).status_code == 201
    page1 = fresh.http.get(f"{url}?$top=5", headers=_bearer(token))
    assert page1.status_code == 200
    page2 = fresh.http.get(page1.json()["@odata.nextLink"], headers=_bearer(token))
    assert page2.status_code == 503
    retry = fresh.http.get(page1.json()["@odata.nextLink"], headers=_bearer(token))
    assert retry.status_code == 200
    fresh.http.post(
        f"{fresh.url}/faults",
        json={"rules": [{"service": "graph", "kind": "throttle", "retryAfter": "2.128", "count": 1}]},
    )
    assert fresh.http.get(f"{url}?$top=1", headers=_bearer(token)).headers["Retry-After"] == "2.128"
    log = fresh.http.get(f"{fresh.url}/requests", params={"service": "graph", "tenantId": tenant["tenantId"]}).json()[
        "value"
    ]
    assert [e["status"] for e in log][-4:] == [200, 503, 200, 429]
    assert log[-1]["throttled"] is True
    counters = fresh.http.get(f"{fresh.url}/counters").json()
    assert counters["byService"]["graph"]["503"] >= 1


def test_control_mutations_and_secrets(fresh: Sim) -> None:
    tenant = fresh.tenant("healthy-dap")
    tid = tenant["tenantId"]
    token = fresh.token(tid, "sync-app", GRAPH)
    created = fresh.http.post(
        f"{fresh.url}/tenants/{tid}/managedDevices",
        json={"devices": [{"deviceName": "Zoë’s-MacBook", "operatingSystem": "macOS"}]},
    ).json()["ids"]
    patched = fresh.http.patch(
        f"{fresh.url}/tenants/{tid}/managedDevices/{created[0]}", json={"complianceState": "noncompliant"}
    ).json()
    assert patched["complianceState"] == "noncompliant"
    listed = fresh.http.get(f"{fresh.graph}/v1.0/deviceManagement/managedDevices", headers=_bearer(token)).json()[
        "value"
    ]
    assert any(d["id"] == created[0] and d["deviceName"] == "Zoë’s-MacBook" for d in listed)
    truth = fresh.http.get(f"{fresh.url}/tenants/{tid}/truth").json()
    victim = next(a for a in truth["detectedApps"] if a["deviceCount"] >= 1)
    device_in_app = truth["appDevices"][victim["id"]][0]
    assert fresh.http.delete(f"{fresh.url}/tenants/{tid}/managedDevices/{device_in_app}").status_code == 204
    after = fresh.http.get(f"{fresh.url}/tenants/{tid}/truth").json()
    assert all(d["id"] != device_in_app for d in after["managedDevices"])
    assert next(a for a in after["detectedApps"] if a["id"] == victim["id"])["deviceCount"] == victim["deviceCount"] - 1
    # Secrets: a new one works, an expired one gives 7000222.
    sync = fresh.app("sync-app")
    new_secret = fresh.http.post(f"{fresh.url}/apps/{sync['appId']}/secrets", json={"expiresInDays": 30}).json()
    assert new_secret["hint"] == new_secret["value"][:3]
    fresh.token(tid, "sync-app", GRAPH, secret=new_secret["value"])
    fresh.http.patch(
        f"{fresh.url}/apps/{sync['appId']}/secrets/{new_secret['keyId']}", json={"endDateTime": "2020-01-01T00:00:00Z"}
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000222"):
        ClientSecretCredential(
            tid, sync["appId"], new_secret["value"], authority=fresh.authority, disable_instance_discovery=True
        ).get_token(f"{GRAPH}/.default")
    # Revoking consent removes the service principal: 700016.
    assert fresh.http.delete(f"{fresh.url}/tenants/{tid}/consents/{sync['appId']}").status_code == 204
    failed = fresh.http.post(
        f"{fresh.authority}/{tid}/oauth2/v2.0/token",
        data={
            "client_id": sync["appId"],
            "client_secret": sync["secrets"][0]["value"],
            "scope": f"{GRAPH}/.default",
            "grant_type": "client_credentials",
        },
    )
    assert failed.json()["error_codes"] == [700016]
    fresh.http.patch(f"{fresh.url}/tenants/{tid}", json={"intuneLicensed": False})
    assert fresh.tenant("healthy-dap")["intuneLicensed"] is False
    assert fresh.http.get(f"{fresh.url}/nothing").status_code == 404
    assert fresh.http.post(f"{fresh.url}/faults", content=b"{not json").status_code == 400
    assert (
        fresh.http.get(
            f"{fresh.partner_center}/v1/unknown",
            headers=_bearer(fresh.token(fresh.scenario()["partner"]["tenantId"], "partner-app", PC)),
        ).status_code
        == 404
    )


def test_scenario_document(fresh: Sim) -> None:
    scenario = fresh.scenario()
    assert scenario["name"] == "edge"
    assert {"tenantId", "clientId", "clientSecret"} <= scenario["hostIdentity"].keys()
    kinds = sorted(r["kind"] for r in scenario["registrations"])
    assert kinds == ["multiTenant", "singleTenant", "singleTenant"]
    codes = {t["expected"]["errorCode"] for t in scenario["tenants"]}
    assert {
        "consentMissing",
        "appNotFoundInTenant",
        "permissionMissing",
        "intuneNotLicensed",
        "defenderUnavailable",
        "throttled",
        "unreachable",
        "tenantNotFound",
        "secretExpired",
        "invalidSecret",
        None,
    } <= codes
    env_keys = list(fresh.env)
    assert env_keys == [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "MEMSYNC_AUTHORITY_HOST",
        "MEMSYNC_GRAPH_URL",
        "MEMSYNC_DEFENDER_URL",
        "MEMSYNC_PARTNER_CENTER_URL",
        "MEMSYNC_KEY_VAULT_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "MEMSYNC_SIM_URL",
    ]
