"""The function app's settings are exactly the ones the code reads, plus the host's own.

`shared.config.SETTINGS` lists every setting the product code reads. In Azure the app must set all of
them except the local-only ones, and nothing else except the documented host/platform settings below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import pytest

from shared import telemetry
from shared.config import LOCAL_ONLY, SETTINGS, load_settings
from tests.infra.bicep import REPO, Model, Scope, Unresolved, evaluate, module_scope, only, render

API: Final = "app/api.bicep"

# Deliberate differences between what a first deployment sets and the code's default, with the reason.
DEPLOYED_DEFAULTS: Final = {
    # The one destructive scheduled job starts as a dry run in Azure: it logs and publishes what it would
    # delete until an operator sets RETENTION_DRY_RUN=false (azd env set). Local runs keep the code default.
    "RETENTION_DRY_RUN": "true",
}

# Set in Azure but read by the Functions host/worker, not by our code:
HOST_SETTINGS: Final = frozenset(
    {
        # identity-based host storage (AzureWebJobsStorage) with the user-assigned identity
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        # the Service Bus trigger's connection "ServiceBusConnection": the host also needs to know which
        # identity to use (__fullyQualifiedNamespace is in SETTINGS: our code reads it too)
        "ServiceBusConnection__credential",
        "ServiceBusConnection__clientId",
        # telemetry, authenticated with Entra ID (the component has local auth disabled)
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        # Python worker: configure_azure_monitor at start-up (OpenTelemetry straight to Application Insights),
        # exporting the app's logger "batch_lifecycle" only (docs/observability.md)
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME",
        # Python worker: load the app's grpcio/protobuf (needed by the Service Bus SDK-type binding)
        # instead of the worker's own copies
        "PYTHON_ISOLATE_WORKER_DEPENDENCIES",
    }
)

# Settings the Flex Consumption plan deprecates (runtime and deployment live in functionAppConfig).
FLEX_DEPRECATED: Final = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_TIME_ZONE",
        "TZ",
        "AzureWebJobsStorage",
    }
)


def _site(model: Model) -> Mapping[str, Any]:
    file, _, site = only(model, "Microsoft.Web/sites")
    assert file == API
    return site


def _app_settings(model: Model) -> list[tuple[str, object]]:
    entries = _site(model)["config"]["properties"]["siteConfig"]["appSettings"]
    return [(entry["name"], entry["value"]) for entry in entries]


def _settings(model: Model) -> dict[str, object]:
    return dict(_app_settings(model))


def _api_scope(model: Model) -> Scope:
    return module_scope(model, "main.bicep", API)


def test_local_only_and_host_lists_are_consistent_with_the_code() -> None:
    assert SETTINGS.keys() >= LOCAL_ONLY, "a LOCAL_ONLY name is no longer a setting the code reads"
    assert not HOST_SETTINGS & SETTINGS.keys(), "a HOST_SETTINGS name is read by the code: move it"


def test_app_setting_names_are_unique(model: Model) -> None:
    names = [name for name, _ in _app_settings(model)]
    assert sorted(names) == sorted(set(names))


def test_every_setting_the_code_reads_is_set(model: Model) -> None:
    missing = (SETTINGS.keys() - LOCAL_ONLY) - _settings(model).keys()
    assert not missing, f"shared/config.py reads these, infra/app/api.bicep does not set them: {sorted(missing)}"


def test_no_setting_the_code_does_not_read(model: Model) -> None:
    extra = _settings(model).keys() - (SETTINGS.keys() - LOCAL_ONLY) - HOST_SETTINGS
    assert not extra, f"infra/app/api.bicep sets settings nobody reads: {sorted(extra)}"


def test_local_only_settings_are_not_set_in_azure(model: Model) -> None:
    assert not LOCAL_ONLY & _settings(model).keys()


def test_host_settings_are_all_set(model: Model) -> None:
    assert _settings(model).keys() >= HOST_SETTINGS


def test_no_flex_deprecated_setting(model: Model) -> None:
    assert not FLEX_DEPRECATED & _settings(model).keys()


def test_identity_based_connections_use_the_user_assigned_identity(model: Model) -> None:
    settings = _settings(model)
    for prefix in ("AzureWebJobsStorage", "ServiceBusConnection"):
        assert settings[f"{prefix}__credential"] == "managedidentity"
        assert render(settings[f"{prefix}__clientId"]) == "identity.properties.clientId"
    assert render(settings["AZURE_CLIENT_ID"]) == "identity.properties.clientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identity.properties.clientId};Authorization=AAD"
    )
    assert render(settings["AzureWebJobsStorage__accountName"]) == "storage.name"
    assert settings["ServiceBusConnection__fullyQualifiedNamespace"] == "serviceBusFullyQualifiedNamespace"
    bindings = _api_scope(model).bindings
    assert bindings is not None
    namespace, _ = bindings["serviceBusFullyQualifiedNamespace"]
    assert render(namespace) == "messaging.outputs.fullyQualifiedNamespace"
    # and no secret-bearing forms anywhere
    for name, value in settings.items():
        text = render(value)
        assert "listKeys" not in text and "AccountKey=" not in text, name
        assert "SharedAccessKey" not in text, name


def test_the_python_worker_sends_opentelemetry_with_entra_id(model: Model) -> None:
    """The worker's Azure Monitor integration is on, exports the app's logger, and can import the distro."""
    settings = _settings(model)
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert settings["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"] == telemetry.log.name == "batch_lifecycle"
    # the exporter reads "Authorization=AAD;ClientId=..." in any order, keys in any case, value exactly AAD
    assert "Authorization=AAD" in str(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    deployed = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^azure-monitor-opentelemetry==", deployed, re.MULTILINE), "the worker imports it"


def test_identity_is_the_user_assigned_one(model: Model) -> None:
    site = _site(model)
    assert site["config"]["identity"]["type"] == "UserAssigned"
    file, _, identity = only(model, "Microsoft.ManagedIdentity/userAssignedIdentities")
    assert file == "app/identity.bicep"
    assert identity["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"


@pytest.mark.parametrize(
    "name", sorted(n for n, (default, _) in SETTINGS.items() if default is not None and n not in LOCAL_ONLY)
)
def test_settings_with_a_default_are_deployed_with_the_code_default(model: Model, name: str) -> None:
    value = evaluate(_settings(model)[name], _api_scope(model))
    assert not isinstance(value, Unresolved), f"{name} should be a literal or a parameter default, got {value}"
    expected = DEPLOYED_DEFAULTS.get(name, SETTINGS[name][0])
    assert value == expected, f"{name}: Bicep deploys {value!r}, expected {expected!r}"


def test_deployed_defaults_differ_from_the_code_only_where_documented() -> None:
    for name, value in DEPLOYED_DEFAULTS.items():
        assert name in SETTINGS and value != SETTINGS[name][0], name


def test_deployed_defaults_are_accepted_by_the_code(model: Model) -> None:
    """The settings a first deployment writes (parameter defaults) pass the code's own validation."""
    scope = _api_scope(model)
    env = {}
    for name, expr in _settings(model).items():
        value = evaluate(expr, scope)
        if isinstance(value, str):
            env[name] = value
    # known only at deployment: the account endpoint, the alias (defaults to the account name), the namespace
    env["BATCH_ACCOUNTS"] = json.dumps({"mybatch": "https://mybatch.westeurope.batch.azure.com"})
    env["BATCH_DEFAULT_ACCOUNT"] = "mybatch"
    env["ServiceBusConnection__fullyQualifiedNamespace"] = "sb-x.servicebus.windows.net"
    settings = load_settings(env)
    assert settings.retention.dry_run is True


def test_batch_accounts_maps_the_alias_to_the_https_endpoint(model: Model) -> None:
    scope = _api_scope(model)
    settings = _settings(model)
    assert render(settings["BATCH_ACCOUNTS"]) == "string(batchAccounts)"
    accounts = scope.doc["variables"]["batchAccounts"]["value"]
    assert accounts == {"'${batchAccountAlias}'": "batchAccountEndpoint"}
    assert settings["BATCH_DEFAULT_ACCOUNT"] == "batchAccountAlias"
    assert scope.bindings is not None
    endpoint, _ = scope.bindings["batchAccountEndpoint"]
    # accountEndpoint has no scheme; the code requires https.
    assert endpoint == "https://${batchAccount.properties.accountEndpoint}"
    main = model["main.bicep"]
    batch = main["resources"]["batchAccount"]
    assert batch["existing"] is True and batch["type"] == "Microsoft.Batch/batchAccounts"
    assert render(batch["config"]["scope"]) == "resource_group(batchAccountResourceGroup)"


def test_function_app_runs_python_311_on_flex_consumption(model: Model) -> None:
    site = _site(model)["config"]
    assert site["kind"] == "functionapp,linux"
    assert site["tags"]["function"]["type"] == "union"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    _, _, plan = only(model, "Microsoft.Web/serverfarms")
    assert plan["config"]["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"


def test_function_app_is_tagged_for_azd(model: Model) -> None:
    tags = _site(model)["config"]["tags"]["function"]["parameters"]
    rendered = render(tags)
    assert "azd-service-name" in rendered and "api" in rendered
    main = model["main.bicep"]
    assert main["globals"]["scope"]["value"] == "subscription"
    assert main["variables"]["tags"]["value"] == {"'azd-env-name'": "environmentName"}


def test_host_storage_is_identity_only(model: Model) -> None:
    _, _, storage = only(model, "Microsoft.Storage/storageAccounts")
    props = storage["config"]["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["defaultToOAuthAuthentication"] is True


def test_application_insights_uses_entra_id_and_a_workspace(model: Model) -> None:
    _, _, insights = only(model, "Microsoft.Insights/components")
    props = insights["config"]["properties"]
    assert props["DisableLocalAuth"] is True
    assert render(props["WorkspaceResourceId"]) == "logAnalytics.id"
    only(model, "Microsoft.OperationalInsights/workspaces")
