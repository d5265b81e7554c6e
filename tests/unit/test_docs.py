"""The README documents every setting the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_readme_documents_the_setting(name: str) -> None:
    text = README.read_text(encoding="utf-8")
    # A whole name: ServiceBusConnection must not be satisfied by ServiceBusConnection__fullyQualifiedNamespace.
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text), f"README.md does not mention {name}"
