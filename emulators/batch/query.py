"""Query parameters of the list operations: $filter, $select, maxresults and $skiptoken paging."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from emulators.batch.errors import BatchApiError
from emulators.batch.odata_filter import FilterError, Predicate, Property, compile_filter

MAX_RESULTS = 1000


@dataclass(frozen=True)
class ListQuery:
    predicate: Predicate | None
    select: tuple[str, ...] | None
    limit: int
    after: str | None


def _invalid(name: str, value: str, reason: str, code: str = "InvalidQueryParameterValue") -> BatchApiError:
    return BatchApiError(code, {"QueryParameterName": name, "QueryParameterValue": value, "Reason": reason})


def parse_select(query: Mapping[str, str]) -> tuple[str, ...] | None:
    raw = query.get("$select")
    if raw is None:
        return None
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not names:
        raise _invalid("$select", raw, "no property names given")
    return names


def parse_list_query(query: Mapping[str, str], properties: Mapping[str, Property]) -> ListQuery:
    predicate = None
    raw_filter = query.get("$filter")
    if raw_filter is not None:
        try:
            predicate = compile_filter(raw_filter, properties)
        except FilterError as exc:
            raise _invalid("$filter", raw_filter, str(exc)) from exc
    return ListQuery(predicate, parse_select(query), _parse_limit(query), _parse_skiptoken(query))


def _parse_limit(query: Mapping[str, str]) -> int:
    raw = query.get("maxresults")
    if raw is None:
        return MAX_RESULTS
    try:
        limit = int(raw)
    except ValueError as exc:
        raise _invalid("maxresults", raw, "not an integer") from exc
    if not 1 <= limit <= MAX_RESULTS:
        raise _invalid("maxresults", raw, "must be between 1 and 1000", "OutOfRangeQueryParameterValue")
    return limit


def _parse_skiptoken(query: Mapping[str, str]) -> str | None:
    raw = query.get("$skiptoken")
    if raw is None:
        return None
    try:
        decoded = base64.b64decode(raw.encode() + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        return decoded.decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid("$skiptoken", raw, "not a token this server issued") from exc


def next_link(url: str, query: Mapping[str, str], after: str) -> str:
    """Absolute URL of the next page: the same query with a fresh opaque $skiptoken."""
    token = base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")
    kept = {name: value for name, value in query.items() if name != "$skiptoken"}
    kept["$skiptoken"] = token
    # quote (not quote_plus): spaces become %20, which every OData client reads back correctly.
    encoded = urlencode(kept, quote_via=quote, safe="$,'/:")
    return f"{url}?{encoded}"
