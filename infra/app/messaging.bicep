// Service Bus: the command queue the app consumes and the outcome topic it publishes to.
//
// Identity-only access: local (SAS) auth is disabled, so no connection string exists in Azure; every
// client (the Functions host's trigger, the app's senders, producers, subscribers) uses Entra ID and a
// data-plane role scoped to the entity it touches. TLS 1.2 minimum. Custom checkov checks in
// infra/checks/ enforce these and duplicate detection on both entities.
param namespaceName string
param location string
param tags object

@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

param commandQueueName string = 'batch-commands'
param outcomeTopicName string = 'batch-outcomes'

@description('Principal id of the function app\'s managed identity (gets the entity-scoped data roles below).')
param appPrincipalId string

@description('Object ids of command producers: Data Sender on the command queue only.')
param producerPrincipalIds array = []

@description('Object ids of operators: Data Receiver on the command queue (its dead-letter queue) and on the dead-letters and all-outcomes subscriptions, Data Sender on the command queue (redrive).')
param operatorPrincipalIds array = []

// Built-in role definition ids (the same in every tenant).
// Azure Service Bus Data Receiver: receive and settle on the command queue (the trigger).
var serviceBusDataReceiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
// Azure Service Bus Data Sender: retry copies, retention and alert commands (queue); outcome events (topic).
var serviceBusDataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    // Producers, Azure Monitor-driven remediation and the Flex app (no VNet) reach it publicly; access
    // still needs an Entra ID token and a role on the entity.
    publicNetworkAccess: 'Enabled'
  }
}

// Commands: one message per lifecycle action (docs/design.md, "Command contract").
resource commandQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: commandQueueName
  properties: {
    // The app settles explicitly and keeps a 30 s read / 5 s connect timeout on its single Batch call,
    // then schedules a retry copy, publishes and settles: well under a minute. The host renews the lock
    // while the function runs (host.json maxAutoLockRenewalDuration, default 5 min); 2 minutes leaves
    // room for one missed renewal yet returns a message held by a crashed instance within 2 minutes.
    lockDuration: 'PT2M'
    /* Safety net for infrastructure faults only (crash, lost lock, failure to publish or settle, which
       abandon the message for immediate redelivery). Batch-side retries never use delivery count: the
       app completes the message and schedules a fresh copy with backoff (RETRY_MAX_ATTEMPTS), then
       dead-letters with its own reason. 10 immediate redeliveries ride out a short Service Bus blip;
       every action is idempotent, so a repeat is harmless. */
    maxDeliveryCount: 10
    // A lifecycle command that has waited a day (app down, quota exhausted) is stale: the retention
    // timer re-creates deletes on its next run and an alert that old no longer describes the present.
    // Expired commands go to the dead-letter queue (below) for an operator to inspect or resubmit,
    // instead of vanishing or running late.
    defaultMessageTimeToLive: 'P1D'
    deadLetteringOnMessageExpiration: true
    // Producers use deterministic message ids (retention: account/job/task; alerts: alert id + target;
    // retry copies: commandId + attempt). One hour absorbs webhook re-posts, overlapping or past-due
    // timer runs and producer resends; a re-fired alert or the next day's retention run is processed
    // again (idempotent). Duplicate detection cannot be turned on after creation.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT1H'
    requiresSession: false
    enablePartitioning: false
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}

// Outcomes: one event per decision (docs/design.md, "Outcome events"); subscribers filter on application properties.
resource outcomeTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = {
  parent: namespace
  name: outcomeTopicName
  properties: {
    // A terminal outcome's message id is its commandId (retry events add #<attempt>): a second terminal
    // outcome of one command (redelivery, stray retry copy, producer resend) is dropped by the topic.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT1H'
    // Upper bound for every subscription: a subscriber down for two weeks still gets its dead-letter
    // events (all-outcomes keeps a week).
    defaultMessageTimeToLive: 'P14D'
    enablePartitioning: false
    enableBatchedOperations: true
    supportOrdering: false
    maxSizeInMegabytes: 1024
  }
}

/* The two example subscriptions must never fill the topic when nobody reads them (a full topic stops
   every publish, and so the processing of commands): each message leaves when its time-to-live ends,
   and expired or unfilterable messages are dropped, not moved to a dead-letter queue that nobody drains
   (dead-lettered messages never expire). A subscriber that needs every event creates its own
   subscription and reads it; the topic-size alert (app/alerts.bicep) warns before the topic is full. */

// Example subscription: every outcome (the implicit $Default rule is TrueFilter).
resource allOutcomes 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = {
  parent: outcomeTopic
  name: 'all-outcomes'
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    // a week of history for general consumers; older events are dropped
    defaultMessageTimeToLive: 'P7D'
    deadLetteringOnMessageExpiration: false
    deadLetteringOnFilterEvaluationExceptions: false
    enableBatchedOperations: true
  }
}

// Example subscription: dead-letter decisions only, for alerting / operator follow-up.
resource deadLetters 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = {
  parent: outcomeTopic
  name: 'dead-letters'
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    // two weeks for a human to follow up a dead-lettered command; older events are dropped
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: false
    deadLetteringOnFilterEvaluationExceptions: false
    enableBatchedOperations: true
  }
}

// Replaces the subscription's $Default (TrueFilter) rule; a second rule would be OR-ed with it and let
// everything through. `decision` is an application property of every outcome event.
resource deadLettersRule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = {
  parent: deadLetters
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: 'decision = \'deadLetter\''
    }
  }
}

/* Data roles for the app, scoped to the one entity each is needed on. Not Data Owner: that would
   also allow managing entities and reading every queue. Side effect, accepted: with identity
   connections the scale controller reads queue runtime properties only with Data Owner; without it
   it estimates the backlog by peeking (Functions docs), which is fine for this workload. */
resource queueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(commandQueue.id, appPrincipalId, serviceBusDataReceiverRoleId)
  scope: commandQueue
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiverRoleId)
  }
}

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(commandQueue.id, appPrincipalId, serviceBusDataSenderRoleId)
  scope: commandQueue
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSenderRoleId)
  }
}

resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outcomeTopic.id, appPrincipalId, serviceBusDataSenderRoleId)
  scope: outcomeTopic
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSenderRoleId)
  }
}

/* Producers and operators (main.bicep parameters producerPrincipalIds / operatorPrincipalIds), each role
   on the one entity it is needed on, never the namespace. principalType is left out: a principal may be
   a user, a group or a service principal. Names are guid(entity, principal, role), the same formula as
   above, so a re-deployment updates instead of duplicating, and a principal listed twice (a producer who
   is also an operator) gets one Sender assignment: union() drops duplicates. */
resource producerQueueSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in union(producerPrincipalIds, operatorPrincipalIds): {
  name: guid(commandQueue.id, principalId, serviceBusDataSenderRoleId)
  scope: commandQueue
  properties: {
    principalId: principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSenderRoleId)
  }
}]

// Operators: read and settle (complete = discard, or receive to redrive) the command queue's dead-letter queue.
resource operatorQueueReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in union(operatorPrincipalIds, []): {
  name: guid(commandQueue.id, principalId, serviceBusDataReceiverRoleId)
  scope: commandQueue
  properties: {
    principalId: principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiverRoleId)
  }
}]

// Operators: follow up dead-letter outcome events on the dead-letters subscription.
resource operatorDeadLetterSubscriptionReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in union(operatorPrincipalIds, []): {
  name: guid(deadLetters.id, principalId, serviceBusDataReceiverRoleId)
  scope: deadLetters
  properties: {
    principalId: principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiverRoleId)
  }
}]

// Operators: batch-lifecycle watch and send --wait browse all-outcomes (peek only, but peeking needs Receiver).
resource operatorAllOutcomesReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in union(operatorPrincipalIds, []): {
  name: guid(allOutcomes.id, principalId, serviceBusDataReceiverRoleId)
  scope: allOutcomes
  properties: {
    principalId: principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiverRoleId)
  }
}]

output namespaceName string = namespace.name
output namespaceId string = namespace.id
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (another suffix in sovereign clouds).
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
output commandQueueName string = commandQueue.name
output outcomeTopicName string = outcomeTopic.name
