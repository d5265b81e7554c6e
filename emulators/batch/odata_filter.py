"""A compiler for the OData `$filter` subset that the Batch list operations accept.

Filters compile to a predicate over the REST JSON of a resource. Timestamps are stored in a fixed-width
ISO form (see timefmt.format_iso), so datetime comparisons are plain string comparisons.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from emulators.batch.timefmt import format_iso, parse_iso

Resource = Mapping[str, Any]
Predicate = Callable[[Resource], bool]
Kind = Literal["string", "id", "enum", "datetime", "int"]

_ORDERING = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
_EQUALITY = frozenset({"eq", "ne"})
_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


@dataclass(frozen=True)
class Property:
    """A filterable property: its JSON path, value kind and (for enums) the allowed values."""

    path: tuple[str, ...]
    kind: Kind
    operators: frozenset[str]
    choices: frozenset[str] = frozenset()


def _prop(path: str, kind: Kind, choices: frozenset[str] = frozenset()) -> Property:
    operators = _EQUALITY if kind == "enum" else _ORDERING
    return Property(tuple(path.split("/")), kind, operators, choices)


TASK_STATES = frozenset({"active", "preparing", "running", "completed"})
JOB_STATES = frozenset({"active", "disabling", "disabled", "enabling", "terminating", "completed", "deleting"})

TASK_PROPERTIES: dict[str, Property] = {
    "id": _prop("id", "id"),
    "state": _prop("state", "enum", TASK_STATES),
    "stateTransitionTime": _prop("stateTransitionTime", "datetime"),
    "creationTime": _prop("creationTime", "datetime"),
    "lastModifiedTime": _prop("lastModified", "datetime"),
    "lastModified": _prop("lastModified", "datetime"),
    "executionInfo/startTime": _prop("executionInfo/startTime", "datetime"),
    "executionInfo/endTime": _prop("executionInfo/endTime", "datetime"),
    "executionInfo/exitCode": _prop("executionInfo/exitCode", "int"),
    "executionInfo/result": _prop("executionInfo/result", "enum", frozenset({"success", "failure"})),
}

JOB_PROPERTIES: dict[str, Property] = {
    "id": _prop("id", "id"),
    "state": _prop("state", "enum", JOB_STATES),
    "stateTransitionTime": _prop("stateTransitionTime", "datetime"),
    "creationTime": _prop("creationTime", "datetime"),
    "lastModified": _prop("lastModified", "datetime"),
    "executionInfo/startTime": _prop("executionInfo/startTime", "datetime"),
    "executionInfo/endTime": _prop("executionInfo/endTime", "datetime"),
    "executionInfo/poolId": _prop("executionInfo/poolId", "string"),
}


class FilterError(ValueError):
    """The $filter text is not valid for this list; the message says why."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dt>(?i:datetime)'[^']*')|(?P<punct>[(),])"
    r"|(?P<num>-?\d[\d:.TZz+-]*)|(?P<word>[A-Za-z_][\w/]*))"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"unexpected character at position {position}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over: or_expr := and_expr ('or' and_expr)*; and_expr := primary ('and' primary)*."""

    def __init__(self, text: str, properties: Mapping[str, Property]) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.properties = properties

    def parse(self) -> Predicate:
        if not self.tokens:
            raise FilterError("empty filter")
        result = self._or()
        if self.position != len(self.tokens):
            raise FilterError(f"unexpected '{self.tokens[self.position][1]}'")
        return result

    def _peek_word(self) -> str:
        if self.position < len(self.tokens) and self.tokens[self.position][0] == "word":
            return self.tokens[self.position][1].lower()
        return ""

    def _next(self, expected_kind: str | None = None, expected: str | None = None) -> str:
        if self.position >= len(self.tokens):
            raise FilterError("filter ends too early")
        kind, value = self.tokens[self.position]
        if (expected_kind and kind != expected_kind) or (expected and value.lower() != expected):
            raise FilterError(f"unexpected '{value}'")
        self.position += 1
        return value

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek_word() == "or":
            self.position += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda item: any(part(item) for part in parts)

    def _and(self) -> Predicate:
        parts = [self._primary()]
        while self._peek_word() == "and":
            self.position += 1
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else lambda item: all(part(item) for part in parts)

    def _primary(self) -> Predicate:
        kind, value = self.tokens[self.position] if self.position < len(self.tokens) else ("", "")
        if kind == "punct" and value == "(":
            self.position += 1
            inner = self._or()
            self._next("punct", ")")
            return inner
        if self._peek_word() == "startswith":
            return self._startswith()
        return self._comparison()

    def _property(self) -> Property:
        name = self._next("word")
        prop = self.properties.get(name)
        if prop is None:
            raise FilterError(f"property '{name}' cannot be used in a filter")
        return prop

    def _startswith(self) -> Predicate:
        self._next("word")
        self._next("punct", "(")
        prop = self._property()
        if prop.kind not in ("id", "string"):
            raise FilterError("startswith applies to string properties only")
        self._next("punct", ",")
        prefix = _unquote(self._next("str"))
        self._next("punct", ")")
        if prop.kind == "id":
            prefix = prefix.lower()
        getter = _getter(prop)

        def matches(item: Resource) -> bool:
            value = getter(item)
            return isinstance(value, str) and value.startswith(prefix)

        # OData v3 clients often write `startswith(id,'x') eq true`.
        if self._peek_word() == "eq":
            self.position += 1
            wanted = self._next("word").lower()
            if wanted not in ("true", "false"):
                raise FilterError("startswith(...) can only be compared with true or false")
            if wanted == "false":
                return lambda item: not matches(item)
        return matches

    def _comparison(self) -> Predicate:
        prop = self._property()
        op = self._next("word").lower()
        if op not in prop.operators:
            raise FilterError(f"operator '{op}' is not supported for '{'/'.join(prop.path)}'")
        literal = _literal(prop, *self.tokens[self.position]) if self.position < len(self.tokens) else None
        if literal is None:
            raise FilterError(f"missing or invalid value for '{'/'.join(prop.path)}'")
        self.position += 1
        getter = _getter(prop)
        compare = _COMPARATORS[op]
        if op == "ne":
            return lambda item: getter(item) != literal  # a missing value is unequal
        return lambda item: (v := getter(item)) is not None and compare(v, literal)


def _unquote(token: str) -> str:
    return token[1:-1].replace("''", "'")


def _literal(prop: Property, kind: str, token: str) -> str | int | None:
    """Convert a literal token to the stored representation of `prop`, or None when it does not fit."""
    if prop.kind == "int":
        return int(token) if kind == "num" else None
    if prop.kind == "datetime":
        return _datetime_literal(kind, token)
    if kind != "str":
        return None
    value = _unquote(token)
    if prop.kind == "enum" and value not in prop.choices:
        raise FilterError(f"'{value}' is not a valid value for '{'/'.join(prop.path)}'")
    return value.lower() if prop.kind == "id" else value


def _datetime_literal(kind: str, token: str) -> str | None:
    """Accepts datetime'...', a quoted timestamp or a bare one."""
    raw = {"dt": token[len("datetime'") : -1], "str": token[1:-1], "num": token}.get(kind)
    if raw is None:
        return None
    try:
        return format_iso(parse_iso(raw))
    except ValueError:
        return None


def _getter(prop: Property) -> Callable[[Resource], Any]:
    """Read the property's value; ids read lower-cased because Batch ids are case-insensitive."""
    path = prop.path
    if len(path) == 1:
        key = path[0]
        if prop.kind == "id":
            return lambda item: item[key].lower()
        return lambda item: item.get(key)
    outer, inner = path

    def nested(item: Resource) -> Any:
        container = item.get(outer)
        return container.get(inner) if container else None

    return nested


def compile_filter(text: str, properties: Mapping[str, Property]) -> Predicate:
    """Compile `text`; raises FilterError with a human-readable reason."""
    return _Parser(text, properties).parse()
