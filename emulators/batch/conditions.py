"""HTTP conditional headers on single-resource operations, with the service's precedence rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from emulators.batch.errors import BatchApiError
from emulators.batch.timefmt import parse_http_date

# Header names are lower-case: the server hands over headers keyed that way.
_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
# Pairs the service accepts together; the header named for each pair is the one evaluated.
_ALLOWED_PAIRS = {
    frozenset({"if-none-match", "if-modified-since"}): "if-none-match",
    frozenset({"if-match", "if-unmodified-since"}): "if-match",
}


def _strip_etag(value: str) -> str:
    value = value.strip()
    value = value.removeprefix("W/")
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


@dataclass(frozen=True)
class Conditions:
    """The one conditional header that governs a request, if any."""

    header: str | None = None
    value: str = ""

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Conditions:
        present = {name for name in _HEADERS if headers.get(name) is not None}
        if not present:
            return cls()
        if len(present) == 1:
            header = present.pop()
        elif frozenset(present) in _ALLOWED_PAIRS:
            header = _ALLOWED_PAIRS[frozenset(present)]
        else:
            raise BatchApiError("MultipleConditionHeadersNotSupported")
        value = headers[header]
        if header.endswith("since"):
            _parse_date(header, value)
        return cls(header, value)

    def check(self, etag: str, last_modified: datetime, is_read: bool) -> None:
        """Raise ConditionNotMet (304 for reads where HTTP says so, otherwise 412) when unmet."""
        if self.header is None or self._met(etag, last_modified):
            return
        not_modified = is_read and self.header in ("if-none-match", "if-modified-since")
        raise BatchApiError("ConditionNotMet", status=304 if not_modified else 412)

    def _met(self, etag: str, last_modified: datetime) -> bool:
        # HTTP dates have whole seconds, so compare at that precision.
        modified = last_modified.replace(microsecond=0)
        if self.header == "if-match":
            return self._matches(etag)
        if self.header == "if-none-match":
            return not self._matches(etag)
        since = _parse_date(self.header or "", self.value)
        return modified > since if self.header == "if-modified-since" else modified <= since

    def _matches(self, etag: str) -> bool:
        candidates = [_strip_etag(part) for part in self.value.split(",")]
        return "*" in candidates or etag in candidates


def _parse_date(header: str, value: str) -> datetime:
    try:
        return parse_http_date(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise BatchApiError("InvalidHeaderValue", {"HeaderName": header, "HeaderValue": value}) from exc


NO_CONDITIONS = Conditions()
