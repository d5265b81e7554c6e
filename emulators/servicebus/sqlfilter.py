"""The subset of the Service Bus SQL filter language that subscription rules use.

Supported: comparisons (``= <> != < <= > >=``), ``[NOT] IN (...)``, ``[NOT] LIKE``, ``IS [NOT] NULL``,
``EXISTS(prop)``, ``AND``/``OR``/``NOT`` and parentheses, over ``sys.*`` (system) and ``user.*`` or bare
(application) properties. Evaluation uses SQL three-valued logic: a missing property or a comparison
between incompatible types is *unknown*, and a rule matches only when its filter is TRUE.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Truth = bool | None  # None is SQL's UNKNOWN


@dataclass(frozen=True)
class FilterView:
    """What a filter can see of a message: system and application properties."""

    system: Mapping[str, Any]  # lower-case system property names, e.g. "messageid", "label"
    user: Mapping[str, Any]


Predicate = Callable[[FilterView], Truth]
Operand = Callable[[FilterView], tuple[bool, Any]]  # (exists, value)


class SqlFilterError(ValueError):
    """The expression is not valid in the supported SQL subset."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<br>\[[^\]]+\])"
    r"|(?P<op><>|!=|<=|>=|=|<|>|\(|\)|,)|(?P<word>[A-Za-z_$@][\w.$@-]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "EXISTS", "LIKE", "TRUE", "FALSE", "ESCAPE"}
_SYSTEM_ALIASES = {"subject": "label"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SqlFilterError(f"unexpected input at {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def _property(name: str) -> Operand:
    scope, _, rest = name.partition(".")
    if rest and scope.lower() == "sys":
        key = rest.lower()
        key = _SYSTEM_ALIASES.get(key, key)
        return lambda view: (key in view.system and view.system[key] is not None, view.system.get(key))
    prop = rest if rest and scope.lower() == "user" else name
    return lambda view: (prop in view.user, view.user.get(prop))


def _constant(value: Any) -> Operand:
    return lambda _view: (value is not None, value)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):  # includes proton's int32, ulong, ...
        return "number"
    return "str" if isinstance(value, str) else type(value).__name__


def _compare(op: str, left: Any, right: Any) -> Truth:
    if _kind(left) != _kind(right):  # e.g. 3 = '3' is unknown, not false
        return None
    try:
        return bool(_OPERATORS[op](left, right))
    except TypeError:
        return None


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = ("." if ch == "_" else ".*" if ch == "%" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _negate(pred: Predicate) -> Predicate:
    def run(view: FilterView) -> Truth:
        result = pred(view)
        return None if result is None else not result

    return run


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise SqlFilterError(f"expected {value!r}, found {token[1] or 'end of expression'!r}")
        if token[0] == "eof":
            raise SqlFilterError("unexpected end of expression")
        self.pos += 1
        return token

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] in ("kw", "op"):
            self.pos += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek()[0] != "eof":
            raise SqlFilterError(f"unexpected {self.peek()[1]!r}")
        return pred

    def or_expr(self) -> Predicate:
        pred = self.and_expr()
        while self.accept("OR"):
            left, right = pred, self.and_expr()
            pred = _or(left, right)
        return pred

    def and_expr(self) -> Predicate:
        pred = self.not_expr()
        while self.accept("AND"):
            left, right = pred, self.not_expr()
            pred = _and(left, right)
        return pred

    def not_expr(self) -> Predicate:
        if self.accept("NOT"):
            return _negate(self.not_expr())
        return self.predicate()

    def predicate(self) -> Predicate:
        if self.peek() == ("op", "("):
            self.take("(")
            pred = self.or_expr()
            self.take(")")
            return pred
        if self.accept("EXISTS"):
            parens = self.accept("(")
            operand = self.operand()
            if parens:
                self.take(")")
            return lambda view: operand(view)[0]
        return self.comparison(self.operand())

    def comparison(self, left: Operand) -> Predicate:
        kind, value = self.peek()
        if kind == "op" and value in _OPERATORS:
            self.take()
            right = self.operand()
            return lambda view: _binary(value, left(view), right(view))
        negated = self.accept("NOT")
        if self.accept("IN"):
            pred = self.in_list(left)
        elif self.accept("LIKE"):
            pred = self.like(left)
        elif not negated and self.accept("IS"):
            is_not = self.accept("NOT")
            self.take("NULL")
            return (lambda view: left(view)[0]) if is_not else (lambda view: not left(view)[0])
        elif negated:
            raise SqlFilterError("NOT must be followed by IN or LIKE here")
        else:
            return lambda view: _truthy(left(view))
        return _negate(pred) if negated else pred

    def in_list(self, left: Operand) -> Predicate:
        self.take("(")
        items = [self.operand()]
        while self.accept(","):
            items.append(self.operand())
        self.take(")")

        def run(view: FilterView) -> Truth:
            results = [_binary("=", left(view), item(view)) for item in items]
            return True if True in results else (None if None in results else False)

        return run

    def like(self, left: Operand) -> Predicate:
        kind, pattern = self.take()
        if kind != "str":
            raise SqlFilterError("LIKE needs a string pattern")
        regex = _like_regex(_unquote(pattern))

        def run(view: FilterView) -> Truth:
            exists, value = left(view)
            if not exists or not isinstance(value, str):
                return None
            return regex.match(value) is not None

        return run

    def operand(self) -> Operand:
        kind, value = self.take()
        if kind == "num":
            return _constant(float(value) if "." in value else int(value))
        if kind == "str":
            return _constant(_unquote(value))
        if kind == "br":
            return _property(value[1:-1])
        if kind == "word":
            return _property(value)
        if kind == "kw" and value in ("TRUE", "FALSE"):
            return _constant(value == "TRUE")
        if kind == "kw" and value == "NULL":
            return _constant(None)
        raise SqlFilterError(f"expected a property or a literal, found {value!r}")


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("''", "'")


def _binary(op: str, left: tuple[bool, Any], right: tuple[bool, Any]) -> Truth:
    if not (left[0] and right[0]):
        return None
    return _compare(op, left[1], right[1])


def _truthy(operand: tuple[bool, Any]) -> Truth:
    exists, value = operand
    return (value is True) if exists else None


def _and(left: Predicate, right: Predicate) -> Predicate:
    def run(view: FilterView) -> Truth:
        a = left(view)
        if a is False:
            return False
        b = right(view)
        if b is False:
            return False
        return True if (a and b) else None

    return run


def _or(left: Predicate, right: Predicate) -> Predicate:
    def run(view: FilterView) -> Truth:
        a = left(view)
        if a is True:
            return True
        b = right(view)
        if b is True:
            return True
        return False if (a is False and b is False) else None

    return run


def compile_sql(expression: str) -> Predicate:
    """Parse a SQL filter expression into a predicate; raises SqlFilterError when invalid."""
    return _Parser(expression).parse()
