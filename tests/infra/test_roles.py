"""Role assignments: exactly the least-privilege built-in roles, each at the narrowest scope.

The function app's identity gets, and only gets:
- Azure Service Bus Data Receiver and Data Sender on the command queue (trigger; retry copies, retention
  and alert commands), Data Sender on the outcome topic;
- Azure Batch Job Submitter on the existing Batch account (a module deployed to that account's group);
- Storage Blob Data Contributor on the host storage account (identity-based AzureWebJobsStorage and the
  Flex deployment container; Blob Data Owner would add only ACL control, which a flat namespace has no use
  for; the account holds nothing else);
- Monitoring Metrics Publisher on the Application Insights component (Entra ID telemetry).

Producers and operators (main.bicep producerPrincipalIds / operatorPrincipalIds) get, each from a loop over
its list, roles on single Service Bus entities only: producers Data Sender on the command queue; operators
Data Receiver on the command queue (its dead-letter queue) and on the dead-letters and all-outcomes
subscriptions, and Data Sender on the command queue (redrive). Never the namespace or the resource group.

Role definition ids checked against Microsoft's built-in roles list: Azure Service Bus Data Sender is
69a216fc-b8fb-44d8-bc22-1f3c2cd27a39 (not ...-1f3c2552a39d, which is no built-in role), Data Receiver is
4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

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

QUEUE: Final = "Microsoft.ServiceBus/namespaces/queues"
SUBSCRIPTION: Final = "Microsoft.ServiceBus/namespaces/topics/subscriptions"
MESSAGING: Final = "app/messaging.bicep"

# Assignments made in a loop over principal-id lists: (role, scope type, the list parameters the loop
# covers) -> how many loops.
EXPECTED_PRINCIPAL_LOOPS: Final = Counter(
    {
        (SERVICE_BUS_DATA_SENDER, QUEUE, frozenset({"producerPrincipalIds", "operatorPrincipalIds"})): 1,
        (SERVICE_BUS_DATA_RECEIVER, QUEUE, frozenset({"operatorPrincipalIds"})): 1,
        (SERVICE_BUS_DATA_RECEIVER, SUBSCRIPTION, frozenset({"operatorPrincipalIds"})): 2,
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


def _body(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resource body, inside a ``[for ...: {...}]`` loop if it is one."""
    config: Mapping[str, Any] = resource["config"]
    return config["config"] if "loop_type" in config else config


def _names(expr: object) -> set[str]:
    """Every bare identifier (or literal string) inside a parsed expression."""
    if isinstance(expr, str):
        return {expr}
    if isinstance(expr, dict):
        return {name for value in expr.values() for name in _names(value)}
    if isinstance(expr, list):
        return {name for value in expr for name in _names(value)}
    return set()


def _assignments(model: Model) -> list[tuple[str, str, str, str, frozenset[str] | None]]:
    """(file, symbol, role GUID, scope resource type, list parameters of its loop or None) per assignment."""
    found = []
    for file, symbol, assignment in resources(model, "Microsoft.Authorization/roleAssignments"):
        doc = model[file]
        config = _body(assignment)
        role_id = config["properties"]["roleDefinitionId"]["function"]
        assert role_id["type"] == "subscription_resource_id", f"{file}:{symbol} must use subscriptionResourceId"
        assert role_id["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid_ref = role_id["parameters"]["resource_name_1"]
        guid = doc["variables"][guid_ref]["value"] if guid_ref in doc.get("variables", {}) else guid_ref
        scope = config.get("scope")
        assert isinstance(scope, str) and scope in doc["resources"], (
            f"{file}:{symbol} must be scoped to a resource symbol, not {render(scope)}"
        )
        loop = assignment["config"].get("loop_type")
        lists = None
        if loop is not None:
            lists = frozenset(_names(loop["detail"]["array_name"]) & doc.get("parameters", {}).keys())
        found.append((file, symbol, guid, doc["resources"][scope]["type"], lists))
    return found


def _app_assignments(model: Model) -> list[tuple[str, str, str, str, frozenset[str] | None]]:
    return [entry for entry in _assignments(model) if entry[4] is None]


def _loop_assignments(model: Model) -> list[tuple[str, str, str, str, frozenset[str] | None]]:
    return [entry for entry in _assignments(model) if entry[4] is not None]


def test_role_assignments_are_exactly_the_least_privilege_set(model: Model) -> None:
    actual = Counter((guid, scope_type) for _, _, guid, scope_type, _ in _app_assignments(model))
    assert actual == EXPECTED


def test_producer_and_operator_assignments_are_exactly_the_expected_loops(model: Model) -> None:
    actual = Counter((guid, scope_type, lists) for _, _, guid, scope_type, lists in _loop_assignments(model))
    assert actual == EXPECTED_PRINCIPAL_LOOPS
    assert {file for file, *_ in _loop_assignments(model)} == {MESSAGING}


def test_role_definition_guids_are_exactly_the_expected_ones(model: Model) -> None:
    guids = {guid for _, _, guid, _, _ in _assignments(model)}
    assert guids == {guid for guid, _ in EXPECTED}
    # the variables naming them hold exactly the built-in ids
    variables = model[MESSAGING]["variables"]
    assert variables["serviceBusDataSenderRoleId"]["value"] == SERVICE_BUS_DATA_SENDER
    assert variables["serviceBusDataReceiverRoleId"]["value"] == SERVICE_BUS_DATA_RECEIVER


def test_no_broad_role_appears_anywhere_in_infra(model: Model) -> None:
    used = {guid for _, _, guid, _, _ in _assignments(model)}
    assert not used & set(BROAD_ROLES.values())
    for path in sorted(INFRA.rglob("*")):
        if path.is_file() and path.suffix in {".bicep", ".json", ".bicepparam"}:
            text = path.read_text(encoding="utf-8").lower()
            for name, guid in BROAD_ROLES.items():
                assert guid not in text, f"{path.relative_to(INFRA)} mentions {name}"
            assert "roledefinitionidorname" not in text, f"{path.relative_to(INFRA)}: use explicit GUIDs"


def test_assignments_target_the_app_identity_as_a_service_principal(model: Model) -> None:
    for file, symbol, assignment in resources(model, "Microsoft.Authorization/roleAssignments"):
        if "loop_type" in assignment["config"]:
            continue  # producers and operators: test_principal_loops_assign_each_listed_principal_once
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


def test_principal_loops_assign_each_listed_principal_once(model: Model) -> None:
    """principalId is the loop item, the name is guid(entity id, principal, role): deterministic, one per
    principal and entity (union() drops a principal listed twice), and no principalType (users, groups and
    service principals are all allowed)."""
    doc = model[MESSAGING]
    for symbol, resource in doc["resources"].items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments" or "loop_type" not in resource["config"]:
            continue
        loop = resource["config"]["loop_type"]
        assert loop["type"] == "array", symbol
        item = loop["detail"]["item_name"]
        array = loop["detail"]["array_name"]["function"]
        assert array["type"] == "union", f"{symbol}: loop over union(...) so a principal listed twice is assigned once"
        body = _body(resource)
        props = body["properties"]
        assert props["principalId"] == item, symbol
        assert "principalType" not in props, symbol
        name = body["name"]["function"]
        assert name["type"] == "guid", symbol
        parameters = name["parameters"]
        assert render(parameters["base_string"]) == f"{body['scope']}.id", symbol
        assert parameters["extra_string_1"] == item, symbol
        assert parameters["extra_string_2"] == props["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]


def test_operator_subscription_roles_are_on_the_dead_letters_and_all_outcomes_subscriptions(model: Model) -> None:
    doc = model[MESSAGING]
    scopes = {
        _body(resource)["scope"]
        for resource in doc["resources"].values()
        if resource["type"] == "Microsoft.Authorization/roleAssignments" and "loop_type" in resource["config"]
    }
    entities = {doc["resources"][scope]["config"]["name"] for scope in scopes}
    assert entities == {"commandQueueName", "dead-letters", "all-outcomes"}


def test_principal_lists_come_from_comma_separated_main_parameters(model: Model) -> None:
    main = model["main.bicep"]
    params = main["modules"]["messaging"]["config"]["params"]
    for module_param, main_param in (
        ("producerPrincipalIds", "producerPrincipalIds"),
        ("operatorPrincipalIds", "operatorPrincipalIds"),
    ):
        assert main["parameters"][main_param]["type"] == "string"
        assert main["parameters"][main_param]["default"] == "", f"{main_param}: nobody gets a role by default"
        variable = params[module_param]
        filtered = main["variables"][variable]["value"]["function"]
        assert filtered["type"] == "filter", f"{variable} must drop empty entries"
        entries = main["variables"][filtered["parameters"]["input_array"]]["value"]
        split = entries["loop_type"]["detail"]["array_name"]["function"]
        assert split["type"] == "split" and split["parameters"]["input_string"] == main_param
        assert split["parameters"]["delimiter"] == ","
        assert entries["config"]["function"]["type"] == "trim"
        assert model[MESSAGING]["parameters"][module_param]["default"] == []
