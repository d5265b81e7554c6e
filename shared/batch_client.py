"""The Azure Batch REST client: the five lifecycle actions, reads for dry runs, paged listings, task counts.

One ``urllib3.PoolManager`` (pooled keep-alive connections, thread-safe; built by ``shared.runtime``)
and one token credential per process. urllib3 directly rather than ``requests``: requests' own per-call
work was 40-48 % of a call's client CPU (docs/design.md, "Why these choices"). Transport
failures come back as answers with a ``TransportError`` code, so the policy decides on them like any
other answer. Nothing is retried at the HTTP level, redirects are never followed, and paging links are
checked against the configured endpoint, so the token only ever goes to configured hosts.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from email.utils import formatdate, parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from shared.contract import ID_PATTERN, Command, http_date
from shared.policy import TRANSPORT_ERROR

# The Batch audience is "https://batch.core.windows.net/" (trailing slash); azure-identity strips
# "/.default", so the scope needs the double slash.
BATCH_SCOPE: Final = "https://batch.core.windows.net//.default"
CONTENT_TYPE: Final = "application/json; odata=minimalmetadata"
# client-request-id is a GUID derived from the commandId, so every attempt of one command
# can be found in Batch's logs under the same id.
_CLIENT_REQUEST_NAMESPACE: Final = uuid.UUID("6f1c9a52-3f57-4d3e-9d0c-2b8f7f1e0a41")
MAX_MESSAGE_CHARS: Final = 300
MAX_RETRY_AFTER: Final = float(2**31)
_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# What requests asked for by default (gzip, deflate; br and zstd when their decoders are installed);
# urllib3 decodes the answer.
_ACCEPT_ENCODING: Final = urllib3.make_headers(accept_encoding=True)["accept-encoding"]
_NO_PARAMS: Final[Mapping[str, str]] = MappingProxyType({})

# The three records below are NamedTuples rather than frozen dataclasses: on Python 3.11 a frozen
# dataclass costs 0.5-1 ms at import (it execs the functions it generates), a NamedTuple under 0.1 ms,
# and cold start counts.


class BatchError(NamedTuple):
    code: str
    message: str
    values: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "values": [{"key": k, "value": v} for k, v in self.values]}


class BatchAnswer(NamedTuple):
    """What one Batch call answered (or why it got no answer)."""

    status: int | None
    error: BatchError | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    retry_after: float | None = None
    body: Mapping[str, Any] | None = None  # not in the repr: a listing page holds up to 1000 items
    duration_ms: int = 0

    def __repr__(self) -> str:
        return (
            f"BatchAnswer(status={self.status!r}, error={self.error!r}, request_id={self.request_id!r}, "
            f"client_request_id={self.client_request_id!r}, retry_after={self.retry_after!r}, "
            f"duration_ms={self.duration_ms!r})"
        )

    @property
    def code(self) -> str | None:
        return self.error.code if self.error else None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class UntrustedLink(ValueError):
    """A paging link points outside the configured endpoint; following it would leak the token."""


def client_request_id(command_id: str) -> str:
    return str(uuid.uuid5(_CLIENT_REQUEST_NAMESPACE, command_id))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds (decimal fractions tolerated) or an HTTP date.

    Values above 2**31 seconds count as 2**31, as RFC 9111 1.2.2 has caches do, so that a
    scheduled time computed from them cannot overflow; "inf", "nan" or "1e300" are not seconds.
    """
    if not value:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        whole = text.split(".")[0].lstrip("0")
        return MAX_RETRY_AFTER if len(whole) > 10 else min(float(text), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, moment.timestamp() - (time.time() if now is None else now)), MAX_RETRY_AFTER)


def _json_object(content: bytes) -> dict[str, Any] | None:
    """A response body that is a JSON object; None for anything else (empty, HTML, not text, a list)."""
    try:
        data = json.loads(content)
    except ValueError:  # not JSON, or not text (UnicodeDecodeError is a ValueError)
        return None
    return data if isinstance(data, dict) else None


def parse_error(body: bytes) -> BatchError | None:
    """Read a BatchError body; None when the body is not one (e.g. a proxy's HTML page)."""
    data = _json_object(body)
    if data is None or not isinstance(data.get("code"), str):
        return None
    message = data.get("message")
    text = message.get("value", "") if isinstance(message, dict) else ""
    # The service appends "\nRequestId:...\nTime:..." to the message; the request id is reported separately.
    first_line = str(text).split("\n", 1)[0][:MAX_MESSAGE_CHARS]
    values = tuple(
        (str(item.get("key", "")), str(item.get("value", ""))[:MAX_MESSAGE_CHARS])
        for item in data.get("values") or ()
        if isinstance(item, dict)
    )
    return BatchError(data["code"], first_line, values)


class _Call(NamedTuple):
    method: str
    path: str
    params: Mapping[str, str] = _NO_PARAMS
    body: Mapping[str, Any] | None = None


def _segment(value: str) -> str:
    # The contract validated IDs already; checking again here keeps this module safe on its own.
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"invalid Batch id {value!r}")
    return quote(value, safe="")


def action_call(command: Command) -> _Call:
    """The REST call that performs ``command``."""
    job = f"/jobs/{_segment(command.job_id)}"
    task = f"{job}/tasks/{_segment(command.task_id)}" if command.task_id is not None else ""
    if command.action == "deleteTask":
        return _Call("DELETE", task)
    if command.action == "terminateTask":
        return _Call("POST", f"{task}/terminate")
    if command.action == "reactivateTask":
        return _Call("POST", f"{task}/reactivate")
    params = {"force": "true"} if command.force else {}
    if command.action == "deleteJob":
        return _Call("DELETE", job, params)
    body = {"terminateReason": command.reason} if command.reason else None
    return _Call("POST", f"{job}/terminate", params, body)


class BatchClient:
    """Calls one or more Batch accounts; safe to share across the worker's threads.

    ``pools`` maps each account alias to the pool manager its calls go through (``shared.runtime.make_pools``:
    one ``urllib3.PoolManager`` for every account, or a ``urllib3.ProxyManager`` for an endpoint a proxy
    covers). ``timeout`` is (connect, read) in seconds.
    """

    def __init__(
        self,
        endpoints: Mapping[str, str],
        credential: TokenCredential,
        pools: Mapping[str, urllib3.PoolManager],
        api_version: str,
        timeout: tuple[float, float],
    ) -> None:
        self._endpoints = dict(endpoints)
        self._credential = credential
        self._pools = {account: pools[account] for account in self._endpoints}
        self._api_version = api_version
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])

    def execute(self, command: Command) -> BatchAnswer:
        """Perform the command's action."""
        return self._send(command.account, action_call(command), command)

    def get_job(self, account: str, job_id: str, command: Command | None = None) -> BatchAnswer:
        return self._send(account, _Call("GET", f"/jobs/{_segment(job_id)}"), command)

    def get_task(self, account: str, job_id: str, task_id: str, command: Command | None = None) -> BatchAnswer:
        path = f"/jobs/{_segment(job_id)}/tasks/{_segment(task_id)}"
        return self._send(account, _Call("GET", path), command)

    def get_task_counts(self, account: str, job_id: str, key: str | None = None) -> BatchAnswer:
        """Get Task Counts of one job (``GET /jobs/{jobId}/taskcounts``)."""
        return self._send(account, _Call("GET", f"/jobs/{_segment(job_id)}/taskcounts"), None, key)

    def list_page(
        self, account: str, path: str, params: Mapping[str, str], next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer:
        """One page of a listing: the first (``path`` with ``params``) or the one ``next_link`` names.

        A next link is followed only when it points at the configured endpoint and the same listing path
        (``UntrustedLink`` otherwise): it may come from a message, and the token must go nowhere else.
        ``key`` derives the client-request-id, so a page's attempts share one id in Batch's logs.
        """
        if next_link is None:
            return self._send(account, _Call("GET", path, params), None, key)
        url = self._trusted(account, next_link)
        assert url is not None  # a link was given
        # Batch ids are case-insensitive, so the service may spell the job differently in its link.
        if urlsplit(url).path.lower() != urlsplit(self._endpoints[account] + path).path.lower():
            raise UntrustedLink("paging link does not continue the same listing")
        return self._request(account, "GET", url, None, None, key=key)

    def list_pages(self, account: str, path: str, params: Mapping[str, str]) -> Iterator[BatchAnswer]:
        """Yield each page of a listing (jobs or tasks), following odata.nextLink.

        Stops after a failed page (which is yielded so the caller can report it).
        """
        url: str | None = self._endpoints[account] + path
        query: Mapping[str, str] | None = params
        while url is not None:
            answer = self._request(account, "GET", url, query, None)
            yield answer
            if not answer.ok or answer.body is None:
                return
            url = self._trusted(account, answer.body.get("odata.nextLink"))
            query = None  # the next link carries the query, $skiptoken included

    def list_values(self, account: str, path: str, params: Mapping[str, str]) -> Iterator[Mapping[str, Any]]:
        """Yield the items of a listing one by one; raise BatchListError on a failed page."""
        for values in self.list_value_pages(account, path, params):
            yield from values

    def list_value_pages(
        self, account: str, path: str, params: Mapping[str, str]
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
        """Yield the items of a listing a page at a time; raise BatchListError on a failed page."""
        for page in self.list_pages(account, path, params):
            if not page.ok or page.body is None:
                raise BatchListError(path, page)
            yield page.body.get("value", ())

    def _trusted(self, account: str, link: object) -> str | None:
        if link is None:
            return None
        endpoint = urlsplit(self._endpoints[account])
        target = urlsplit(str(link))
        if (target.scheme, target.netloc.lower()) != (endpoint.scheme, endpoint.netloc):
            raise UntrustedLink(f"paging link host {target.netloc!r} is not the configured endpoint")
        return str(link)

    def _send(self, account: str, call: _Call, command: Command | None, key: str | None = None) -> BatchAnswer:
        url = self._endpoints[account] + call.path
        params = {**call.params, "api-version": self._api_version}
        return self._request(account, call.method, url, params, call.body, command=command, key=key)

    def _headers(self, command: Command | None, has_body: bool, key: str | None) -> dict[str, str]:
        token = self._credential.get_token(BATCH_SCOPE).token
        if key is None and command is not None:
            key = command.command_id
        headers = {
            "Authorization": f"Bearer {token}",
            "ocp-date": formatdate(usegmt=True),
            "return-client-request-id": "true",
            "client-request-id": client_request_id(key) if key is not None else str(uuid.uuid4()),
            "Accept": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
        }
        if has_body:
            headers["Content-Type"] = CONTENT_TYPE
        if command is not None and command.if_match:
            headers["If-Match"] = command.if_match
        if command is not None and command.if_unmodified_since:
            headers["If-Unmodified-Since"] = http_date(command.if_unmodified_since)
        return headers

    def _request(
        self,
        account: str,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        *,
        command: Command | None = None,
        key: str | None = None,
    ) -> BatchAnswer:
        started = time.perf_counter()
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        try:
            headers = self._headers(command, body is not None, key)
            # No retries (the policy's job) and no redirects (a 3xx is an answer the policy decides on,
            # and following one could send the token elsewhere). The whole body is read (preload_content),
            # so the connection goes back to the pool.
            response = self._pools[account].request(
                method,
                url,
                body=json.dumps(body).encode() if body is not None else None,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
            return _answer(response.status, response.headers, response.data, _elapsed_ms(started))
        except ClientAuthenticationError as exc:
            # The identity endpoint failed; the exception text carries no token.
            return _failure(f"could not get a token: {type(exc).__name__}", started, command, key)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Reported by type only: urllib3's texts can carry the URL.
            return _failure(f"no answer from Batch: {type(exc).__name__}", started, command, key)


class BatchListError(RuntimeError):
    def __init__(self, path: str, answer: BatchAnswer) -> None:
        self.answer = answer
        super().__init__(f"listing {path} failed: HTTP {answer.status} {answer.code}")


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _failure(message: str, started: float, command: Command | None, key: str | None = None) -> BatchAnswer:
    key = key if key is not None else (command.command_id if command else None)
    return BatchAnswer(
        status=None,
        error=BatchError(TRANSPORT_ERROR, message),
        client_request_id=client_request_id(key) if key is not None else None,
        duration_ms=_elapsed_ms(started),
    )


def _answer(status: int, headers: Mapping[str, str], content: bytes, duration_ms: int) -> BatchAnswer:
    """The answer one response gave; ``headers`` must look names up case-insensitively (urllib3's
    ``HTTPHeaderDict`` does)."""
    ok = 200 <= status < 300
    return BatchAnswer(
        status=status,
        error=None if ok else parse_error(content),
        request_id=headers.get("request-id"),
        client_request_id=headers.get("client-request-id"),
        retry_after=parse_retry_after(headers.get("Retry-After")),
        body=_json_object(content) if ok else None,
        duration_ms=duration_ms,
    )
