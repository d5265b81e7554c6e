"""Service Bus message shapes the product sends and reads, independent of any SDK.

``Outbound`` is what we send (outcome events, retry copies, new commands). Keeping it plain makes
the processing logic testable with in-memory stand-ins and keeps the real SDK adapter tiny.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol

from shared.telemetry import TraceContext, trace_context_of

ATTEMPT_PROPERTY: Final = "attempt"
# Set by `batch-lifecycle dlq redrive`: the resend is generation n of its command, with ids of its own.
REDRIVE_PROPERTY: Final = "redrive"
_MAX_GENERATION: Final = 999
COMMAND_ID_PROPERTY: Final = "commandId"


class Outbound(NamedTuple):
    body: bytes
    message_id: str
    subject: str
    application_properties: Mapping[str, str | int | bool] = MappingProxyType({})
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


# Longest attempt number read from a message; anything longer is clamped by the processor anyway.
_MAX_ATTEMPT_DIGITS: Final = 6
# A message_id the product may reuse as a commandId and in the ids it derives (Service Bus: <= 128).
USABLE_ID: Final = re.compile(r"[\x21-\x7e]{1,100}")


class Received(NamedTuple):
    """A received command message, every untrusted part read once and defensively.

    This is the one boundary where the body, the ``message_id`` and the application properties of a
    message are read: nothing the sender put there can make processing raise. ``body`` is None when it
    cannot be read (``problems`` says why); ``message_id`` is None unless it is a usable id (a string of
    1-100 printable ASCII characters, so every id derived from it fits Service Bus's 128);
    ``fingerprint`` identifies the message when it has no usable id (stable for the same content).
    """

    body: bytes | None
    message_id: str | None
    attempt: int = 1
    problems: tuple[str, ...] = ()
    fingerprint: str = ""
    generation: int = 0  # 0, or n for the n-th redrive of a dead-lettered command
    trace: TraceContext | None = None  # the sender's W3C trace context (traceparent / Diagnostic-Id)

    @classmethod
    def read(cls, body: object, message_id: object = None, properties: Mapping[Any, Any] | None = None) -> Received:
        problems: list[str] = []
        raw: bytes | None
        try:
            raw = body_bytes(body)
        except Exception as exc:  # a generator that fails, an AMQP value body, ...
            raw = None
            problems.append(str(exc) if isinstance(exc, UnreadableBody) else f"body cannot be read ({_kind(exc)})")
        # Any other message_id (an int, a UUID, 128 characters ...) is not reused: the command then needs
        # a commandId field, and parse_command says so.
        usable = message_id if isinstance(message_id, str) and USABLE_ID.fullmatch(message_id) else None
        texts = read_properties(properties)
        return cls(
            body=raw,
            message_id=usable,
            attempt=read_attempt(texts),
            problems=tuple(problems),
            fingerprint=_fingerprint(raw, body, message_id),
            generation=_generation(texts),
            trace=trace_context_of(texts),
        )


def id_base(command_id: str, dry_run: bool, generation: int) -> str:
    """What every message id derived from one command starts with (docs/design.md, "Outcome events").

    A dry run and each redrive generation get ids of their own, so the topic's and the queue's duplicate
    detection never hide them behind the original run's. At most 100 + 7 + 5 characters.
    """
    base = f"{command_id}#dryRun" if dry_run else command_id
    return f"{base}#r{generation}" if generation else base


def _generation(properties: Mapping[str, str]) -> int:
    text = properties.get(REDRIVE_PROPERTY, "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > len(str(_MAX_GENERATION)):
        return 0
    return int(text)


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def _fingerprint(raw: bytes | None, body: object, message_id: object) -> str:
    digest = hashlib.sha256()
    digest.update(_stable_repr(message_id).encode("utf-8", "backslashreplace"))
    digest.update(b"\n")
    digest.update(raw if raw is not None else _stable_repr(body).encode("utf-8", "backslashreplace"))
    return "invalid:" + digest.hexdigest()[:32]


def _stable_repr(value: object) -> str:
    try:
        return f"{type(value).__name__}:{reprlib.repr(value)}"
    except Exception:  # a hostile __repr__
        return type(value).__name__


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_MAX_ATTEMPT_DIGITS:
        return "9" * (_MAX_ATTEMPT_DIGITS + 1)  # str() of a huge int can raise; any long number clamps alike
    try:
        return str(value)
    except Exception:
        return ""


def read_properties(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """Application properties as text; the Functions SDK binding delivers keys as bytes."""
    try:
        items = list((properties or {}).items())
    except Exception:  # not a mapping after all
        return {}
    return {_text(key): _text(value) for key, value in items}


def read_attempt(properties: Mapping[str, str]) -> int:
    """The attempt number a retry copy carries; 1 for a first delivery or an unreadable value.

    A number too long to read is returned as a large value; the processor clamps it to its range.
    """
    text = properties.get(ATTEMPT_PROPERTY, "1").strip()
    if not text.isascii() or not text.isdigit():
        return 1
    if len(text) > _MAX_ATTEMPT_DIGITS:
        return 10**_MAX_ATTEMPT_DIGITS
    return max(int(text), 1)


def json_body(data: Mapping[str, Any]) -> bytes:
    """Compact JSON; ASCII-escaped so that any text (lone surrogates included) encodes."""
    return json.dumps(data, separators=(",", ":")).encode("ascii")
