"""Bounded waits against a Service Bus that accepts the connection and then never answers.

The real ``azure-servicebus`` SDK talks to a loopback socket that accepts TCP and stays silent (the
failure the issue reported: the alerts endpoint hung for minutes and everyone queued behind one sender
lock). Each operation must give up within its time limit, concurrent operations must not wait for one
another, and the HTTP caller must get a 503 with a reason. The bounds asserted are generous multiples of
the limit: they prove the wait is bounded, not how fast anything is.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusClient

from shared.deadline import DeadlineExceeded
from shared.messages import Outbound
from shared.runtime import Runtime, set_runtime
from shared.servicebus import ServiceBusGateway
from tests.alerts.samples import metric_alert
from tests.support import indexed_functions, product_env

LIMIT: Final = 0.5
# Generous: a bounded wait ends near LIMIT; an unbounded one would run into pytest's own timeout.
BOUND: Final = LIMIT * 6


class BlackHole:
    """Accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            self._accepted.append(connection)

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._accepted:
            connection.close()
        self._server.close()


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    server = BlackHole()
    yield server
    server.close()


@pytest.fixture
def gateway(hole: BlackHole) -> Iterator[ServiceBusGateway]:
    client = ServiceBusClient.from_connection_string(hole.connection_string, retry_total=0)
    bus = ServiceBusGateway(client, "batch-commands", "batch-outcomes", LIMIT)
    yield bus
    threading.Thread(target=bus.close, daemon=True).start()  # closing a hung client may hang too


def outcome(n: int = 0) -> Outbound:
    return Outbound(body=b"{}", message_id=f"m-{n}", subject="terminateTask")


def timed(call: object) -> float:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"did not finish within 0\.5 s"):
        call()  # type: ignore[operator]
    return time.monotonic() - started


def test_publishing_gives_up_within_its_limit(gateway: ServiceBusGateway) -> None:
    assert timed(lambda: gateway.publish(outcome())) < BOUND


def test_scheduling_and_enqueuing_give_up_within_their_limit(gateway: ServiceBusGateway) -> None:
    assert timed(lambda: gateway.schedule(outcome())) < BOUND
    assert timed(lambda: gateway.enqueue([outcome(n) for n in range(3)])) < BOUND


def test_concurrent_publishes_do_not_queue_behind_a_hung_one(gateway: ServiceBusGateway) -> None:
    """Eight invocations publishing at once all get their answer in about one limit, not eight."""
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(gateway.publish, outcome(n)) for n in range(8)]
        errors = [future.exception(timeout=BOUND * 4) for future in futures]
    assert all(isinstance(error, DeadlineExceeded) for error in errors), errors
    assert time.monotonic() - started < BOUND


def test_the_alerts_endpoint_answers_503_with_a_reason_when_service_bus_hangs(hole: BlackHole) -> None:
    env = product_env("http://127.0.0.1:9", ServiceBusConnection=hole.connection_string, SERVICEBUS_TIMEOUT_SECONDS="1")
    set_runtime(Runtime(env))
    try:
        request = func.HttpRequest(
            method="POST",
            url="/api/alerts",
            body=json.dumps(
                metric_alert({"batchAction": "terminateTask", "batchJobId": "j", "batchTaskId": "t"})
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        started = time.monotonic()
        response = indexed_functions()["alerts"].get_user_function()(request)
        elapsed = time.monotonic() - started
    finally:
        set_runtime(None)
    assert response.status_code == 503
    reason = json.loads(response.get_body())["reason"]
    assert reason == (
        "could not enqueue the commands: Service Bus sending to queue batch-commands did not finish within 1 s; retry"
    )
    assert elapsed < 6
