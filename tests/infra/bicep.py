"""Read the parsed Bicep model (pycep-parser output) and evaluate the simple expressions the tests need.

pycep-parser renders a bare identifier (a parameter, variable or resource symbol) as a plain string, the
same as a string literal; :func:`evaluate` therefore treats a string that names a parameter or variable
of the file as a reference, and any other string as a literal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[2]
INFRA: Final = REPO / "infra"
CHECKOV_VENV: Final = Path(os.environ.get("CHECKOV_VENV", REPO / ".venv-checkov"))
CHECKOV_PYTHON: Final = CHECKOV_VENV / "bin" / "python"
DUMPER: Final = Path(__file__).with_name("_dump_bicep.py")

Model = dict[str, dict[str, Any]]
_INTERPOLATION: Final = re.compile(r"\$\{([^}]*)\}")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Unresolved:
    """An expression whose value is only known at deployment (resource property, output, function)."""

    def __init__(self, expr: object) -> None:
        self.expr = expr

    def __repr__(self) -> str:
        return f"Unresolved({render(self.expr)})"


def load_model(infra: Path = INFRA) -> Model:
    """Parse every .bicep file under ``infra`` with pycep-parser (in .venv-checkov)."""
    result = subprocess.run(
        [str(CHECKOV_PYTHON), str(DUMPER), str(infra)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"Bicep does not parse with pycep-parser:\n{result.stderr}")
    model: Model = json.loads(result.stdout)
    return model


def render(expr: object) -> str:
    """A readable, stable text form of a parsed expression (property chains as dotted names)."""
    if isinstance(expr, dict):
        operator = expr.get("operator")
        if isinstance(operator, dict) and operator.get("type") == "property_accessor":
            operands = operator["operands"]
            return f"{render(operands['operand_1'])}.{render(operands['operand_2'])}"
        function = expr.get("function")
        if isinstance(function, dict):
            args = ", ".join(render(v) for v in function.get("parameters", {}).values() if v is not None)
            return f"{function['type']}({args})"
        return json.dumps(expr, sort_keys=True, default=str)
    return str(expr)


@dataclass(frozen=True)
class Scope:
    """Where an expression is evaluated: a file, and the parameter values its caller passed (if any)."""

    model: Mapping[str, Mapping[str, Any]]
    file: str
    bindings: Mapping[str, tuple[object, Scope]] | None = None

    @property
    def doc(self) -> Mapping[str, Any]:
        return self.model[self.file]


def module_scope(model: Model, caller: str, module_file: str) -> Scope:
    """The scope of ``module_file`` as called from ``caller`` (exactly one module declaration)."""
    caller_scope = Scope(model, caller)
    calls = [m for m in model[caller].get("modules", {}).values() if m.get("detail", {}).get("path") == module_file]
    assert len(calls) == 1, f"{caller} should call {module_file} exactly once, found {len(calls)}"
    params = calls[0]["config"].get("params", {})
    return Scope(model, module_file, {name: (value, caller_scope) for name, value in params.items()})


def evaluate(expr: object, scope: Scope) -> object:
    """Evaluate literals, parameter/variable references, string(), join(); else :class:`Unresolved`."""
    if isinstance(expr, bool | int | float) or expr is None:
        return expr
    if isinstance(expr, str):
        return _evaluate_name(expr, scope)
    if isinstance(expr, list):
        return [evaluate(item, scope) for item in expr]
    if isinstance(expr, dict) and "operator" not in expr:
        function = expr.get("function")
        if isinstance(function, dict):
            return _call(function, scope)
        return {key: evaluate(value, scope) for key, value in expr.items()}
    return Unresolved(expr)


def _evaluate_name(text: str, scope: Scope) -> object:
    """A parameter (bound by the caller, else its default), a variable, or a (possibly interpolated) literal."""
    params = scope.doc.get("parameters", {})
    variables = scope.doc.get("variables", {})
    if text in params:
        if scope.bindings is not None and text in scope.bindings:
            value, caller = scope.bindings[text]
            return evaluate(value, caller)
        default = params[text].get("default")
        return Unresolved(text) if default is None else evaluate(default, scope)
    if text in variables:
        return evaluate(variables[text]["value"], scope)
    return _interpolate(text, scope)


def _call(function: Mapping[str, Any], scope: Scope) -> object:
    args = function.get("parameters", {})
    if function["type"] == "string":
        value = evaluate(args["value_to_convert"], scope)
        if _contains_unresolved(value):
            return Unresolved(function)
        if isinstance(value, str | int | float | bool):
            return _plain(value)
        return json.dumps(value, separators=(",", ":"))
    if function["type"] == "join":
        items = evaluate(args["input_array"], scope)
        delimiter = evaluate(args["delimiter"], scope)
        if isinstance(items, list) and all(isinstance(i, str) for i in items) and isinstance(delimiter, str):
            return delimiter.join(str(i) for i in items)
    return Unresolved(function)


def _interpolate(text: str, scope: Scope) -> object:
    """Substitute ``${name}`` parts that evaluate to plain values; Unresolved if any part does not."""
    parts: list[str] = []
    position = 0
    for match in _INTERPOLATION.finditer(text):
        value = evaluate(match.group(1), scope) if _IDENTIFIER.fullmatch(match.group(1)) else None
        if value is None or value == match.group(1) or not isinstance(value, str | int | bool):
            return Unresolved(text)
        parts += [text[position : match.start()], _plain(value)]
        position = match.end()
    return "".join([*parts, text[position:]])


def _plain(value: str | int | float | bool) -> str:
    """Bicep's string() of a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _contains_unresolved(value: object) -> bool:
    if isinstance(value, Unresolved):
        return True
    if isinstance(value, dict):
        return any(_contains_unresolved(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_unresolved(v) for v in value)
    return False


def resources(model: Model, type_: str | None = None) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(file, symbol, resource) for every declared (not ``existing``) resource, optionally of one type."""
    for file, doc in sorted(model.items()):
        for symbol, resource in doc.get("resources", {}).items():
            if resource.get("existing"):
                continue
            if type_ is None or resource["type"] == type_:
                yield file, symbol, resource


def only(model: Model, type_: str) -> tuple[str, str, Mapping[str, Any]]:
    """The single declared resource of ``type_``."""
    found = list(resources(model, type_))
    assert len(found) == 1, f"expected exactly one {type_}, found {[f'{f}:{s}' for f, s, _ in found]}"
    return found[0]


def checkov_missing_reason() -> str | None:
    """Why the Bicep tests cannot run here, or None when .venv-checkov is ready."""
    if CHECKOV_PYTHON.exists():
        return None
    return (
        f"{CHECKOV_VENV} is missing: run `infra/check.sh --venv-only` (make test does) to create the "
        "environment holding checkov and pycep-parser"
    )


if __name__ == "__main__":  # debugging aid: print the parsed model
    json.dump(load_model(), sys.stdout, indent=1, default=str)
