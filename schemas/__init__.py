"""The JSON Schemas (draft 2020-12) of the product's message contracts, and a loader for them.

``command.schema.json`` is the queue message body (shared/contract.py enforces the same rules);
``outcome.schema.json`` is the outcome event body (shared/outcome.py produces it); ``policies.schema.json``
is the ``POLICIES`` setting (shared/policies.py checks it at start-up; it refers to the command schema's
selector definitions by ``$id``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

DIRECTORY: Final = Path(__file__).resolve().parent
COMMAND: Final = "command.schema.json"
OUTCOME: Final = "outcome.schema.json"
POLICIES: Final = "policies.schema.json"


def load(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (one of COMMAND, OUTCOME, POLICIES); a fresh dict on every call."""
    schema = json.loads((DIRECTORY / name).read_text(encoding="utf-8"))
    if not isinstance(schema, dict):
        raise ValueError(f"{name} is not a JSON object")
    return schema
