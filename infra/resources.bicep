// memsync's Azure footprint inside one resource group. `main.bicep` (what `azd up` runs) calls this
// module after creating the group; `az deployment group create --template-file infra/resources.bicep`
// deploys it into an existing group. See docs/deploy.md.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Environment name (e.g. prod); part of every resource name and of the azd-env-name tag.')
param environmentName string

@description('Region; Flex Consumption is not offered everywhere: `az functionapp list-flexconsumption-locations`.')
param location string = resourceGroup().location

// ---- memsync settings (docs/api.md, Settings); defaults equal shared/settings.py's -----------------------

@allowed(['public', 'usgov', 'usgovdod', 'china'])
@description('MEMSYNC_CLOUD: the Microsoft cloud of the customer tenants; picks the Entra, Graph, Defender and Partner Center endpoints.')
param cloud string = 'public'

@description('MEMSYNC_AUTHORITY_HOST; empty = the cloud\'s Entra authority host.')
param authorityHost string = ''

@description('MEMSYNC_GRAPH_URL; empty = the cloud\'s Microsoft Graph.')
param graphUrl string = ''

@description('MEMSYNC_DEFENDER_URL; empty = the cloud\'s Defender for Endpoint API.')
param defenderUrl string = ''

@description('MEMSYNC_PARTNER_CENTER_URL; empty = the cloud\'s Partner Center API.')
param partnerCenterUrl string = ''

@description('MEMSYNC_SYNC_SCHEDULE: NCRONTAB (six fields, UTC) of the scheduled sync.')
param syncSchedule string = '0 0 */6 * * *'

@description('MEMSYNC_EXPIRY_SCHEDULE: NCRONTAB (six fields, UTC) of the secret-expiry check.')
param expirySchedule string = '0 0 7 * * *'

@description('MEMSYNC_EXPIRY_THRESHOLDS_DAYS: days-left marks that raise an alert, comma-separated.')
param expiryThresholdsDays string = '30,14,7,3,1,0'

@description('MEMSYNC_SYNC_BUDGET_SECONDS: how long one execution of a tenant sync reads, 30-540 seconds.')
param syncBudgetSeconds string = '480'

@secure()
@description('MEMSYNC_ALERT_WEBHOOK_URL (optional). Stored in Key Vault; the app setting is a Key Vault reference.')
param alertWebhookUrl string = ''

@allowed(['generic', 'teams', 'slack'])
@description('MEMSYNC_ALERT_WEBHOOK_FORMAT: body shape of the alert webhook.')
param alertWebhookFormat string = 'generic'

// ---- sizing ----------------------------------------------------------------------------------------

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
param storageSkuName string = 'Standard_LRS'

@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

param tags object = {}

// ---- network (docs/deploy.md, Deployment hardening) --------------------------------------------------------

@description('Private networking: a virtual network with the Function App\'s virtual network integration, private endpoints (and private DNS zones) for the storage account\'s blob, queue and table services and for the vault, and public network access off on both. Off (the default): no network is created and the storage account and the vault accept public traffic as before, each request still authenticated with Entra ID and authorized by an RBAC role.')
param privateNetworking bool = false

@description('Address space of the virtual network (privateNetworking only).')
param virtualNetworkAddressPrefix string = '10.0.0.0/16'

@description('Subnet of the Function App\'s virtual network integration, delegated to Microsoft.App/environments (privateNetworking only).')
param appSubnetPrefix string = '10.0.1.0/24'

@description('Subnet of the four private endpoints (privateNetworking only).')
param privateEndpointSubnetPrefix string = '10.0.2.0/24'

// ---- names -----------------------------------------------------------------------------------------

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, { 'azd-env-name': environmentName, application: 'memsync' })
var names = {
  plan: 'plan-memsync-${token}'
  app: 'func-memsync-${token}'
  storage: 'stmemsync${take(token, 11)}' // 3-24 lower-case letters and digits
  vault: 'kv-memsync-${take(token, 11)}' // 3-24 characters
  logAnalytics: 'log-memsync-${token}'
  appInsights: 'appi-memsync-${token}'
  deploymentContainer: 'app-package'
  vnet: 'vnet-memsync-${token}'
  privateEndpoints: 'pe-memsync-${token}'
}
// The sync queue of docs/api.md (shared/settings.py SYNC_QUEUE, SYNC_POISON_QUEUE).
var queueNames = ['memsync-sync', 'memsync-sync-poison']
var alertWebhookSecretName = 'alert-webhook-url'

module monitoring 'modules/monitoring.bicep' = {
  name: 'memsync-monitoring'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
  }
}

module storage 'modules/storage.bicep' = {
  name: 'memsync-storage'
  params: {
    location: location
    tags: allTags
    name: names.storage
    skuName: storageSkuName
    deploymentContainerName: names.deploymentContainer
    queueNames: queueNames
    privateNetworking: privateNetworking
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'memsync-keyvault'
  params: {
    location: location
    tags: allTags
    name: names.vault
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    alertWebhookUrl: alertWebhookUrl
    alertWebhookSecretName: alertWebhookSecretName
    privateNetworking: privateNetworking
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module network 'modules/network.bicep' = if (privateNetworking) {
  name: 'memsync-network'
  params: {
    location: location
    tags: allTags
    virtualNetworkName: names.vnet
    addressPrefix: virtualNetworkAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    privateEndpointNamePrefix: names.privateEndpoints
    storageAccountId: storage.outputs.id
    keyVaultId: vault.outputs.id
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'memsync-functionapp'
  params: {
    location: location
    tags: allTags
    planName: names.plan
    appName: names.app
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    storageAccountName: storage.outputs.name
    blobServiceUri: storage.outputs.blobServiceUri
    queueServiceUri: storage.outputs.queueServiceUri
    tableServiceUri: storage.outputs.tableServiceUri
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultName: vault.outputs.name
    keyVaultUri: vault.outputs.vaultUri
    virtualNetworkSubnetId: privateNetworking ? network.outputs.appSubnetId : ''
    cloud: cloud
    authorityHost: authorityHost
    graphUrl: graphUrl
    defenderUrl: defenderUrl
    partnerCenterUrl: partnerCenterUrl
    syncSchedule: syncSchedule
    expirySchedule: expirySchedule
    expiryThresholdsDays: expiryThresholdsDays
    syncBudgetSeconds: syncBudgetSeconds
    alertWebhookFormat: alertWebhookFormat
    hasAlertWebhook: !empty(alertWebhookUrl)
    alertWebhookSecretName: alertWebhookSecretName
  }
}

module roles 'modules/role-assignments.bicep' = {
  name: 'memsync-roles'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    hostsContainerName: storage.outputs.hostsContainerName
    secretsContainerName: storage.outputs.secretsContainerName
    keyVaultName: vault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output functionAppPrincipalId string = functionApp.outputs.principalId
output keyVaultName string = vault.outputs.name
output keyVaultUrl string = vault.outputs.vaultUri
output storageAccountName string = storage.outputs.name
