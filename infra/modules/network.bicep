// The private network of the `privateNetworking` option (docs/deploy.md, Deployment hardening): one
// virtual network with
// - `snet-app`, delegated to `Microsoft.App/environments`: the Flex Consumption app's virtual network
//   integration (function-app.bicep `virtualNetworkSubnetId`). The app's calls to its storage and its
//   vault, the Functions host's included, reach the private endpoints through this subnet.
//   https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations ("The subnet
//   delegation required by Flex Consumption apps is `Microsoft.App/environments`"; the subscription needs
//   the `Microsoft.App` resource provider registered)
//   https://learn.microsoft.com/azure/azure-functions/functions-networking-options#regional-virtual-network-integration
//   https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#enable-virtual-network-integration
// - `snet-private-endpoints`: one private endpoint per private-link sub-resource memsync uses: the storage
//   account's `blob`, `queue` and `table` (the host's blobs and the deployment package, the sync queues,
//   memsync's tables) and the vault's `vault`.
//   https://learn.microsoft.com/azure/private-link/private-endpoint-overview#private-link-resource (group ids)
//   https://learn.microsoft.com/azure/storage/common/storage-private-endpoints
//   https://learn.microsoft.com/azure/key-vault/general/private-link-service
// Each endpoint registers its address in the private DNS zone of its sub-resource through a DNS zone group,
// and each zone is linked to the virtual network, so that the account's and the vault's usual host names
// resolve to the private addresses inside it.
//   https://learn.microsoft.com/azure/private-link/private-endpoint-dns (zone names per sub-resource)
// Resource shapes: https://learn.microsoft.com/azure/templates/microsoft.network/virtualnetworks,
// .../microsoft.network/privateendpoints, .../microsoft.network/privateendpoints/privatednszonegroups,
// .../microsoft.network/privatednszones, .../microsoft.network/privatednszones/virtualnetworklinks

param location string
param tags object
param virtualNetworkName string
@description('Address space of the virtual network.')
param addressPrefix string = '10.0.0.0/16'
@description('Subnet of the Function App\'s virtual network integration, delegated to Microsoft.App/environments.')
param appSubnetPrefix string = '10.0.1.0/24'
@description('Subnet of the private endpoints (four addresses used).')
param privateEndpointSubnetPrefix string = '10.0.2.0/24'
@description('Prefix of the private endpoint names; each ends in its group id.')
param privateEndpointNamePrefix string
param storageAccountId string
param keyVaultId string

var appSubnetName = 'snet-app'
var privateEndpointSubnetName = 'snet-private-endpoints'

// The zone names follow the cloud (environment()): privatelink.blob.core.windows.net and
// privatelink.vaultcore.azure.net in Azure public, privatelink.blob.core.usgovcloudapi.net and
// privatelink.vaultcore.usgovcloudapi.net in Azure Government, ... (private-endpoint-dns above).
// keyvaultDns is '.vault.azure.net', '.vault.usgovcloudapi.net', '.vault.azure.cn'.
var privateLinks = [
  { groupId: 'blob', target: storageAccountId, zone: 'privatelink.blob.${environment().suffixes.storage}' }
  { groupId: 'queue', target: storageAccountId, zone: 'privatelink.queue.${environment().suffixes.storage}' }
  { groupId: 'table', target: storageAccountId, zone: 'privatelink.table.${environment().suffixes.storage}' }
  { groupId: 'vault', target: keyVaultId, zone: replace(environment().suffixes.keyvaultDns, '.vault.', 'privatelink.vaultcore.') }
]

// Subnets are declared inside the virtual network (not as child resources), so that a redeployment
// does not try to remove and re-add them.
resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: virtualNetworkName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource appSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = {
  parent: vnet
  name: appSubnetName
}

resource privateEndpointSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = {
  parent: vnet
  name: privateEndpointSubnetName
}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for link in privateLinks: {
  name: link.zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (link, i) in privateLinks: {
  parent: zones[i]
  name: vnet.name
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for link in privateLinks: {
  name: '${privateEndpointNamePrefix}-${link.groupId}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnet.id
    }
    privateLinkServiceConnections: [
      {
        name: link.groupId
        properties: {
          privateLinkServiceId: link.target
          groupIds: [
            link.groupId
          ]
        }
      }
    ]
  }
}]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (link, i) in privateLinks: {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: link.groupId
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]

output vnetId string = vnet.id
output appSubnetId string = appSubnet.id
output privateEndpointSubnetId string = privateEndpointSubnet.id
