// What the Function App's system-assigned identity may do, and nothing more: data-plane roles scoped to
// the one storage account (queues, tables), to three blob containers of it, to the one vault and to the
// one Application Insights component. No Owner, Contributor or key-listing role anywhere. Role ids are
// Azure's built-in ones:
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles

param principalId string
param storageAccountName string
@description('The blob container the Flex Consumption app deploys from (functionAppConfig.deployment.storage).')
param deploymentContainerName string
@description('The Functions host\'s container of timer schedules and singleton leases (azure-webjobs-hosts).')
param hostsContainerName string
@description('The Functions host\'s container of function keys (azure-webjobs-secrets).')
param secretsContainerName string
param keyVaultName string
param appInsightsName string
@description('Grant Monitoring Metrics Publisher on the component (needed when it only accepts Entra-authenticated telemetry).')
param grantTelemetryPublisher bool = true

var roles = {
  // Queue messages (memsync-sync, its poison queue) and queue creation.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // memsync's tables (integrations, tenants, assets, runs, alerts) and the tables the Functions host
  // creates at run time under names of its own: hence the account as scope.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // The Flex Consumption deployment package and the host's blobs (leases, timer state, keys): granted on
  // those three containers, not on the account (memsync itself uses no blobs).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Integration secrets are written, read, listed and deleted by memsync (not only read).
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  // Entra-authenticated telemetry ingestion into Application Insights.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deploymentContainerName
}

resource hostsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: hostsContainerName
}

resource secretsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: secretsContainerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource queueData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Blob roles on single containers, the narrowest scope Azure RBAC offers for blob data: the role covers
// the container's blobs, properties and metadata, and no other container of the account.
// https://learn.microsoft.com/azure/storage/blobs/authorize-access-azure-active-directory#resource-scope
// The deployment container: the platform reads the package from it, and a publish (azd deploy, func
// azure functionapp publish) writes it, both as the app's identity (deployment.storage.authentication).
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#configure-deployment-settings
resource deploymentBlobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, principalId, roles.storageBlobDataOwner)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The host's own containers (AzureWebJobsStorage): Storage Blob Data Owner is the role Microsoft names
// for host storage, here on the two containers the host uses instead of the account.
// https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
resource hostsBlobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostsContainer.id, principalId, roles.storageBlobDataOwner)
  scope: hostsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsBlobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secretsContainer.id, principalId, roles.storageBlobDataOwner)
  scope: secretsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantTelemetryPublisher) {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
