// Day-two alert rules and the action group they notify (docs/deployment.md, "Alerts").
//
// Two metric alerts on the Service Bus namespace (dimension EntityName picks the entity) and four log search
// alerts on Application Insights. The log alerts read the one JSON line the app logs per command
// ({"event": "commandProcessed", ...}, shared/processor.py) and per retention timer run ({"event":
// "retentionEnqueued", ...}, shared/policies.py); tests/infra checks every field a query reads against the
// code. Counts add up itemCount, so adaptive sampling (host.json) does not lower them.
//
// No identity on the log alert rules: they query one Application Insights component in the same resource
// group, which needs none (Azure Monitor runs the query with the permissions of whoever last deployed the
// rule). A managed identity would need a Reader role assignment of its own; add one only if the deploying
// principal may lose access to the component.
param location string
param tags object
@description('Suffix of every resource name (main.bicep resourceToken).')
param nameSuffix string

param applicationInsightsName string
// The namespace's resource id, not an `existing` reference: infra/checks' namespace rules would
// evaluate an existing declaration as if it were a namespace defined here.
param serviceBusNamespaceId string
param commandQueueName string
param outcomeTopicName string

@description('E-mail addresses the action group notifies; empty = no receivers (the rules still fire).')
param emailReceivers array = []

@minValue(1)
@maxValue(1024)
param topicSizeAlertMegabytes int = 800
@minValue(0)
param retriesExhaustedAlertThreshold int = 0
@minValue(0)
param batchErrorAlertThreshold int = 20
@minValue(0)
param functionFailureAlertThreshold int = 0
@minValue(0)
@maxValue(48)
param retentionRunMaxGapHours int = 26

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-ops-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'batchops'
    enabled: true
    emailReceivers: [for (address, i) in emailReceivers: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
  }
}

// --- Metric alerts (Service Bus) -----------------------------------------------------------------------

// Dead-lettered commands need a human: inspect, fix, then redrive or discard (docs/deployment.md).
resource commandDeadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-command-dlq-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Dead-lettered messages are present on the command queue ${commandQueueName}. Each needs an operator: read the dead-letter reason, fix the cause, redrive or discard.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLetteredCommands'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                commandQueueName
              ]
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// A full topic refuses every publish, which stops the processing of commands.
resource topicSizeAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-topic-size-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    description: 'The outcome topic ${outcomeTopicName} holds more than ${topicSizeAlertMegabytes} MB. A subscription is not being read fast enough; when the topic is full, outcome publishing and so command processing stop.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'TopicSize'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'Size'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                outcomeTopicName
              ]
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: topicSizeAlertMegabytes * 1048576
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// --- Log search alerts (Application Insights) ----------------------------------------------------------

// Commands dead-lettered because the retry budget (RETRY_MAX_ATTEMPTS) ran out.
var retriesExhaustedQuery = '''
traces
| where message has "commandProcessed" and message has "RetriesExhausted"
| extend line = parse_json(message)
| where tostring(line.event) == "commandProcessed" and tostring(line.deadLetterReason) == "RetriesExhausted"
| project timestamp, itemCount, commandId = tostring(line.commandId), action = tostring(line.action), errorCode = tostring(line.errorCode), httpStatus = toint(line.httpStatus)
'''

// Batch answers 429 (throttled) or 5xx (server error): each is retried, many mean Batch is under pressure.
var batchErrorsQuery = '''
traces
| where message has "commandProcessed"
| extend line = parse_json(message)
| where tostring(line.event) == "commandProcessed"
| extend httpStatus = toint(line.httpStatus)
| where httpStatus == 429 or (httpStatus >= 500 and httpStatus <= 599)
| project timestamp, itemCount, httpStatus, errorCode = tostring(line.errorCode), account = tostring(line.account), action = tostring(line.action)
'''

// Failed invocations (the host logs successful ones only at Information, which host.json filters out) and
// exceptions (e.g. ProcessingFailed, a failed publish or settlement).
var functionFailuresQuery = '''
union
    (requests | where success == false | project timestamp, itemCount, operation_Name, problem = strcat("failed invocation, result code ", resultCode)),
    (exceptions | project timestamp, itemCount, operation_Name, problem = strcat(type, ": ", outerMessage))
'''

// One row (timestamp now) when no retention run enqueued its policy command within the last {maxGapHours}
// hours (a run skipped for an empty FLEET_SCOPE_PREFIXES logs retentionSkipped instead, so it counts as missed).
var missedRetentionRunQuery = replace('''
traces
| where timestamp > ago({maxGapHours}h)
| where message has "retentionEnqueued"
| extend line = parse_json(message)
| where tostring(line.event) == "retentionEnqueued"
| summarize runs = count()
| where runs == 0
| extend timestamp = now()
''', '{maxGapHours}', string(max(retentionRunMaxGapHours, 1)))

resource retriesExhaustedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-retries-exhausted-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Commands dead-lettered RetriesExhausted'
    description: 'More than ${retriesExhaustedAlertThreshold} commands ran out of retries (deadLetterReason RetriesExhausted) within an hour. Batch kept failing transiently; see the errorCode and httpStatus of the commandProcessed log lines.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: retriesExhaustedQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'itemCount'
          operator: 'GreaterThan'
          threshold: retriesExhaustedAlertThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource batchErrorsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-batch-429-5xx-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Batch answers 429 or 5xx'
    description: 'Batch answered 429 (throttled) or 5xx more than ${batchErrorAlertThreshold} times within 15 minutes. The commands are retried with backoff; sustained, it ends in RetriesExhausted. Consider a lower maximumInstanceCount or host.json maxConcurrentCalls.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: batchErrorsQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'itemCount'
          operator: 'GreaterThan'
          threshold: batchErrorAlertThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource functionFailuresAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-function-failures-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Function failures'
    description: 'More than ${functionFailureAlertThreshold} failed invocations or exceptions within 15 minutes (Application Insights requests with success == false, and exceptions). The app settles every message itself, so a failure is a defect or an outage of Service Bus or storage.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: functionFailuresQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'itemCount'
          operator: 'GreaterThan'
          threshold: functionFailureAlertThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

/* Absence alert: the query itself returns one row when the summary is missing, so the rule does not depend
   on how Azure Monitor bins an empty result. windowSize PT1H with overrideQueryTimeRange P2D lets the query
   look back up to 48 hours (its own ago() filter sets the real window). */
resource missedRetentionRunAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-retention-run-missed-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Retention run missed'
    description: 'No retention run (retentionEnqueued log line) in the last ${retentionRunMaxGapHours} hours: the timer did not fire, the app is down, the run failed, or it was skipped because FLEET_SCOPE_PREFIXES is empty (retentionSkipped line). Check the function failures and the RETENTION_SCHEDULE and FLEET_SCOPE_PREFIXES settings.'
    severity: 2
    enabled: retentionRunMaxGapHours > 0
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    overrideQueryTimeRange: 'P2D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: missedRetentionRunQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
