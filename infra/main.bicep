// memsync on Azure: what `azd up` provisions (azure.yaml). Creates the resource group, then deploys
// resources.bicep into it. Without azd: `az deployment sub create --location <region>
// --template-file infra/main.bicep --parameters environmentName=<name> location=<region>`, or deploy
// infra/resources.bicep into an existing group with `az deployment group create` (docs/deploy.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name (azd sets AZURE_ENV_NAME); part of every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource; must offer Flex Consumption.')
param location string

@description('Resource group to create or update; empty = rg-<environmentName>.')
param resourceGroupName string = ''

// memsync settings, passed through to resources.bicep (same names, same defaults).
@allowed(['public', 'usgov', 'usgovdod', 'china'])
param cloud string = 'public'
param authorityHost string = ''
param graphUrl string = ''
param defenderUrl string = ''
param partnerCenterUrl string = ''
param syncSchedule string = '0 0 */6 * * *'
param expirySchedule string = '0 0 7 * * *'
param expiryThresholdsDays string = '30,14,7,3,1,0'
param syncBudgetSeconds string = '480'
@secure()
param alertWebhookUrl string = ''
@allowed(['generic', 'teams', 'slack'])
param alertWebhookFormat string = 'generic'

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

// Private networking (resources.bicep, docs/deploy.md Deployment hardening); off by default.
param privateNetworking bool = false
param virtualNetworkAddressPrefix string = '10.0.0.0/16'
param appSubnetPrefix string = '10.0.1.0/24'
param privateEndpointSubnetPrefix string = '10.0.2.0/24'

var tags = { 'azd-env-name': environmentName, application: 'memsync' }

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'memsync-resources'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    cloud: cloud
    authorityHost: authorityHost
    graphUrl: graphUrl
    defenderUrl: defenderUrl
    partnerCenterUrl: partnerCenterUrl
    syncSchedule: syncSchedule
    expirySchedule: expirySchedule
    expiryThresholdsDays: expiryThresholdsDays
    syncBudgetSeconds: syncBudgetSeconds
    alertWebhookUrl: alertWebhookUrl
    alertWebhookFormat: alertWebhookFormat
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    privateNetworking: privateNetworking
    virtualNetworkAddressPrefix: virtualNetworkAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
  }
}

// azd stores these in the environment (.azure/<env>/.env); `azd env get-values` prints them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output FUNCTION_APP_HOST_NAME string = resources.outputs.functionAppHostName
output KEY_VAULT_URL string = resources.outputs.keyVaultUrl
output KEY_VAULT_NAME string = resources.outputs.keyVaultName
output STORAGE_ACCOUNT_NAME string = resources.outputs.storageAccountName
