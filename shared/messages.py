"""Service Bus message shapes the product sends and reads, independent of any SDK.

``Outbound`` is what we send (outcome events, retry copies, new commands). Keeping it plain makes
the processing logic testable with in-memory stand-ins and keeps the real SDK adapter tiny.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

ATTEMPT_PROPERTY: Final = "attempt"
COMMAND_ID_PROPERTY: Final = "commandId"


@dataclass(frozen=True)
class Outbound:
    body: bytes
    message_id: str
    subject: str
    application_properties: Mapping[str, str | int] = field(default_factory=dict)
    correlation_id: str | None = None
    content_type: str = "application/json"
    scheduled_enqueue_time: datetime | None = None


class Producer(Protocol):
    """Where the command producers (retention, alerts) put commands and their summaries."""

    def enqueue(self, messages: Iterable[Outbound]) -> int: ...

    def publish(self, message: Outbound) -> None: ...


class UnreadableBody(ValueError):
    """The message body is not a data section of bytes (e.g. an AMQP value or sequence)."""


def body_bytes(body: object) -> bytes:
    """Flatten an SDK message body (bytes, str, or an iterable of data sections) to bytes."""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, Iterable):
        sections = list(body)
        if all(isinstance(section, bytes | bytearray | memoryview) for section in sections):
            return b"".join(bytes(section) for section in sections)
    raise UnreadableBody(f"body is a {type(body).__name__}, not UTF-8 JSON text in a data section")


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_properties(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """Application properties as text; the Functions SDK binding delivers keys as bytes."""
    return {_text(key): _text(value) for key, value in (properties or {}).items()}


def read_attempt(properties: Mapping[str, str]) -> int:
    """The attempt number a retry copy carries; 1 for a first delivery or an unreadable value."""
    try:
        attempt = int(properties.get(ATTEMPT_PROPERTY, "1"))
    except ValueError:
        return 1
    return max(attempt, 1)


def json_body(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
