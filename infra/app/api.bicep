// The function app on the Flex Consumption plan (FC1), Python 3.11, running as the user-assigned identity.
//
// Why Flex Consumption: SDK-type bindings (azurefunctions-extensions-bindings-servicebus) need only the
// Python v2 model, Functions runtime 4.34+ and Python >= 3.10; the docs put no hosting-plan limit on
// them, Flex runs the current 4.x runtime with Python 3.11 and supports every trigger the app uses, and
// Microsoft's Python SDK-binding quickstart for Event Hubs deploys to FC1. See docs/deployment.md.
//
// App settings are exactly what the code reads (shared/config.py SETTINGS) plus the host's identity-based
// connection settings; tests/infra checks both directions. Flex-deprecated settings
// (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENT*, ...)
// are deliberately absent: runtime and deployment live in functionAppConfig.
param name string
param planName string
param location string
param tags object

param identityName string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
@description('Service Bus namespace host name, e.g. sb-xyz.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string
param commandQueueName string
param outcomeTopicName string

param batchAccountAlias string
@description('https:// URL of the Batch account endpoint.')
param batchAccountEndpoint string
param batchApiVersion string

param instanceMemoryMB int
param maximumInstanceCount int
param zoneRedundant bool

param retentionSchedule string
param retentionDays int
param retentionAccounts string
param retentionJobPrefix string
param retentionJobState string
param retentionTaskResult string
param retentionMaxCommands int
param retentionDryRun bool
@description('Comma-separated, as ALERT_ALLOWED_ACTIONS expects.')
param alertAllowedActions string
param alertMaxCommands int
param fleetScopePrefixes string
param fleetDefaultLimit int
param fleetMaxLimit int
param policies string
param policySchedule string
param retryMaxAttempts int
@description('A JSON object, as DECISION_OVERRIDES expects (the app validates it at start-up).')
param decisionOverrides string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var batchAccounts = {
  '${batchAccountAlias}': batchAccountEndpoint
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy is a parameter (zoneRedundant, default false): it needs a region with availability zones and costs more; enable it for production.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: Client certificates: the HTTP caller is an Azure Monitor action group webhook, which cannot present one; the endpoint is protected by a function key.
  // checkov:skip=CKV_AZURE_222: Public network access: Azure Monitor action groups call the alert webhook over the internet (function-key auth); the queue and timer functions need no inbound access at all.
  // checkov:skip=CKV_AZURE_212: Minimum instances: Flex Consumption scales to zero by design; always-ready instances are a cost choice, not a security control.
  // checkov:skip=CKV_AZURE_213: Health check: the app serves no health endpoint to probe (its work is queue- and timer-driven) and a scale-to-zero Flex app keeps no warm instance pool for health-based replacement to act on.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // --- Functions host (identity-based host storage, telemetry) ---
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          // Entra ID auth for telemetry: the component has local auth disabled.
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
        }
        {
          // The Python worker calls configure_azure_monitor (azure-monitor-opentelemetry, in requirements.txt) at
          // start-up: OpenTelemetry logs, spans and the app's metrics go straight to Application Insights, with
          // Entra ID from APPLICATIONINSIGHTS_AUTHENTICATION_STRING. docs/observability.md
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        {
          // Export only the app's own logger (the audit lines, run summaries, warnings), not the Azure SDKs' INFO.
          name: 'PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME'
          value: 'batch_lifecycle'
        }
        {
          // The Service Bus SDK-binding extension needs newer grpcio/protobuf than the worker ships;
          // isolate the worker's dependencies so the app's own versions load (the extension's samples do the same).
          name: 'PYTHON_ISOLATE_WORKER_DEPENDENCIES'
          value: '1'
        }
        // --- Service Bus: identity-based connection "ServiceBusConnection" ---
        // __fullyQualifiedNamespace is read by the host (trigger) and by the app's own clients; the host
        // also needs __credential/__clientId to pick the user-assigned identity. ServiceBusConnection
        // itself (a connection string) is for local runs only and must not exist in Azure.
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: serviceBusFullyQualifiedNamespace
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: identity.properties.clientId
        }
        {
          // azure-identity in the app's code picks the user-assigned identity from this.
          name: 'AZURE_CLIENT_ID'
          value: identity.properties.clientId
        }
        {
          name: 'COMMAND_QUEUE_NAME'
          value: commandQueueName
        }
        {
          name: 'OUTCOME_TOPIC_NAME'
          value: outcomeTopicName
        }
        // --- Batch ---
        {
          name: 'BATCH_ACCOUNTS'
          value: string(batchAccounts)
        }
        {
          name: 'BATCH_DEFAULT_ACCOUNT'
          value: batchAccountAlias
        }
        {
          name: 'BATCH_API_VERSION'
          value: batchApiVersion
        }
        {
          name: 'BATCH_CONNECT_TIMEOUT_SECONDS'
          value: '5'
        }
        {
          name: 'BATCH_READ_TIMEOUT_SECONDS'
          value: '30'
        }
        // BATCH_ALLOW_HTTP_LOOPBACK is deliberately absent: local runs only (default false).
        // --- Retry and decision policy ---
        {
          name: 'RETRY_MAX_ATTEMPTS'
          value: string(retryMaxAttempts)
        }
        {
          name: 'RETRY_BASE_DELAY_SECONDS'
          value: '5'
        }
        {
          name: 'RETRY_MAX_DELAY_SECONDS'
          value: '900'
        }
        {
          name: 'DECISION_OVERRIDES'
          value: decisionOverrides
        }
        // --- Retention cleanup (timer) ---
        {
          name: 'RETENTION_SCHEDULE'
          value: retentionSchedule
        }
        {
          name: 'RETENTION_DAYS'
          value: string(retentionDays)
        }
        {
          name: 'RETENTION_ACCOUNTS'
          value: retentionAccounts
        }
        {
          name: 'RETENTION_JOB_PREFIX'
          value: retentionJobPrefix
        }
        {
          name: 'RETENTION_JOB_STATE'
          value: retentionJobState
        }
        {
          name: 'RETENTION_TASK_RESULT'
          value: retentionTaskResult
        }
        {
          name: 'RETENTION_MAX_COMMANDS'
          value: string(retentionMaxCommands)
        }
        {
          name: 'RETENTION_DRY_RUN'
          value: string(retentionDryRun)
        }
        // --- Alert remediation (HTTP) ---
        {
          name: 'ALERT_ALLOWED_ACTIONS'
          value: alertAllowedActions
        }
        {
          name: 'ALERT_MAX_COMMANDS'
          value: string(alertMaxCommands)
        }
        // --- Fleet operations: selectors and policies ---
        {
          name: 'FLEET_SCOPE_PREFIXES'
          value: fleetScopePrefixes
        }
        {
          name: 'FLEET_DEFAULT_LIMIT'
          value: string(fleetDefaultLimit)
        }
        {
          name: 'FLEET_MAX_LIMIT'
          value: string(fleetMaxLimit)
        }
        {
          name: 'POLICIES'
          value: policies
        }
        {
          name: 'POLICY_SCHEDULE'
          value: policySchedule
        }
        // --- Service Bus time limit (sends, schedules, settlements) ---
        {
          name: 'SERVICEBUS_TIMEOUT_SECONDS'
          value: '5'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing with user names/passwords: deployments use Entra ID (azd / az functionapp deploy).
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
