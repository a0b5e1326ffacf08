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
@description('Private networking (docs/deploy.md, Deployment hardening): public network access off, reached through a private endpoint only. Off: the public endpoint stays open as before (every request still needs Entra ID and an RBAC role).')
param privateNetworking bool = false
@description('Log Analytics workspace that receives the vault\'s audit log (every secret read, write, list and delete, and who did it).')
param logAnalyticsWorkspaceId string

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
    // Off (the default): public endpoint open, as before. On: the private endpoint of network.bicep only;
    // `Disabled` blocks everything but private endpoints and trusted services, whatever the rules say.
    // https://learn.microsoft.com/azure/key-vault/general/network-security
    // https://learn.microsoft.com/azure/templates/microsoft.keyvault/vaults (publicNetworkAccess, networkAcls)
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
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

// The audit log: every request to the vault (`AuditEvent`, in the `audit` category group) and its metrics,
// in the Log Analytics workspace (table AzureDiagnostics: the default destination type).
// https://learn.microsoft.com/azure/key-vault/general/logging
// https://learn.microsoft.com/azure/key-vault/general/monitor-key-vault-reference
// https://learn.microsoft.com/azure/azure-monitor/essentials/diagnostic-settings (category groups)
// https://learn.microsoft.com/azure/templates/microsoft.insights/diagnosticsettings (2021-05-01-preview)
resource auditDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { categoryGroup: 'audit', enabled: true }
    ]
    metrics: [
      { category: 'AllMetrics', enabled: true }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
