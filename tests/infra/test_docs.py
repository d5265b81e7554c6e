"""The deployment docs stay true to the templates: every parameter (README), role and checkov skip
(docs/deployment.md) is documented."""

from __future__ import annotations

import re
from typing import Final

from tests.infra.bicep import INFRA, REPO, Model, resources
from tests.infra.test_roles import EXPECTED

DOC: Final = REPO / "docs" / "deployment.md"
README: Final = REPO / "README.md"
_SKIP: Final = re.compile(r"//\s*checkov:skip=(CKV\w+):")


def test_every_main_parameter_is_documented(model: Model) -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in model["main.bicep"]["parameters"] if f"`{name}`" not in text]
    assert not missing, f"README.md's deployment parameters table does not describe: {missing}"


def test_every_role_is_documented(model: Model) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert list(resources(model, "Microsoft.Authorization/roleAssignments"))
    for guid, _ in EXPECTED:
        assert f"`{guid}`" in text, guid


def test_every_checkov_skip_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    skipped = {match for path in INFRA.rglob("*.bicep") for match in _SKIP.findall(path.read_text("utf-8"))}
    assert skipped, "expected at least one justified skip"
    missing = sorted(check for check in skipped if check not in text)
    assert not missing, f"docs/deployment.md does not list these checkov skips: {missing}"
