"""Drive function_app's registered ``alerts`` function with a Runtime whose queue is in memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest

from shared.runtime import set_runtime
from tests.retention.memory_queue import MemoryQueue, MemoryRuntime
from tests.support import indexed_functions, product_env

# Batch is never called by the alerts function; the endpoint only has to be a valid setting.
UNUSED_BATCH = "http://127.0.0.1:9"


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
