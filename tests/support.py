"""Test doubles of the project's own small interfaces, and builders shared by several suites."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from local.functions import functions_of
from shared.messages import Outbound

PEER_CONNECTION_STRING = (
    "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)


def product_env(batch_url: str, **overrides: str) -> dict[str, str]:
    """Settings for the product pointed at a local Batch emulator."""
    env = {
        "BATCH_ACCOUNTS": json.dumps({"local": batch_url}),
        "BATCH_ALLOW_HTTP_LOOPBACK": "true",
        "ServiceBusConnection": PEER_CONNECTION_STRING,
        "AZURE_CLIENT_ID": "lifecycle-test-identity",
        "RETRY_BASE_DELAY_SECONDS": "0.01",
        "RETRY_MAX_DELAY_SECONDS": "1",
        "BATCH_READ_TIMEOUT_SECONDS": "2",
    }
    env.update(overrides)
    return env


@dataclass
class MemoryBus:
    """The processor's Bus, in memory; ``fail_publish``/``fail_schedule`` simulate Service Bus errors."""

    published: list[Outbound] = field(default_factory=list)
    scheduled: list[Outbound] = field(default_factory=list)
    enqueued: list[Outbound] = field(default_factory=list)
    fail_publish: int = 0
    fail_schedule: int = 0
    fail_enqueue: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, message: Outbound) -> None:
        with self._lock:
            if self.fail_publish:
                self.fail_publish -= 1
                raise ConnectionError("topic unavailable")
            self.published.append(message)

    def schedule(self, message: Outbound) -> None:
        with self._lock:
            if self.fail_schedule:
                self.fail_schedule -= 1
                raise ConnectionError("queue unavailable")
            self.scheduled.append(message)

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        batch = list(messages)
        with self._lock:
            if self.fail_enqueue:
                self.fail_enqueue -= 1
                raise ConnectionError("queue unavailable")
            self.enqueued.extend(batch)
        return len(batch)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(message.body) for message in self.published]


@functools.cache
def indexed_functions() -> dict[str, func.Function]:
    """function_app's functions by name, indexed once per process like the worker does."""
    import function_app  # noqa: PLC0415 - imported on first use, as the worker would

    return {str(fn.get_function_name()): fn for fn in functions_of(function_app.app)}
