"""Deployment hardening (docs/deploy.md, "Deployment hardening"), read from the Bicep files (no compiler runs
here): the private-network option, the diagnostic settings, and the blob role on single containers.

Resource types, API versions and properties follow the ARM reference, https://learn.microsoft.com/azure/templates/
(Microsoft.Network/virtualNetworks and privateEndpoints 2024-05-01, Microsoft.Network/privateDnsZones 2024-06-01,
Microsoft.Insights/diagnosticSettings 2021-05-01-preview, Microsoft.Web/sites 2024-04-01 `virtualNetworkSubnetId`).
Flex Consumption's subnet delegation: https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations.
Private-link group ids: https://learn.microsoft.com/azure/private-link/private-endpoint-overview#private-link-resource;
their DNS zones: https://learn.microsoft.com/azure/private-link/private-endpoint-dns.
"""

from __future__ import annotations

import pytest

from tests.unit.infra import bicep

pytestmark = pytest.mark.unit

MODULES = bicep.INFRA / "modules"
BLOB_DATA_OWNER = "storageBlobDataOwner"
# The private DNS zone of each sub-resource, per cloud (private-endpoint-dns), with that cloud's
# environment() suffixes (https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-functions-deployment#environment).
CLOUDS = {
    "AzureCloud": (
        {"environment().suffixes.storage": "core.windows.net",
         "environment().suffixes.keyvaultDns": ".vault.azure.net"},
        {"blob": "privatelink.blob.core.windows.net", "queue": "privatelink.queue.core.windows.net",
         "table": "privatelink.table.core.windows.net", "vault": "privatelink.vaultcore.azure.net"},
    ),
    "AzureUSGovernment": (
        {"environment().suffixes.storage": "core.usgovcloudapi.net",
         "environment().suffixes.keyvaultDns": ".vault.usgovcloudapi.net"},
        {"blob": "privatelink.blob.core.usgovcloudapi.net", "queue": "privatelink.queue.core.usgovcloudapi.net",
         "table": "privatelink.table.core.usgovcloudapi.net", "vault": "privatelink.vaultcore.usgovcloudapi.net"},
    ),
}


def load(name: str) -> bicep.BicepFile:
    return bicep.load(bicep.INFRA / name)


def resource(f: bicep.BicepFile, symbol: str) -> bicep.Resource:
    found = [r for r in f.resources if r.symbol == symbol]
    assert len(found) == 1, f"{f.path.name}: no single resource {symbol}"
    return found[0]


def of_type(f: bicep.BicepFile, type_: str) -> list[bicep.Resource]:
    return [r for r in f.resources if r.type == type_ and not r.existing]


def value(f: bicep.BicepFile, text: str | None) -> str:
    """A value's text, with a bare variable name replaced by the variable's value."""
    assert text is not None
    return f.variables.get(text.strip(), text)


def private_links() -> dict[str, dict[str, str]]:
    """network.bicep's `privateLinks`: group id -> its entry (raw values)."""
    declared = load("modules/network.bicep").variables["privateLinks"]
    entries = [bicep.object_keys(item) for item in bicep.array_items(declared)]
    return {bicep.literal(e["groupId"]): e for e in entries}


# ---- 1. the private-network option --------------------------------------------------------------------


def test_private_networking_is_a_parameter_off_by_default_that_reaches_every_module_it_changes():
    for name in ("main.bicep", "resources.bicep", "modules/storage.bicep", "modules/keyvault.bicep"):
        param = load(name).params.get("privateNetworking")
        assert param is not None and param.type == "bool", name
        assert param.default == "false", f"{name}: privateNetworking must default to false"
    assert load("main.bicep").modules["resources"][1]["privateNetworking"] == "privateNetworking"
    resources = load("resources.bicep")
    for module in ("storage", "vault"):
        assert resources.modules[module][1]["privateNetworking"] == "privateNetworking", module
    assert resources.modules["network"][0] == "modules/network.bicep"
    assert resources.module_headers["network"] == "if (privateNetworking)", "no network unless asked for"


@pytest.mark.parametrize(("name", "type_"), [
    ("modules/storage.bicep", "Microsoft.Storage/storageAccounts"),
    ("modules/keyvault.bicep", "Microsoft.KeyVault/vaults"),
])
def test_public_network_access_is_off_with_the_option_and_unchanged_without(name, type_):
    (target,) = of_type(load(name), type_)
    assert bicep.literal(target.get("properties.networkAcls.bypass") or "") == "AzureServices"
    for on, expected in ((True, ("Disabled", "Deny")), (False, ("Enabled", "Allow"))):
        names = {"privateNetworking": on}
        got = (bicep.evaluate(target.get("properties.publicNetworkAccess") or "", names),
               bicep.evaluate(target.get("properties.networkAcls.defaultAction") or "", names))
        assert got == expected, f"{name} with privateNetworking={on}: {got}"


def test_the_virtual_network_has_a_subnet_delegated_to_microsoft_app_environments_and_one_for_endpoints():
    network = load("modules/network.bicep")
    (vnet,) = of_type(network, "Microsoft.Network/virtualNetworks")
    assert vnet.api_version == "2024-05-01"
    delegated: dict[str, list[str]] = {}
    for item in bicep.array_items(vnet.get("properties.subnets") or "[]"):
        subnet = bicep.object_keys(item)
        name = bicep.literal(value(network, subnet["name"]))
        delegations = bicep.object_keys(subnet["properties"]).get("delegations", "[]")
        delegated[name] = [bicep.literal(bicep.object_keys(bicep.object_keys(d)["properties"])["serviceName"])
                           for d in bicep.array_items(delegations)]
    app_subnet = resource(network, "appSubnet")
    endpoint_subnet = resource(network, "privateEndpointSubnet")
    assert app_subnet.existing and app_subnet.get("parent") == "vnet"
    assert endpoint_subnet.existing and endpoint_subnet.get("parent") == "vnet"
    app_name = bicep.literal(value(network, app_subnet.get("name")))
    endpoint_name = bicep.literal(value(network, endpoint_subnet.get("name")))
    assert delegated == {app_name: ["Microsoft.App/environments"], endpoint_name: []}
    assert network.outputs["appSubnetId"] == "appSubnet.id"


def test_the_function_app_joins_the_delegated_subnet_with_the_option_only():
    app = resource(load("modules/function-app.bicep"), "app")
    subnet = app.get("properties.virtualNetworkSubnetId")
    assert subnet is not None, "Flex Consumption: virtualNetworkSubnetId is a site property"
    assert app.get("properties.functionAppConfig.virtualNetworkSubnetId") is None
    assert load("modules/function-app.bicep").params["virtualNetworkSubnetId"].default == "''"
    assert bicep.evaluate(subnet, {"virtualNetworkSubnetId": "SUBNET", "null": None}) == "SUBNET"
    assert bicep.evaluate(subnet, {"virtualNetworkSubnetId": "", "null": None}) is None
    passed = load("resources.bicep").modules["functionApp"][1]["virtualNetworkSubnetId"]
    names = {"network.outputs.appSubnetId": "SUBNET"}
    assert bicep.evaluate(passed, {**names, "privateNetworking": True}) == "SUBNET"
    assert bicep.evaluate(passed, {**names, "privateNetworking": False}) == ""


def test_private_endpoints_cover_blob_queue_table_and_vault():
    links = private_links()
    assert set(links) == {"blob", "queue", "table", "vault"}
    assert {g: e["target"] for g, e in links.items()} == {
        "blob": "storageAccountId", "queue": "storageAccountId", "table": "storageAccountId", "vault": "keyVaultId"}
    passed = load("resources.bicep").modules["network"][1]
    assert passed["storageAccountId"] == "storage.outputs.id"
    assert passed["keyVaultId"] == "vault.outputs.id"
    assert load("modules/storage.bicep").outputs["id"] == "storage.id"
    assert load("modules/keyvault.bicep").outputs["id"] == "vault.id"

    network = load("modules/network.bicep")
    (endpoints,) = of_type(network, "Microsoft.Network/privateEndpoints")
    assert endpoints.api_version == "2024-05-01"
    assert endpoints.header == "[for link in privateLinks:", "one endpoint per private link"
    assert endpoints.get("properties.subnet.id") == "privateEndpointSubnet.id"
    (connection,) = bicep.array_items(endpoints.get("properties.privateLinkServiceConnections") or "[]")
    connection_properties = bicep.object_keys(bicep.object_keys(connection)["properties"])
    assert connection_properties["privateLinkServiceId"] == "link.target"
    assert bicep.array_items(connection_properties["groupIds"]) == ["link.groupId"]


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_each_endpoint_registers_in_its_private_dns_zone_linked_to_the_vnet(cloud):
    suffixes, expected = CLOUDS[cloud]
    zones_by_group = {g: bicep.evaluate(e["zone"], suffixes) for g, e in private_links().items()}
    assert zones_by_group == expected

    network = load("modules/network.bicep")
    (zones,) = of_type(network, "Microsoft.Network/privateDnsZones")
    assert (zones.api_version, zones.header) == ("2024-06-01", "[for link in privateLinks:")
    assert zones.get("name") == "link.zone"
    assert bicep.literal(zones.get("location") or "") == "global"

    (links,) = of_type(network, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert (links.api_version, links.header) == ("2024-06-01", "[for (link, i) in privateLinks:")
    assert links.get("parent") == "zones[i]"
    assert links.get("properties.virtualNetwork.id") == "vnet.id"
    assert links.get("properties.registrationEnabled") == "false"

    (groups,) = of_type(network, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    assert (groups.api_version, groups.header) == ("2024-05-01", "[for (link, i) in privateLinks:")
    assert groups.get("parent") == "endpoints[i]", "each zone group belongs to the endpoint of its link"
    (config,) = bicep.array_items(groups.get("properties.privateDnsZoneConfigs") or "[]")
    assert bicep.object_keys(bicep.object_keys(config)["properties"])["privateDnsZoneId"] == "zones[i].id"


# ---- 2. diagnostic settings -----------------------------------------------------------------------------


def diagnostic_settings(f: bicep.BicepFile) -> dict[str, bicep.Resource]:
    """Scope symbol -> the diagnostic setting on it."""
    found: dict[str, bicep.Resource] = {}
    for setting in of_type(f, "Microsoft.Insights/diagnosticSettings"):
        assert setting.api_version == "2021-05-01-preview"
        scope = setting.get("scope") or ""
        assert scope not in found, f"{f.path.name}: two settings on {scope}"
        found[scope] = setting
    return found


def enabled_entries(f: bicep.BicepFile, setting: bicep.Resource, key: str) -> set[str]:
    """`category` / `categoryGroup` values of the enabled `logs` or `metrics` entries."""
    entries = set()
    for item in bicep.array_items(value(f, setting.get(f"properties.{key}") or "[]")):
        entry = bicep.object_keys(item)
        if entry.get("enabled") == "true":
            entries.add(bicep.literal(entry.get("category") or entry.get("categoryGroup") or ""))
    return entries


def test_the_workspace_id_is_the_existing_log_analytics_workspace():
    monitoring = load("modules/monitoring.bicep")
    assert resource(monitoring, "logAnalytics").type == "Microsoft.OperationalInsights/workspaces"
    assert monitoring.outputs["logAnalyticsId"] == "logAnalytics.id"
    resources = load("resources.bicep")
    for module in ("storage", "vault"):
        assert resources.modules[module][1]["logAnalyticsWorkspaceId"] == "monitoring.outputs.logAnalyticsId"


def test_the_vault_sends_its_audit_log_to_the_workspace():
    keyvault = load("modules/keyvault.bicep")
    settings = diagnostic_settings(keyvault)
    assert resource(keyvault, "vault").type == "Microsoft.KeyVault/vaults"
    assert "vault" in settings, "no diagnostic setting on the vault"
    audit = settings["vault"]
    assert audit.get("properties.workspaceId") == "logAnalyticsWorkspaceId"
    # AuditEvent, by name or through the `audit` / `allLogs` category group.
    assert enabled_entries(keyvault, audit, "logs") & {"AuditEvent", "audit", "allLogs"}


@pytest.mark.parametrize("service", [
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/queueServices",
    "Microsoft.Storage/storageAccounts/tableServices",
])
def test_each_storage_service_sends_reads_writes_deletes_and_metrics_to_the_workspace(service):
    storage = load("modules/storage.bicep")
    (declared,) = of_type(storage, service)
    assert (declared.get("parent"), bicep.literal(declared.get("name") or "")) == ("storage", "default")
    settings = diagnostic_settings(storage)
    assert declared.symbol in settings, f"no diagnostic setting on {service}/default"
    setting = settings[declared.symbol]
    assert setting.get("properties.workspaceId") == "logAnalyticsWorkspaceId"
    assert enabled_entries(storage, setting, "logs") >= {"StorageRead", "StorageWrite", "StorageDelete"}
    assert "Transaction" in enabled_entries(storage, setting, "metrics")


# ---- 3. the blob role on containers ---------------------------------------------------------------------


def blob_owner_scopes() -> dict[str, bicep.Resource]:
    """Scope symbol -> the resource it names, for each Storage Blob Data Owner assignment."""
    roles = load("modules/role-assignments.bicep")
    scopes: dict[str, bicep.Resource] = {}
    for assignment in of_type(roles, "Microsoft.Authorization/roleAssignments"):
        if f"roles.{BLOB_DATA_OWNER})" in (assignment.get("properties.roleDefinitionId") or ""):
            scope = assignment.get("scope") or ""
            scopes[scope] = resource(roles, scope)
    return scopes


def test_blob_data_owner_is_granted_on_the_deployment_container_not_on_the_account():
    scopes = blob_owner_scopes()
    assert all(r.type == "Microsoft.Storage/storageAccounts/blobServices/containers" for r in scopes.values()), (
        {s: r.type for s, r in scopes.items()})
    by_name = {r.get("name"): r for r in scopes.values()}
    assert "deploymentContainerName" in by_name, "no blob role on the deployment container"
    container = by_name["deploymentContainerName"]
    assert container.existing
    roles = load("modules/role-assignments.bicep")
    blob_service = resource(roles, container.get("parent") or "")
    assert blob_service.type == "Microsoft.Storage/storageAccounts/blobServices"
    assert blob_service.get("parent") == "storage"
    assert resource(roles, "storage").get("name") == "storageAccountName"

    # ... and that container is the one the app deploys from.
    resources = load("resources.bicep")
    assert resources.modules["roles"][1]["deploymentContainerName"] == "storage.outputs.deploymentContainerName"
    storage = load("modules/storage.bicep")
    assert storage.outputs["deploymentContainerName"] == "deploymentContainer.name"
    assert "${deploymentContainer.name}" in storage.outputs["deploymentContainerUrl"]
    assert resources.modules["functionApp"][1]["deploymentContainerUrl"] == "storage.outputs.deploymentContainerUrl"
    app = resource(load("modules/function-app.bicep"), "app")
    assert app.get("properties.functionAppConfig.deployment.storage.value") == "deploymentContainerUrl"


def test_the_other_blob_roles_are_the_functions_host_containers_created_with_the_account():
    scopes = blob_owner_scopes()
    others = sorted(r.get("name") or "" for r in scopes.values() if r.get("name") != "deploymentContainerName")
    assert others == ["hostsContainerName", "secretsContainerName"]
    passed = load("resources.bicep").modules["roles"][1]
    assert passed["hostsContainerName"] == "storage.outputs.hostsContainerName"
    assert passed["secretsContainerName"] == "storage.outputs.secretsContainerName"
    storage = load("modules/storage.bicep")
    assert storage.outputs["hostsContainerName"] == "hostContainers[0].name"
    assert storage.outputs["secretsContainerName"] == "hostContainers[1].name"
    host_containers = resource(storage, "hostContainers")
    assert host_containers.header == "[for containerName in hostContainerNames:"
    assert host_containers.get("name") == "containerName"
    names = [bicep.literal(n) for n in bicep.array_items(storage.variables["hostContainerNames"])]
    # The Functions host's fixed container names (timers and leases; function keys).
    assert names == ["azure-webjobs-hosts", "azure-webjobs-secrets"]
