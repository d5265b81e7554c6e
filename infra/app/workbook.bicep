// The operations workbook (Azure Monitor workbook, shown under the Application Insights component's
// Workbooks): decisions over time, top error codes, dead-letter reasons, Batch latency and 429/5xx answers
// (all from the commandProcessed log line), command queue DLQ depth (Service Bus metric) and the fan-out
// runs (the same line's fanOut object). The content is workbook.json, edited in the portal's Advanced
// Editor and pasted back; its __PLACEHOLDERS__ are replaced here with this deployment's resource ids.
param location string
param tags object
param environmentName string
param applicationInsightsName string
// The namespace's resource id, not an `existing` reference: infra/checks' namespace rules would
// evaluate an existing declaration as if it were a namespace defined here.
param serviceBusNamespaceId string
param commandQueueName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var content = replace(replace(replace(loadTextContent('workbook.json'), '__APPLICATION_INSIGHTS_ID__', applicationInsights.id), '__SERVICE_BUS_NAMESPACE_ID__', serviceBusNamespaceId), '__COMMAND_QUEUE_NAME__', commandQueueName)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; deterministic, so a re-deployment updates it in place.
  name: guid(resourceGroup().id, applicationInsights.id, 'batch-lifecycle-operations')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Batch task lifecycle operations (${environmentName})'
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: content
    version: 'Notebook/1.0'
  }
}

output workbookId string = workbook.id
