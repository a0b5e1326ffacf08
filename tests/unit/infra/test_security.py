"""The security properties of the Azure footprint, read from the Bicep files (no compiler runs here).

Property names and API versions follow the ARM reference of each resource type:
https://learn.microsoft.com/azure/templates/ (Microsoft.Storage/storageAccounts 2023-05-01,
Microsoft.KeyVault/vaults 2023-07-01, Microsoft.Web/sites 2024-04-01, Microsoft.Authorization/
roleAssignments 2022-04-01). Role ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
"""

from __future__ import annotations

import re

import pytest

from shared.settings import SYNC_POISON_QUEUE, SYNC_QUEUE
from tests.unit.infra import bicep

pytestmark = pytest.mark.unit

ROLE_IDS = {
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# Broad roles the app's identity must never hold (Owner, Contributor, User Access Administrator, Storage
# Account Contributor, Key Vault Administrator, Key Vault Contributor).
FORBIDDEN_ROLE_IDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "f25e0fa2-a7c8-4377-a976-54943a77a395",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def one(type_: str) -> bicep.Resource:
    found = bicep.resources_of(type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.symbol for r in found]}"
    return found[0]


def test_storage_account_takes_no_shared_keys_no_anonymous_blobs_and_tls_1_2():
    storage = one("Microsoft.Storage/storageAccounts")
    assert storage.get("properties.allowSharedKeyAccess") == "false"
    assert storage.get("properties.minimumTlsVersion") == "'TLS1_2'"
    assert storage.get("properties.allowBlobPublicAccess") == "false"
    assert storage.get("properties.supportsHttpsTrafficOnly") == "true"
    assert storage.get("properties.defaultToOAuthAuthentication") == "true"
    containers = bicep.resources_of("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {c.symbol for c in containers} == {"deploymentContainer", "hostContainers"}
    assert all(c.get("properties.publicAccess") == "'None'" for c in containers)


def test_sync_queues_are_the_contracts():
    queues = one("Microsoft.Storage/storageAccounts/queueServices/queues")
    assert queues.get("name") == "queueName"  # one resource per entry of the queueNames parameter
    resources = bicep.load(bicep.INFRA / "resources.bicep").text
    declaration = re.search(r"^var queueNames = \[(.*)\]$", resources, re.M)
    assert declaration
    names = re.findall(r"'([^']+)'", declaration[1])
    assert names == [SYNC_QUEUE, SYNC_POISON_QUEUE]


def test_key_vault_uses_rbac_with_soft_delete_and_purge_protection():
    vault = one("Microsoft.KeyVault/vaults")
    assert vault.get("properties.enableRbacAuthorization") == "true"
    assert vault.get("properties.enableSoftDelete") == "true"
    assert vault.get("properties.enablePurgeProtection") == "true"
    assert vault.get("properties.accessPolicies") is None, "RBAC only: no access policies"
    retention = bicep.load(bicep.INFRA / "modules" / "keyvault.bicep").params["softDeleteRetentionInDays"]
    assert 7 <= int(retention.default or "0") <= 90


def test_function_app_is_flex_consumption_python_3_11_https_only_tls_1_2_no_ftp():
    plan = one("Microsoft.Web/serverfarms")
    assert plan.get("sku.tier") == "'FlexConsumption'"
    assert plan.get("sku.name") == "'FC1'"
    assert plan.get("properties.reserved") == "true"
    app = one("Microsoft.Web/sites")
    assert app.get("kind") == "'functionapp,linux'"
    assert app.get("identity.type") == "'SystemAssigned'"
    assert app.get("properties.httpsOnly") == "true"
    assert app.get("properties.siteConfig.minTlsVersion") == "'1.2'"
    assert app.get("properties.siteConfig.ftpsState") == "'Disabled'"
    assert app.get("properties.functionAppConfig.runtime.name") == "'python'"
    assert app.get("properties.functionAppConfig.runtime.version") == "'3.11'"
    assert app.get("properties.functionAppConfig.deployment.storage.type") == "'blobContainer'"
    assert app.get("properties.functionAppConfig.deployment.storage.authentication.type") == (
        "'SystemAssignedIdentity'")
    assert app.get("properties.functionAppConfig.scaleAndConcurrency.instanceMemoryMB") is not None


def test_basic_publishing_credentials_are_off_for_ftp_and_scm():
    policies = bicep.resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {bicep.literal(p.get("name") or "") for p in policies} == {"ftp", "scm"}
    assert all(p.get("properties.allow") == "false" for p in policies)


def test_host_storage_is_identity_based_and_flex_deprecated_settings_are_absent():
    settings = bicep.app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in settings
    # https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
    deprecated = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                  "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE",
                  "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "APPINSIGHTS_INSTRUMENTATIONKEY"}
    assert not deprecated & set(settings)


def test_no_key_or_connection_string_is_ever_read_or_written():
    for f in bicep.all_files():
        for marker in ("listKeys(", "listConnectionStrings(", "AccountKey=", "SharedAccessSignature"):
            assert marker not in f.text, f"{f.path.name} uses {marker}"


def test_application_insights_sits_on_log_analytics_with_entra_only_ingestion():
    insights = one("Microsoft.Insights/components")
    assert insights.get("properties.WorkspaceResourceId") == "logAnalytics.id"
    assert insights.get("properties.DisableLocalAuth") in {"true", "entraAuthOnly"}
    assert bicep.load(bicep.INFRA / "modules" / "monitoring.bicep").params["entraAuthOnly"].default == "true"
    settings = bicep.app_settings()
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "'Authorization=AAD'"


# The resources a role may be scoped to (role-assignments.bicep): the account for queues and tables, the
# three containers the app and its host use for blobs, the vault, the Application Insights component.
SCOPES = {"storage", "deploymentContainer", "hostsContainer", "secretsContainer", "vault", "appInsights"}


def test_role_assignments_are_the_least_privileged_built_in_roles_for_a_service_principal():
    assignments = bicep.resources_of("Microsoft.Authorization/roleAssignments")
    used: dict[str, set[str]] = {}
    roles_file = bicep.load(bicep.INFRA / "modules" / "role-assignments.bicep")
    ids = dict(re.findall(r"^\s*(\w+):\s*'(" + GUID.pattern + r")'", roles_file.text, re.M))
    declared = {r.symbol for r in roles_file.resources if r.existing}
    for a in assignments:
        assert a.get("properties.principalType") == "'ServicePrincipal'", a.symbol
        assert a.get("properties.principalId") == "principalId", a.symbol
        scope = a.get("scope")
        assert scope in SCOPES and scope in declared, f"{a.symbol}: scoped to {scope}, not a resource"
        definition = a.get("properties.roleDefinitionId") or ""
        m = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)", definition)
        assert m, f"{a.symbol}: {definition}"
        used.setdefault(ids[m[1]], set()).add(scope)
        # The assignment name is deterministic per (scope, principal, role), so redeploys are idempotent.
        assert (a.get("name") or "").startswith(f"guid({scope}.id, principalId, roles.{m[1]})")
    assert set(used) == set(ROLE_IDS), {ROLE_IDS.get(r, r) for r in set(used) ^ set(ROLE_IDS)}
    assert used["b86a8fe4-44ce-4948-aee5-eccb2c155cd7"] == {"vault"}
    assert used["3913510d-42f4-4e42-8a64-420c390055eb"] == {"appInsights"}
    for storage_role in ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"):
        assert used[storage_role] == {"storage"}
    # Blob data: the deployment container and the host's two containers, never the whole account
    # (test_hardening.py follows each container to its name).
    assert used["b7e6dc6d-f1e8-4753-8033-0f276bb0955b"] == {"deploymentContainer", "hostsContainer", "secretsContainer"}


def test_no_broad_role_appears_anywhere():
    for f in bicep.all_files():
        assert not FORBIDDEN_ROLE_IDS & set(GUID.findall(f.text)), f.path.name


def test_the_role_principal_is_the_function_apps_own_identity():
    roles_module = bicep.load(bicep.INFRA / "resources.bicep").modules["roles"]
    assert roles_module[1]["principalId"] == "functionApp.outputs.principalId"
    assert bicep.load(bicep.INFRA / "modules" / "function-app.bicep").outputs["principalId"] == (
        "app.identity.principalId")


def test_azd_provisions_main_and_deploys_this_project_as_service_api():
    """azure.yaml (read line by line: no YAML library in the dev requirements)."""
    text = (bicep.INFRA.parent / "azure.yaml").read_text(encoding="utf-8")
    lines = [line.split("#")[0].rstrip() for line in text.splitlines()]
    services = lines[lines.index("services:") + 1 :]
    assert services[0] == "  api:"
    api = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in services[1:4])}
    assert api == {"project": ".", "language": "python", "host": "function"}
    assert "  provider: bicep" in lines
    assert "  path: infra" in lines
    assert "  module: main" in lines
    # azd finds the app to deploy to by this tag.
    app = one("Microsoft.Web/sites")
    assert "'azd-service-name': azdServiceName" in (app.get("tags") or "")
    assert bicep.load(bicep.INFRA / "modules" / "function-app.bicep").params["azdServiceName"].default == "'api'"
