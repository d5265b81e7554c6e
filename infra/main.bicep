// Batch task lifecycle functions: everything `azd up` (or `az deployment sub create`) provisions.
//
// Subscription scope, as azd templates expect: this file creates the resource group and deploys the
// app's resources into it through modules. The existing Batch account lives in its own resource group;
// its role assignment is a module deployed to that group (a role assignment's scope must be in the
// deployment's own scope).
//
// Keep to the Bicep syntax pycep-parser 0.5.1 understands (checkov pins it): no typed arrays
// (`string[]`), no `import`/`func`, no spread. `infra/check.sh` fails on any parse error.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used in resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region for every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the resource group to create; empty = rg-<environmentName>.')
param resourceGroupName string = ''

@minLength(3)
@maxLength(24)
@description('Name of the existing Azure Batch account the app manages.')
param batchAccountName string

@minLength(1)
@description('Resource group of the existing Batch account (may differ from the app resource group).')
param batchAccountResourceGroup string

@minLength(1)
@maxLength(64)
@description('Alias commands use for the Batch account (a key of BATCH_ACCOUNTS and the BATCH_DEFAULT_ACCOUNT).')
param batchAccountAlias string = batchAccountName

@allowed([
  '2025-06-01'
  '2024-07-01.20.0'
])
@description('Batch REST api-version the app calls (BATCH_API_VERSION).')
param batchApiVersion string = '2025-06-01'

@allowed([
  'Standard'
  'Premium'
])
@description('Service Bus tier. Standard is the cheapest tier with topics and duplicate detection; Premium adds isolation and private networking.')
param serviceBusSku string = 'Standard'

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption instance memory (MB).')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound of Flex Consumption instances; also bounds the load the app can put on the Batch API.')
param maximumInstanceCount int = 40

@description('Zone-redundant Flex Consumption plan (needs a region with availability zones; costs more).')
param zoneRedundant bool = false

@description('NCRONTAB schedule (UTC; Flex Consumption has no time-zone setting) of the retention cleanup (RETENTION_SCHEDULE).')
param retentionSchedule string = '0 0 3 * * *'

@minValue(0)
@maxValue(3650)
@description('Completed tasks older than this many days are deleted (RETENTION_DAYS).')
param retentionDays int = 7

@description('Comma-separated Batch account aliases the retention cleanup covers; empty = all (RETENTION_ACCOUNTS).')
param retentionAccounts string = ''

@description('Clean only jobs whose id starts with this prefix; empty = all jobs (RETENTION_JOB_PREFIX).')
param retentionJobPrefix string = ''

@allowed([
  ''
  'active'
  'disabling'
  'disabled'
  'enabling'
  'terminating'
  'completed'
  'deleting'
])
@description('Clean only jobs in this state; empty = any state (RETENTION_JOB_STATE).')
param retentionJobState string = ''

@allowed([
  'any'
  'success'
])
@description('Which completed tasks qualify for deletion (RETENTION_TASK_RESULT).')
param retentionTaskResult string = 'any'

@minValue(1)
@maxValue(1000000)
@description('At most this many delete commands per retention run (RETENTION_MAX_COMMANDS).')
param retentionMaxCommands int = 10000

// The one destructive scheduled job starts as a dry run: a first deployment only logs and publishes what
// it would delete (run summaries) until an operator sets RETENTION_DRY_RUN=false. (The code's own default
// stays false; tests/infra pins this deliberate difference.)
@description('Retention cleanup only reports what it would delete (RETENTION_DRY_RUN). True by default: read the run summaries, then set false.')
param retentionDryRun bool = true

@description('Comma-separated actions an Azure Monitor alert may trigger (ALERT_ALLOWED_ACTIONS, passed through as is).')
param alertAllowedActions string = 'terminateTask,reactivateTask'

@minValue(1)
@maxValue(10000)
@description('Most commands one alert may enqueue; a larger alert is refused with 400 (ALERT_MAX_COMMANDS).')
param alertMaxCommands int = 100

@description('Comma-separated job-id prefixes that selectors and policies may act on; empty = none (selectors refused), * = every job (FLEET_SCOPE_PREFIXES).')
param fleetScopePrefixes string = ''

@minValue(1)
@maxValue(1000000)
@description('Most targets one selector command acts on when it gives no limit (FLEET_DEFAULT_LIMIT).')
param fleetDefaultLimit int = 1000

@minValue(1)
@maxValue(1000000)
@description('Hard cap on a selector command\'s limit; a larger limit is refused (FLEET_MAX_LIMIT).')
param fleetMaxLimit int = 100000

@description('Fleet policies: a JSON array of {name, action, select, jobSelect, limit, dryRun, account}; each starts in dry run unless dryRun is false (POLICIES, passed through as is).')
param policies string = '[]'

@description('NCRONTAB schedule (UTC) of the run_policies timer (POLICY_SCHEDULE).')
param policySchedule string = '0 0 * * * *'

@minValue(1)
@maxValue(100)
@description('Attempts before a retryable command is dead-lettered with RetriesExhausted (RETRY_MAX_ATTEMPTS).')
param retryMaxAttempts int = 8

@description('Decision overrides: a JSON object "action:ErrorCode" -> decision, applied over the policy table (DECISION_OVERRIDES, passed through as is).')
param decisionOverrides string = '{}'

// --- Day-two operations: alerts, workbook, access for producers and operators (app/alerts.bicep,
// app/workbook.bicep, app/messaging.bicep). Lists are comma-separated strings, like the app settings, so
// `azd env set NAME a,b` works with every azd version.

@description('Comma-separated e-mail addresses the alert action group notifies; empty = an action group without receivers (the alert rules still fire and show in Azure Monitor).')
param alertEmailReceivers string = ''

@description('Comma-separated Entra object ids of command producers; each gets Azure Service Bus Data Sender on the command queue only.')
param producerPrincipalIds string = ''

@description('Comma-separated Entra object ids of operators; each gets Azure Service Bus Data Receiver on the command queue (its dead-letter queue) and on the dead-letters and all-outcomes subscriptions, and Data Sender on the command queue (redrive).')
param operatorPrincipalIds string = ''

@minValue(1)
@maxValue(1024)
@description('Alert when the outcome topic holds more than this many MB (its maximum size is 1024 MB).')
param topicSizeAlertMegabytes int = 800

@minValue(0)
@maxValue(100000)
@description('Alert when more than this many commands were dead-lettered RetriesExhausted within an hour.')
param retriesExhaustedAlertThreshold int = 0

@minValue(0)
@maxValue(100000)
@description('Alert when Batch answered 429 or 5xx more than this many times within 15 minutes.')
param batchErrorAlertThreshold int = 20

@minValue(0)
@maxValue(100000)
@description('Alert when more than this many failed invocations or exceptions were logged within 15 minutes.')
param functionFailureAlertThreshold int = 0

@minValue(0)
@maxValue(48)
@description('Alert when no retention run summary was logged for this many hours (schedule period + slack); 0 disables the rule.')
param retentionRunMaxGapHours int = 26

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// Entity names are fixed: the app reads them from COMMAND_QUEUE_NAME / OUTCOME_TOPIC_NAME, which
// api.bicep sets from these same values, and producers/subscribers are configured against them.
var commandQueueName = 'batch-commands'
var outcomeTopicName = 'batch-outcomes'
// The comma-separated list parameters as arrays: trimmed, empty entries dropped.
var alertEmailEntries = [for entry in split(alertEmailReceivers, ','): trim(entry)]
var producerEntries = [for entry in split(producerPrincipalIds, ','): trim(entry)]
var operatorEntries = [for entry in split(operatorPrincipalIds, ','): trim(entry)]
var alertEmails = filter(alertEmailEntries, entry => !empty(entry))
var producerPrincipals = filter(producerEntries, entry => !empty(entry))
var operatorPrincipals = filter(operatorEntries, entry => !empty(entry))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

// The existing Batch account, read for its endpoint (accountEndpoint has no scheme).
resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
  scope: resourceGroup(batchAccountResourceGroup)
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
  }
}

module messaging 'app/messaging.bicep' = {
  name: 'messaging'
  scope: rg
  params: {
    namespaceName: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    sku: serviceBusSku
    commandQueueName: commandQueueName
    outcomeTopicName: outcomeTopicName
    appPrincipalId: identity.outputs.principalId
    producerPrincipalIds: producerPrincipals
    operatorPrincipalIds: operatorPrincipals
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: '${abbrs.webSitesFunctions}api-${resourceToken}'
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityName: identity.outputs.name
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusFullyQualifiedNamespace: messaging.outputs.fullyQualifiedNamespace
    commandQueueName: commandQueueName
    outcomeTopicName: outcomeTopicName
    batchAccountAlias: batchAccountAlias
    batchAccountEndpoint: 'https://${batchAccount.properties.accountEndpoint}'
    batchApiVersion: batchApiVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
    retentionSchedule: retentionSchedule
    retentionDays: retentionDays
    retentionAccounts: retentionAccounts
    retentionJobPrefix: retentionJobPrefix
    retentionJobState: retentionJobState
    retentionTaskResult: retentionTaskResult
    retentionMaxCommands: retentionMaxCommands
    retentionDryRun: retentionDryRun
    alertAllowedActions: alertAllowedActions
    alertMaxCommands: alertMaxCommands
    fleetScopePrefixes: fleetScopePrefixes
    fleetDefaultLimit: fleetDefaultLimit
    fleetMaxLimit: fleetMaxLimit
    policies: policies
    policySchedule: policySchedule
    retryMaxAttempts: retryMaxAttempts
    decisionOverrides: decisionOverrides
  }
  // Host storage and telemetry roles first, so the host's first start finds its storage reachable.
  dependsOn: [
    rbac
  ]
}

// Host role assignments (storage, telemetry), each on the one resource it needs (app/rbac.bicep). The
// Service Bus roles are assigned per entity inside app/messaging.bicep.
module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// Azure Batch Job Submitter on the Batch account, deployed into the Batch account's resource group.
module batchAccess 'app/batch-access.bicep' = {
  name: 'batch-access-${resourceToken}'
  scope: resourceGroup(batchAccountResourceGroup)
  params: {
    batchAccountName: batchAccountName
    principalId: identity.outputs.principalId
  }
}

// Alert rules and their action group (app/alerts.bicep); the operations workbook (app/workbook.bicep).
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    nameSuffix: resourceToken
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceId: messaging.outputs.namespaceId
    commandQueueName: commandQueueName
    outcomeTopicName: outcomeTopicName
    emailReceivers: alertEmails
    topicSizeAlertMegabytes: topicSizeAlertMegabytes
    retriesExhaustedAlertThreshold: retriesExhaustedAlertThreshold
    batchErrorAlertThreshold: batchErrorAlertThreshold
    functionFailureAlertThreshold: functionFailureAlertThreshold
    retentionRunMaxGapHours: retentionRunMaxGapHours
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: environmentName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceId: messaging.outputs.namespaceId
    commandQueueName: commandQueueName
  }
}

// Outputs azd stores in the environment (.azure/<env>/.env).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_CLIENT_ID string = identity.outputs.clientId
output SERVICE_BUS_NAMESPACE string = messaging.outputs.namespaceName
output SERVICE_BUS_FULLY_QUALIFIED_NAMESPACE string = messaging.outputs.fullyQualifiedNamespace
output COMMAND_QUEUE_NAME string = commandQueueName
output OUTCOME_TOPIC_NAME string = outcomeTopicName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output ALERT_ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output OPERATIONS_WORKBOOK_ID string = workbook.outputs.workbookId
