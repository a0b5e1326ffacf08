// memsync's Function App on the Flex Consumption plan (Linux, Python 3.11), running as its system-assigned
// managed identity. The runtime lives in `functionAppConfig`, not in FUNCTIONS_WORKER_RUNTIME /
// FUNCTIONS_EXTENSION_VERSION app settings, which Flex Consumption deprecates:
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
// Resource shape: https://learn.microsoft.com/azure/azure-functions/functions-infrastructure-as-code?pivots=flex-consumption-plan

param location string
param tags object
param planName string
param appName string
@description('Tag azd uses to find the app that service `api` of azure.yaml deploys to.')
param azdServiceName string = 'api'

// Flex Consumption scale.
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

// Wiring to the other modules.
param storageAccountName string
param blobServiceUri string
param queueServiceUri string
param tableServiceUri string
param deploymentContainerUrl string
param appInsightsConnectionString string
param keyVaultName string
param keyVaultUri string
@description('Subnet (delegated to Microsoft.App/environments) of the virtual network integration; empty = none, the default.')
param virtualNetworkSubnetId string = ''

// memsync's own settings (docs/api.md, Settings). Empty means "not set": the settings module ignores empty
// values, so the cloud's defaults apply.
param cloud string
param authorityHost string
param graphUrl string
param defenderUrl string
param partnerCenterUrl string
param syncSchedule string
param expirySchedule string
param expiryThresholdsDays string
param syncBudgetSeconds string
param alertWebhookFormat string
@description('Whether the vault holds the alert webhook URL (secret `alertWebhookSecretName`).')
param hasAlertWebhook bool
param alertWebhookSecretName string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': azdServiceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Virtual network integration (privateNetworking, network.bicep): on Flex Consumption a site property,
    // not part of functionAppConfig; the subnet must be delegated to Microsoft.App/environments. Flex
    // Consumption routes the app's traffic to private endpoints through the subnet by itself, Key Vault
    // references included: no vnetRouteAllEnabled, which other Linux plans need for that.
    // https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
    // https://learn.microsoft.com/azure/templates/microsoft.web/sites (virtualNetworkSubnetId)
    // https://learn.microsoft.com/azure/app-service/app-service-key-vault-references#access-network-restricted-vaults
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    clientAffinityEnabled: false
    // Key Vault references in app settings (the webhook URL) resolve as the system-assigned identity.
    keyVaultReferenceIdentity: 'SystemAssigned'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage, identity-based: no connection string exists (shared-key access is off).
        // https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__blobServiceUri', value: blobServiceUri }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: queueServiceUri }
        { name: 'AzureWebJobsStorage__tableServiceUri', value: tableServiceUri }
        // Telemetry, Entra-authenticated as the system-assigned identity (`Authorization=AAD` alone means
        // system-assigned; a user-assigned one would add `ClientId=...`).
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        // memsync (shared/settings.py). AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET are
        // deliberately absent: in Azure memsync is its managed identity (see docs/deploy.md).
        { name: 'MEMSYNC_KEY_VAULT_URL', value: keyVaultUri }
        { name: 'MEMSYNC_CLOUD', value: cloud }
        { name: 'MEMSYNC_AUTHORITY_HOST', value: authorityHost }
        { name: 'MEMSYNC_GRAPH_URL', value: graphUrl }
        { name: 'MEMSYNC_DEFENDER_URL', value: defenderUrl }
        { name: 'MEMSYNC_PARTNER_CENTER_URL', value: partnerCenterUrl }
        { name: 'MEMSYNC_SYNC_SCHEDULE', value: syncSchedule }
        { name: 'MEMSYNC_EXPIRY_SCHEDULE', value: expirySchedule }
        { name: 'MEMSYNC_EXPIRY_THRESHOLDS_DAYS', value: expiryThresholdsDays }
        { name: 'MEMSYNC_SYNC_BUDGET_SECONDS', value: syncBudgetSeconds }
        {
          name: 'MEMSYNC_ALERT_WEBHOOK_URL'
          // A webhook URL is a credential: the app setting is a Key Vault reference, not the URL.
          value: hasAlertWebhook ? '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${alertWebhookSecretName})' : ''
        }
        { name: 'MEMSYNC_ALERT_WEBHOOK_FORMAT', value: alertWebhookFormat }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No basic (user name + password) publishing: deployments authenticate with Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output defaultHostName string = app.properties.defaultHostName
output principalId string = app.identity.principalId
