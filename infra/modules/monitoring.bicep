// Log Analytics workspace + workspace-based Application Insights.
// With `entraAuthOnly`, the component accepts only Entra-authenticated telemetry (DisableLocalAuth): the
// instrumentation key in the connection string is then an identifier, not a credential, and the app's
// identity needs Monitoring Metrics Publisher on the component (see role-assignments.bicep).
// https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication

param location string
param tags object
param logAnalyticsName string
param appInsightsName string
param retentionInDays int = 30
param entraAuthOnly bool = true

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: entraAuthOnly
  }
}

output logAnalyticsId string = logAnalytics.id
output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
output connectionString string = appInsights.properties.ConnectionString
