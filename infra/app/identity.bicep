// The user-assigned managed identity the function app runs as. One identity for every connection
// (host storage, Service Bus trigger, the app's Service Bus and Batch clients, Application Insights),
// so the app settings carry a single client id.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output name string = identity.name
output resourceId string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
