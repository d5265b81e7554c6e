"""Fixtures for the infrastructure tests: the Bicep in infra/, parsed once per session by pycep-parser.

pycep-parser lives in .venv-checkov (checkov pins it; the main environment must not depend on checkov).
`make test` creates that environment first, so CI never skips; on a machine without it the Bicep tests
skip with a message saying how to create it.
"""

from __future__ import annotations

import pytest

from tests.infra.bicep import Model, checkov_missing_reason, load_model


@pytest.fixture(scope="session")
def model() -> Model:
    reason = checkov_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return load_model()
