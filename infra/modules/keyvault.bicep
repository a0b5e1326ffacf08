// The vault that holds every integration secret (shared/clients/keyvault.py). Access is Azure RBAC only
// (no access policies), deleted secrets are recoverable for `softDeleteRetentionInDays`, and purge
// protection means nobody, not even an owner, can purge them early.

param location string
param tags object
param name string
param softDeleteRetentionInDays int = 90
@secure()
@description('Optional alert webhook URL; stored here and referenced from the app setting, never in plain text.')
param alertWebhookUrl string = ''
@description('Name of the secret that holds the webhook URL. Not `memsync-...`: that prefix marks integration secrets, which the expiry scan lists.')
param alertWebhookSecretName string = 'alert-webhook-url'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource alertWebhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookUrl)) {
  parent: vault
  name: alertWebhookSecretName
  properties: {
    value: alertWebhookUrl
    contentType: 'url'
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
