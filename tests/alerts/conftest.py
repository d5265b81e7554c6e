"""Drive function_app's registered ``alerts`` function with a Runtime whose queue is in memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest

from shared.runtime import Runtime, set_runtime
from shared.servicebus import ServiceBusGateway
from tests.retention.memory_queue import MemoryQueue
from tests.support import indexed_functions, product_env

# Batch is never called by the alerts function; the endpoint only has to be a valid setting.
UNUSED_BATCH = "http://127.0.0.1:9"


class MemoryRuntime(Runtime):
    """The product's Runtime from a test env dict, with the in-memory queue in place of Service Bus."""

    def __init__(self, env: Mapping[str, str], queue: MemoryQueue) -> None:
        super().__init__(env)
        self.queue = queue

    def _make_bus(self) -> ServiceBusGateway:
        return self.queue


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class AlertsApp:
    queue: MemoryQueue
    install: Callable[..., None]

    def post(self, payload: Mapping[str, Any] | bytes) -> Answer:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        request = func.HttpRequest(
            method="POST", url="/api/alerts", body=raw, headers={"Content-Type": "application/json"}
        )
        response = indexed_functions()["alerts"].get_user_function()(request)
        assert response.mimetype == "application/json"
        return Answer(response.status_code, json.loads(response.get_body()))


@pytest.fixture
def app() -> Iterator[AlertsApp]:
    queue = MemoryQueue()

    def install(**overrides: str) -> None:
        set_runtime(MemoryRuntime(product_env(UNUSED_BATCH, **overrides), queue))

    install()
    yield AlertsApp(queue, install)
    set_runtime(None)
