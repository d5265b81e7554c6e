"""Role assignments: exactly the least-privilege built-in roles, each at the narrowest scope.

The function app's identity gets, and only gets:
- Azure Service Bus Data Receiver and Data Sender on the command queue (trigger; retry copies, retention
  and alert commands), Data Sender on the outcome topic;
- Azure Batch Job Submitter on the existing Batch account (a module deployed to that account's group);
- Storage Blob Data Contributor on the host storage account (identity-based AzureWebJobsStorage and the
  Flex deployment container; Blob Data Owner would add only ACL control, which a flat namespace has no use
  for; the account holds nothing else);
- Monitoring Metrics Publisher on the Application Insights component (Entra ID telemetry).
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from tests.infra.bicep import INFRA, Model, render, resources

SERVICE_BUS_DATA_RECEIVER: Final = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
SERVICE_BUS_DATA_SENDER: Final = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
BATCH_JOB_SUBMITTER: Final = "48e5e92e-a480-4e71-aa9c-2778f4c13781"
STORAGE_BLOB_DATA_CONTRIBUTOR: Final = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
MONITORING_METRICS_PUBLISHER: Final = "3913510d-42f4-4e42-8a64-420c390055eb"

# (role definition id, type of the resource the assignment is scoped to) -> how many
EXPECTED: Final = Counter(
    {
        (SERVICE_BUS_DATA_RECEIVER, "Microsoft.ServiceBus/namespaces/queues"): 1,
        (SERVICE_BUS_DATA_SENDER, "Microsoft.ServiceBus/namespaces/queues"): 1,
        (SERVICE_BUS_DATA_SENDER, "Microsoft.ServiceBus/namespaces/topics"): 1,
        (BATCH_JOB_SUBMITTER, "Microsoft.Batch/batchAccounts"): 1,
        (STORAGE_BLOB_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"): 1,
        (MONITORING_METRICS_PUBLISHER, "Microsoft.Insights/components"): 1,
    }
)

# Built-in roles broader than the app needs: must not appear anywhere in infra/.
BROAD_ROLES: Final = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Azure Service Bus Data Owner": "090c5cfd-751d-490a-894a-3ce6f1109419",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Azure Batch Account Contributor": "29fe4964-1e60-436b-bd3a-77fd4c178b3c",
    "Azure Batch Data Contributor": "6aaa78f1-f7de-44ca-8722-c64a23943cae",
}


def _assignments(model: Model) -> list[tuple[str, str, str, str]]:
    """(file, symbol, role definition GUID, scope resource type) for every role assignment."""
    found = []
    for file, symbol, assignment in resources(model, "Microsoft.Authorization/roleAssignments"):
        doc = model[file]
        config = assignment["config"]
        role_id = config["properties"]["roleDefinitionId"]["function"]
        assert role_id["type"] == "subscription_resource_id", f"{file}:{symbol} must use subscriptionResourceId"
        assert role_id["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid_ref = role_id["parameters"]["resource_name_1"]
        guid = doc["variables"][guid_ref]["value"] if guid_ref in doc.get("variables", {}) else guid_ref
        scope = config.get("scope")
        assert isinstance(scope, str) and scope in doc["resources"], (
            f"{file}:{symbol} must be scoped to a resource symbol, not {render(scope)}"
        )
        found.append((file, symbol, guid, doc["resources"][scope]["type"]))
    return found


def test_role_assignments_are_exactly_the_least_privilege_set(model: Model) -> None:
    actual = Counter((guid, scope_type) for _, _, guid, scope_type in _assignments(model))
    assert actual == EXPECTED


def test_role_definition_guids_are_exactly_the_expected_ones(model: Model) -> None:
    guids = {guid for _, _, guid, _ in _assignments(model)}
    assert guids == {guid for guid, _ in EXPECTED}


def test_no_broad_role_appears_anywhere_in_infra(model: Model) -> None:
    used = {guid for _, _, guid, _ in _assignments(model)}
    assert not used & set(BROAD_ROLES.values())
    for path in sorted(INFRA.rglob("*")):
        if path.is_file() and path.suffix in {".bicep", ".json", ".bicepparam"}:
            text = path.read_text(encoding="utf-8").lower()
            for name, guid in BROAD_ROLES.items():
                assert guid not in text, f"{path.relative_to(INFRA)} mentions {name}"
            assert "roledefinitionidorname" not in text, f"{path.relative_to(INFRA)}: use explicit GUIDs"


def test_assignments_target_the_app_identity_as_a_service_principal(model: Model) -> None:
    for file, symbol, assignment in resources(model, "Microsoft.Authorization/roleAssignments"):
        props = assignment["config"]["properties"]
        assert props["principalType"] == "ServicePrincipal", f"{file}:{symbol}"
        assert props["principalId"] in {"principalId", "appPrincipalId"}, f"{file}:{symbol}"
        name = assignment["config"]["name"]["function"]
        assert name["type"] == "guid", f"{file}:{symbol} needs a deterministic guid() name"


def test_principal_ids_come_from_the_user_assigned_identity(model: Model) -> None:
    main = model["main.bicep"]["modules"]
    for module, param in (("messaging", "appPrincipalId"), ("rbac", "principalId"), ("batchAccess", "principalId")):
        assert render(main[module]["config"]["params"][param]) == "identity.outputs.principalId", module


def test_batch_role_is_deployed_into_the_batch_account_resource_group(model: Model) -> None:
    module = model["main.bicep"]["modules"]["batchAccess"]
    assert module["detail"]["path"] == "app/batch-access.bicep"
    assert render(module["config"]["scope"]) == "resource_group(batchAccountResourceGroup)"
    batch = model["app/batch-access.bicep"]["resources"]["batchAccount"]
    assert batch["existing"] is True
    assert batch["config"]["name"] == "batchAccountName"
