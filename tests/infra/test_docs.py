"""The deployment docs stay true to the templates: every parameter with its azd variable, every role,
checkov skip and alert rule is documented in docs/deployment.md."""

from __future__ import annotations

import re
from typing import Final

from tests.infra.bicep import INFRA, REPO, Model, resources
from tests.infra.test_parameters import _mapping
from tests.infra.test_roles import EXPECTED, EXPECTED_PRINCIPAL_LOOPS

DOC: Final = REPO / "docs" / "deployment.md"
_SKIP: Final = re.compile(r"//\s*checkov:skip=(CKV\w+):")
_CHECK_ID: Final = re.compile(r"^\s*id:\s*\"(CKV\w+)\"", re.MULTILINE)


def test_every_main_parameter_is_documented_with_its_azd_variable(model: Model) -> None:
    """One row of the parameters table per parameter, naming its azd variable."""
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    mapping = _mapping()
    for name in model["main.bicep"]["parameters"]:
        variable, _ = mapping[name]
        assert any(row.startswith(f"| `{name}` | `{variable}` |") for row in rows), (
            f"docs/deployment.md's parameters table has no row for {name} (azd variable {variable})"
        )


def test_every_role_is_documented(model: Model) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert list(resources(model, "Microsoft.Authorization/roleAssignments"))
    for guid, _ in EXPECTED:
        assert f"`{guid}`" in text, guid
    for guid, _, lists in EXPECTED_PRINCIPAL_LOOPS:
        for parameter in lists:
            assert f"`{parameter}`" in text and f"`{guid}`" in text, (parameter, guid)


def test_every_checkov_skip_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    skipped = {match for path in INFRA.rglob("*.bicep") for match in _SKIP.findall(path.read_text("utf-8"))}
    assert skipped, "expected at least one justified skip"
    missing = sorted(check for check in skipped if check not in text)
    assert not missing, f"docs/deployment.md does not list these checkov skips: {missing}"


def test_every_custom_check_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    ids = {match for path in (INFRA / "checks").glob("*.yaml") for match in _CHECK_ID.findall(path.read_text("utf-8"))}
    assert ids
    for check in sorted(ids):
        assert f"`_{check.rsplit('_', 1)[1]}`" in text or f"`{check}`" in text, check


def test_every_alert_rule_and_the_workbook_are_documented(model: Model) -> None:
    text = DOC.read_text(encoding="utf-8")
    for type_ in ("Microsoft.Insights/metricAlerts", "Microsoft.Insights/scheduledQueryRules"):
        for _, symbol, rule in resources(model, type_):
            prefix = rule["config"]["name"].split("${")[0]
            assert f"`{prefix}<token>`" in text, f"docs/deployment.md does not list alert {symbol} ({prefix}...)"
    assert "## Alerts" in text and "## Operations workbook" in text
    assert "infra/app/workbook.json" in text


def test_documented_alert_queries_are_the_deployed_ones(model: Model) -> None:
    text = DOC.read_text(encoding="utf-8")
    variables = model["app/alerts.bicep"]["variables"]
    default_gap = str(model["main.bicep"]["parameters"]["retentionRunMaxGapHours"]["default"])
    for name, variable in variables.items():
        value = variable["value"]
        if isinstance(value, dict) and value.get("function", {}).get("type") == "replace":
            parameters = value["function"]["parameters"]
            query = parameters["original_string"].replace(parameters["old_string"], default_gap)
        else:
            query = value
        if name.endswith("Query"):
            assert isinstance(query, str), name
            assert query.strip() in text, f"docs/deployment.md shows another {name} than infra/app/alerts.bicep"
