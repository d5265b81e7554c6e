// Azure Batch Job Submitter for the function app's identity on the existing Batch account. Deployed as a
// module into the Batch account's resource group (main.bicep), because a role assignment must be created
// in the scope of the resource it applies to.
//
// Job Submitter carries the data actions Microsoft.Batch/batchAccounts/jobs/* and jobSchedules/* (task
// terminate/delete/reactivate, job terminate and the list calls of the retention cleanup) and only read
// on pools/applications. Not Batch Data Contributor or Account Contributor, which also manage pools and
// the account.
param batchAccountName string
param principalId string

var batchJobSubmitterRoleId = '48e5e92e-a480-4e71-aa9c-2778f4c13781'

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource jobSubmitter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batchAccount.id, principalId, batchJobSubmitterRoleId)
  scope: batchAccount
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', batchJobSubmitterRoleId)
  }
}
