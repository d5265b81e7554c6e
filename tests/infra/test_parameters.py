"""Every parameter of main.bicep can be set with `azd env set`, and every app setting an operator may change
is set through the azd variable of the same name.

infra/main.parameters.json maps each parameter to an azd environment variable: `${NAME=default}`, or
`${NAME}` where the Bicep default is empty or an expression (azd leaves a parameter whose variable is unset
out of the deployment, so the Bicep default applies; azd 1.15.0 or later). azd converts "true"/"7" to the
parameter's bool/int type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import pytest

from tests.infra.bicep import INFRA, Model, Scope, Unresolved, evaluate, module_scope, only

PARAMETERS_FILE: Final = INFRA / "main.parameters.json"
API: Final = "app/api.bicep"
# azd parameter-file substitution, the whole value: ${VAR} or ${VAR=default}
_AZD: Final = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?:=([^}]*))?\}")

# App settings whose value an operator chooses: each comes from a main.bicep parameter, mapped to the azd
# variable named like the setting itself (`azd env set RETENTION_DRY_RUN false`). The test derives this set
# from the templates and compares, so a new parameter-driven setting cannot go unmapped.
OPERATOR_SETTINGS: Final = frozenset(
    {
        "BATCH_DEFAULT_ACCOUNT",
        "BATCH_API_VERSION",
        "RETRY_MAX_ATTEMPTS",
        "DECISION_OVERRIDES",
        "RETENTION_SCHEDULE",
        "RETENTION_DAYS",
        "RETENTION_ACCOUNTS",
        "RETENTION_JOB_PREFIX",
        "RETENTION_JOB_STATE",
        "RETENTION_TASK_RESULT",
        "RETENTION_MAX_COMMANDS",
        "RETENTION_DRY_RUN",
        "ALERT_ALLOWED_ACTIONS",
        "ALERT_MAX_COMMANDS",
        "FLEET_SCOPE_PREFIXES",
        "FLEET_DEFAULT_LIMIT",
        "FLEET_MAX_LIMIT",
        "POLICIES",
        "POLICY_SCHEDULE",
    }
)


def _file() -> Mapping[str, Any]:
    parameters: Mapping[str, Any] = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    return parameters


def _mapping() -> dict[str, tuple[str, str | None]]:
    """parameter -> (azd variable, default text or None)."""
    mapped = {}
    for name, entry in _file().items():
        match = _AZD.fullmatch(entry["value"])
        assert match, f"{name}: value must be exactly ${{VAR}} or ${{VAR=default}}, got {entry['value']!r}"
        mapped[name] = (match.group(1), match.group(2))
    return mapped


def _operator_settings(model: Model) -> dict[str, str]:
    """app setting -> the main.bicep parameter that decides its value (directly, or through string()/join())."""
    _, _, site = only(model, "Microsoft.Web/sites")
    api_params = model[API]["parameters"]
    bindings = model["main.bicep"]["modules"]["api"]["config"]["params"]
    main_params = model["main.bicep"]["parameters"]
    found = {}
    for entry in site["config"]["properties"]["siteConfig"]["appSettings"]:
        value = entry["value"]
        if isinstance(value, dict) and "function" in value and value["function"]["type"] in {"string", "join"}:
            arguments = [v for v in value["function"]["parameters"].values() if isinstance(v, str)]
            value = arguments[0] if arguments else None
        if isinstance(value, str) and value in api_params:
            bound = bindings.get(value)
            if isinstance(bound, str) and bound in main_params:
                found[entry["name"]] = bound
    return found


def _bicep_default_as_azd_text(model: Model, name: str) -> str | None:
    """The Bicep default as azd would have to write it, or None when it is not a literal."""
    default = evaluate(name, Scope(model, "main.bicep"))
    if isinstance(default, Unresolved):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, int | str):
        return str(default)
    return None


def test_every_main_parameter_is_mapped_to_an_azd_variable(model: Model) -> None:
    main = model["main.bicep"]["parameters"]
    mapped = _mapping()
    assert mapped.keys() <= main.keys(), f"main.parameters.json names unknown parameters: {mapped.keys() - main.keys()}"
    missing = sorted(main.keys() - mapped.keys())
    assert not missing, f"not settable with `azd env set` (add to main.parameters.json): {missing}"


def test_azd_variables_are_unique(model: Model) -> None:
    variables = [variable for variable, _ in _mapping().values()]
    assert len(variables) == len(set(variables))


def test_every_operator_setting_is_mapped_under_its_own_name(model: Model) -> None:
    settings = _operator_settings(model)
    assert set(settings) == OPERATOR_SETTINGS, "an app setting is decided by a parameter: update OPERATOR_SETTINGS"
    mapping = _mapping()
    for setting, parameter in sorted(settings.items()):
        assert parameter in mapping, f"{setting}: parameter {parameter} is not in main.parameters.json"
        variable, _ = mapping[parameter]
        assert variable == setting, f"{parameter} sets {setting}, so its azd variable must be {setting}, not {variable}"


@pytest.mark.parametrize("name", sorted(json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]))
def test_azd_default_equals_the_bicep_default(model: Model, name: str) -> None:
    variable, azd_default = _mapping()[name]
    spec = model["main.bicep"]["parameters"][name]
    if spec.get("default") is None:
        assert azd_default is None, f"{name} is required: no azd default"
        return
    bicep_default = _bicep_default_as_azd_text(model, name)
    if bicep_default is None or bicep_default == "" or "}" in bicep_default:
        # an expression, empty, or text azd's ${VAR=default} cannot hold (it ends at the first "}"):
        # ${VAR} alone, so an unset variable leaves the Bicep default in charge
        assert azd_default is None, f"{name}: use ${{{variable}}} without a default"
    else:
        assert azd_default == bicep_default, f"{name}: azd default {azd_default!r} != Bicep default {bicep_default!r}"


def test_list_and_json_parameters_are_plain_strings(model: Model) -> None:
    """azd substitutes text; only recent azd versions parse JSON into array/object parameters. Lists are
    comma-separated and JSON is passed through as the app setting's text, so every azd version works."""
    main = model["main.bicep"]["parameters"]
    for name in _mapping():
        assert main[name]["type"] in {"string", "int", "bool"}, f"{name} is {main[name]['type']}"


def test_destructive_scheduled_work_is_a_dry_run_on_a_first_deployment(model: Model) -> None:
    assert model["main.bicep"]["parameters"]["retentionDryRun"]["default"] is True
    assert _mapping()["retentionDryRun"] == ("RETENTION_DRY_RUN", "true")
    scope = module_scope(model, "main.bicep", API)
    assert evaluate("retentionDryRun", scope) is True
