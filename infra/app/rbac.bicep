// Host role assignments for the function app's identity (host storage, telemetry), each scoped to the one
// resource it needs. The Service Bus roles are assigned per entity in messaging.bicep, the Batch role in
// batch-access.bicep. Nothing broader anywhere: no Owner, Contributor or User Access Administrator, no
// Service Bus Data Owner, no namespace-wide roles (tests/infra enforces the exact set).
param principalId string
param storageAccountName string
param applicationInsightsName string

// Built-in role definition ids (the same in every tenant).
// Storage Blob Data Contributor: what identity-based AzureWebJobsStorage uses (read/write blobs and blob
// leases for the timer singleton and function keys, create the host's containers) and the Flex deployment
// container. Microsoft's docs name Blob Data Owner as covering these needs; Owner adds only ACL and
// ownership control on hierarchical-namespace accounts, which this account is not, so Contributor is the
// narrower role that suffices. Scoped to the app's own storage account, which holds nothing else.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Monitoring Metrics Publisher: send telemetry with Entra ID (local auth is off on the component).
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource hostStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataContributorRoleId)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
  }
}

resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
  }
}
