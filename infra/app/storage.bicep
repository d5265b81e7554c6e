// Storage for the Functions host (AzureWebJobsStorage: timer-trigger locks, function keys) and for the
// Flex Consumption deployment package. Identity-based access only: shared keys are disabled, so no
// connection string or account key exists anywhere in the app's configuration.
param name string
param location string
param tags object

@description('Blob container Flex Consumption deploys the app package to.')
param deploymentContainerName string = 'app-package'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches host storage over the public endpoint; access is Entra ID-only (shared keys disabled), so a deny-by-default firewall would lock the app out. Add VNet integration + private endpoints to close it.
  // checkov:skip=CKV_AZURE_59: Public network access: same reason as CKV_AZURE_35 (Flex Consumption without VNet integration); anonymous blob access is off (allowBlobPublicAccess: false) and shared keys are disabled.
  // checkov:skip=CKV_AZURE_206: Host storage holds only timer locks, function keys and the deployment package, all recreated by redeploying; LRS is enough and available in every Flex region.
  // checkov:skip=CKV_AZURE_43: False positive. The name is 'st' + uniqueString(...) (lower-case, 15 chars, valid); checkov cannot evaluate the expression.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
