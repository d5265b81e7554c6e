"""The Batch client's transport (shared/batch_client.py on shared.runtime's pool) against scripted servers.

Each server is a loopback socket that answers the way a test needs: a redirect, a throttle, a reset,
a stall, a truncated or compressed body. What the client must keep: one request per call (no HTTP
retries), no redirect followed, every wait bounded, every failure an answer, the token only sent to
the configured endpoint, and the worker's threads sharing the pool without queueing behind each other.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests  # only as the reference for the query encoding the client had with requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.batch_client import BATCH_SCOPE, BatchAnswer, BatchClient, UntrustedLink
from shared.contract import Command
from shared.runtime import make_pools

TOKEN = "transport-test-token"  # a stand-in, checked to stay out of every message
API_VERSION = "2025-06-01"


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


# What a server does with one request: write to the connection; False closes it afterwards.
Respond = Callable[[Seen, socket.socket], bool]


def reply(status: int, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answering(status: int, body: bytes = b"", **headers: str) -> Respond:
    def respond(seen: Seen, conn: socket.socket) -> bool:
        conn.sendall(reply(status, body, **headers))
        return True

    return respond


@dataclass
class Server:
    """A loopback HTTP/1.1 server; every request it read is in ``seen``, every connection it accepted counted."""

    respond: Respond
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._socket.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                method, target, _ = request_line.split(" ", 2)
                seen = Seen(method, target, headers, body)
                with self._lock:
                    self.seen.append(seen)
                try:
                    if not self.respond(seen, conn):
                        return
                except OSError:
                    return


class RecordingCredential:
    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.fail = fail

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("the identity endpoint refused")
        return AccessToken(TOKEN, int(time.time()) + 3600)


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def servers() -> Iterator[Callable[[Respond], Server]]:
    started: list[Server] = []

    def start(respond: Respond) -> Server:
        started.append(Server(respond))
        return started[-1]

    yield start
    for server in started:
        server.close()


def client(url: str, credential: RecordingCredential | None = None, read_timeout: float = 2.0) -> BatchClient:
    endpoints = {"local": url}
    return BatchClient(
        endpoints, credential or RecordingCredential(), make_pools(endpoints), API_VERSION, (2.0, read_timeout)
    )


def terminate(job: str = "job1", task: str | None = "t1", **options: Any) -> Command:
    action = "terminateTask" if task is not None else "terminateJob"
    return Command(action, job, task, "local", f"transport-{job}-{task}", **options)


def assert_transport_failure(answer: BatchAnswer, kind: str, url: str) -> None:
    assert answer.status is None and answer.error is not None
    assert answer.code == "TransportError"
    assert answer.error.message == f"no answer from Batch: {kind}"
    assert TOKEN not in answer.error.message and url not in answer.error.message


# --------------------------------------------------------------------------- answers


def test_an_answer_is_read_and_the_connection_goes_back_to_the_pool(servers: Callable[[Respond], Server]) -> None:
    body = json.dumps({"id": "job1", "state": "active"}).encode()
    server = servers(answering(200, body, Request_Id="r-1", CLIENT_REQUEST_ID="c-1"))
    credential = RecordingCredential()
    batch = client(server.url, credential)
    first, second = batch.get_job("local", "job1"), batch.get_job("local", "job1")
    assert first.ok and first.body == {"id": "job1", "state": "active"}
    assert (first.request_id, first.client_request_id) == ("r-1", "c-1")
    assert second.ok and server.connections == 1  # keep-alive: the whole body was read
    seen = server.seen[0]
    assert (seen.method, seen.target) == ("GET", f"/jobs/job1?api-version={API_VERSION}")
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["return-client-request-id"] == "true"
    assert seen.headers["ocp-date"].endswith(" GMT")
    assert credential.scopes == [(BATCH_SCOPE,), (BATCH_SCOPE,)]  # the Batch audience, with its double slash


def test_a_post_carries_its_json_body_and_a_bodiless_post_a_zero_length(servers: Callable[[Respond], Server]) -> None:
    server = servers(answering(202))
    batch = client(server.url)
    assert batch.execute(terminate(task=None, reason="superseded", force=True)).status == 202
    assert batch.execute(terminate()).status == 202
    job, task = server.seen
    assert (job.method, job.target) == ("POST", f"/jobs/job1/terminate?force=true&api-version={API_VERSION}")
    assert json.loads(job.body) == {"terminateReason": "superseded"}
    assert job.headers["content-type"] == "application/json; odata=minimalmetadata"
    assert (task.target, task.headers["content-length"], task.body) == (
        f"/jobs/job1/tasks/t1/terminate?api-version={API_VERSION}",
        "0",
        b"",
    )
    assert "content-type" not in task.headers


def test_listing_parameters_are_encoded_as_requests_encoded_them(servers: Callable[[Respond], Server]) -> None:
    server = servers(answering(200, b'{"value": []}'))
    params = {"$filter": "state eq 'completed' and id ge 'a+b/ü'", "$select": "id,state", "maxresults": "1000"}
    assert client(server.url).list_page("local", "/jobs/job1/tasks", params).ok
    sent_before = requests.Request(
        "GET", f"{server.url}/jobs/job1/tasks", params={**params, "api-version": API_VERSION}
    )
    assert server.seen[0].target == sent_before.prepare().path_url


def test_a_compressed_body_is_decoded(servers: Callable[[Respond], Server]) -> None:
    packed = gzip.compress(b'{"state": "completed"}')
    server = servers(answering(200, packed, Content_Encoding="gzip", Content_Type="application/json"))
    answer = client(server.url).get_task("local", "job1", "t1")
    assert answer.body == {"state": "completed"}
    assert "gzip" in server.seen[0].headers["accept-encoding"]


# --------------------------------------------------------------------------- no retries, no redirects


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_answer_and_is_never_followed(servers: Callable[[Respond], Server], status: int) -> None:
    elsewhere = servers(answering(204))
    server = servers(answering(status, b"<html>moved</html>", Location=f"{elsewhere.url}/jobs/job1/tasks/t1/terminate"))
    answer = client(server.url).execute(terminate())
    assert (answer.status, answer.error, answer.ok) == (status, None, False)
    assert len(server.seen) == 1 and elsewhere.seen == []  # the token went nowhere else


@pytest.mark.parametrize(("status", "code"), [(503, "ServerBusy"), (429, "TooManyRequests"), (500, "InternalError")])
def test_a_throttle_or_server_error_is_answered_once_not_retried(
    servers: Callable[[Respond], Server], status: int, code: str
) -> None:
    body = json.dumps({"code": code, "message": {"lang": "en-US", "value": "busy\nRequestId:x"}}).encode()
    server = servers(answering(status, body, Retry_After="1"))
    answer = client(server.url).execute(terminate())
    assert (answer.status, answer.code, answer.retry_after) == (status, code, 1.0)
    assert len(server.seen) == 1


def test_an_untrusted_paging_link_is_refused_before_any_request(servers: Callable[[Respond], Server]) -> None:
    elsewhere = servers(answering(200, b'{"value": []}'))
    page = json.dumps({"value": [{"id": "t1"}], "odata.nextLink": f"{elsewhere.url}/jobs/job1/tasks?$skiptoken=x"})
    server = servers(answering(200, page.encode()))
    batch = client(server.url)
    with pytest.raises(UntrustedLink):
        batch.list_page("local", "/jobs/job1/tasks", {}, next_link=f"{elsewhere.url}/jobs/job1/tasks?$skiptoken=x")
    with pytest.raises(UntrustedLink):
        list(batch.list_values("local", "/jobs/job1/tasks", {}))
    assert len(server.seen) == 1 and elsewhere.seen == []


# --------------------------------------------------------------------------- failures are answers, waits are bounded


def reset(seen: Seen, conn: socket.socket) -> bool:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
    return False


def hang_up(seen: Seen, conn: socket.socket) -> bool:
    return False


def truncated(seen: Seen, conn: socket.socket) -> bool:
    conn.sendall(reply(200, b'{"state": "act', Content_Type="application/json").replace(b"Length: 14", b"Length: 99"))
    return False


def stall_before_answering(seen: Seen, conn: socket.socket) -> bool:
    time.sleep(1.5)
    return False


def stall_mid_body(seen: Seen, conn: socket.socket) -> bool:
    conn.sendall(reply(200, b'{"state": "act').replace(b"Length: 14", b"Length: 99"))
    time.sleep(1.5)
    return False


@pytest.mark.parametrize(
    ("respond", "kind"),
    [
        (reset, "ProtocolError"),
        (hang_up, "ProtocolError"),
        (truncated, "ProtocolError"),
        (stall_before_answering, "ReadTimeoutError"),
        (stall_mid_body, "ReadTimeoutError"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_a_broken_or_stalled_answer_is_a_transport_failure_within_the_read_timeout(
    servers: Callable[[Respond], Server], respond: Respond, kind: str
) -> None:
    server = servers(respond)
    started = time.monotonic()
    answer = client(server.url, read_timeout=0.3).execute(terminate())
    assert time.monotonic() - started < 1.2
    assert_transport_failure(answer, kind, server.url)
    assert answer.client_request_id is not None  # the command's attempts stay findable in Batch's logs
    assert len(server.seen) == 1  # tried once


def test_a_refused_connection_is_a_transport_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    answer = client(url).execute(terminate())
    assert_transport_failure(answer, "NewConnectionError", url)


def test_an_identity_failure_is_an_answer_and_nothing_is_sent(servers: Callable[[Respond], Server]) -> None:
    server = servers(answering(204))
    answer = client(server.url, RecordingCredential(fail=True)).execute(terminate())
    assert answer.status is None and answer.error is not None
    assert answer.error.message == "could not get a token: ClientAuthenticationError"
    assert server.seen == []


# --------------------------------------------------------------------------- threads


def test_the_workers_threads_share_the_pool_without_waiting_for_each_other(
    servers: Callable[[Respond], Server],
) -> None:
    def slow(seen: Seen, conn: socket.socket) -> bool:
        time.sleep(0.4)
        conn.sendall(reply(204))
        return True

    server = servers(slow)
    batch = client(server.url)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: batch.execute(terminate(task=f"t{n}")), range(8)))
    assert [answer.status for answer in answers] == [204] * 8
    assert time.monotonic() - started < 1.5  # 8 x 0.4 s one after another would be 3.2 s
    assert server.connections == 8
