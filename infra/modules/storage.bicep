// The storage account behind memsync: the Functions host (blob leases, timers), the sync queues, the
// tables memsync creates at start-up (shared/stores/tables.py `Tables.ensure`), and the Flex Consumption
// deployment container. Shared-key access is off: every caller, the host included, uses Entra ID.

param location string
param tags object
param name string
param skuName string = 'Standard_LRS'
param deploymentContainerName string
@description('Queues of docs/api.md (The sync queue) (the poison queue is created here so that it exists before the first failure).')
param queueNames array
@description('Private networking (docs/deploy.md, Deployment hardening): public network access off, reached through private endpoints only. Off: the public endpoint stays open as before (every request still needs Entra ID and an RBAC role).')
param privateNetworking bool = false
@description('Log Analytics workspace that receives the blob, queue and table service logs and the transaction metrics.')
param logAnalyticsWorkspaceId string

// The Functions host's own containers (AzureWebJobsStorage): `azure-webjobs-hosts` (timer schedules and
// singleton leases) and `azure-webjobs-secrets` (function keys). They are created here, so that the app's
// identity gets its blob role on these containers and the deployment container only, never on the account
// (role-assignments.bicep).
var hostContainerNames = ['azure-webjobs-hosts', 'azure-webjobs-secrets']

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Off (the default): public endpoint open, as before. On: private endpoints only (network.bicep);
    // `Disabled` also overrides the firewall rules below.
    // https://learn.microsoft.com/azure/storage/common/storage-network-security
    // https://learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts (publicNetworkAccess, networkAcls)
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: { enabled: true }
        file: { enabled: true }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in hostContainerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// ---- diagnostic settings: who read, wrote and deleted what, in the Log Analytics workspace -----------------
// Resource logs exist per service (blobServices/queueServices/tableServices `default`), not on the account;
// the account itself exports metrics only.
// https://learn.microsoft.com/azure/storage/blobs/monitor-blob-storage (collection and routing)
// https://learn.microsoft.com/azure/storage/blobs/monitor-blob-storage-reference (StorageRead, StorageWrite, StorageDelete; Transaction)
// https://learn.microsoft.com/azure/storage/queues/monitor-queue-storage-reference
// https://learn.microsoft.com/azure/storage/tables/monitor-table-storage-reference
// https://learn.microsoft.com/azure/azure-functions/functions-infrastructure-as-code (Storage logs)
// https://learn.microsoft.com/azure/templates/microsoft.insights/diagnosticsettings (2021-05-01-preview)
var serviceLogs = [
  { category: 'StorageRead', enabled: true }
  { category: 'StorageWrite', enabled: true }
  { category: 'StorageDelete', enabled: true }
]
var transactionMetrics = [
  { category: 'Transaction', enabled: true }
]

resource accountDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: storage
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    metrics: transactionMetrics
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: serviceLogs
    metrics: transactionMetrics
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: serviceLogs
    metrics: transactionMetrics
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: serviceLogs
    metrics: transactionMetrics
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
// Service URIs built from the cloud's storage suffix (core.windows.net, core.usgovcloudapi.net, ...), so
// that the host and memsync reach the right endpoints outside the public cloud too.
output blobServiceUri string = 'https://${storage.name}.blob.${environment().suffixes.storage}'
output queueServiceUri string = 'https://${storage.name}.queue.${environment().suffixes.storage}'
output tableServiceUri string = 'https://${storage.name}.table.${environment().suffixes.storage}'
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
// The containers the app's identity may use (and nothing else of the blob service).
output deploymentContainerName string = deploymentContainer.name
output hostsContainerName string = hostContainers[0].name
output secretsContainerName string = hostContainers[1].name
