// Host role assignments for the function app's identity (host storage, telemetry), each scoped to the one
// resource it needs. The Service Bus roles are assigned per entity in messaging.bicep, the Batch role in
// batch-access.bicep. Nothing broader anywhere: no Owner, Contributor or User Access Administrator, no
// Service Bus Data Owner, no namespace-wide roles (tests/infra enforces the exact set).
param principalId string
param storageAccountName string
param applicationInsightsName string

// Built-in role definition ids (the same in every tenant).
// Storage Blob Data Owner: the documented minimum for identity-based AzureWebJobsStorage (blob leases for
// the timer singleton, function keys, creating the host's containers) and the Flex deployment container.
// Scoped to the app's own storage account, which holds nothing else.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Monitoring Metrics Publisher: send telemetry with Entra ID (local auth is off on the component).
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource hostStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
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
