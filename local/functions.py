"""Read function_app's functions the way the Functions worker indexes them."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    trigger: dict[str, Any]
    call: Any  # the user's Python function

    @property
    def kind(self) -> str:
        return str(self.trigger["type"])


@functools.cache
def functions_of(app: func.FunctionApp) -> tuple[func.Function, ...]:
    """The app's functions. ``get_functions()`` records names and refuses to index the same app twice,
    so every caller in a process (the local host, tests) shares this one indexing."""
    return tuple(app.get_functions())


def index(app: func.FunctionApp) -> dict[str, IndexedFunction]:
    """Each function with its trigger binding (the JSON the worker would hand to the host)."""
    indexed = {}
    for function in functions_of(app):
        name = str(function.get_function_name())
        bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
        trigger = next(b for b in bindings if b["type"].endswith("Trigger"))
        indexed[name] = IndexedFunction(name, trigger, function.get_user_function())
    return indexed


def resolve(value: str, env: dict[str, str]) -> str:
    """Resolve a %AppSetting% reference the way the host does."""
    if value.startswith("%") and value.endswith("%"):
        name = value.strip("%")
        if name not in env:
            raise KeyError(f"the binding refers to app setting {name}, which is not set")
        return env[name]
    return value
