"""Encoded AMQP messages: split into sections, read the fields the broker needs, re-stamp for delivery.

The broker keeps each message as the bytes the client sent and only rewrites the sections it owns
(header, message annotations, and the dead-letter application properties). proton's ``Message`` class
is not used for this because it drops ``delivery-count`` when it is 0 and always adds an empty header.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from proton import Array, Data, Described, symbol, timestamp, uint, ulong

from .sqlfilter import FilterView

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = range(0x70, 0x75)
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = range(0x75, 0x79)
_BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)
# Positions in the properties list (AMQP 1.0 §3.2.4) and the filter name of each system property.
_SYSTEM_FIELDS = {
    0: "messageid",
    2: "to",
    3: "label",
    4: "replyto",
    5: "correlationid",
    6: "contenttype",
    10: "sessionid",
    12: "replytosessionid",
}
SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")


class MessageFormatError(ValueError):
    """The payload is not a valid encoded AMQP message."""


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes
    value: Any


def plain(value: Any) -> Any:
    """proton values to plain Python, recursively: binary to bytes (proton's memoryviews point into memory
    that is freed with the ``Data`` object) and arrays to lists."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Array):
        return [plain(v) for v in value.elements]
    if isinstance(value, Described):
        return Described(value.descriptor, plain(value.value))
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _decode_one(view: memoryview) -> tuple[int, Any]:
    data = Data()
    used = data.decode(cast(bytes, view))
    data.rewind()
    data.next()
    return used, plain(data.get_object())  # copy binary out while ``data`` is alive


def _looks_like_message(payload: bytes) -> bool:
    """Cheap pre-check: a described section code (smallulong 0x70-0x78) at the start."""
    return len(payload) > 3 and payload[:2] == b"\x00\x53" and HEADER <= payload[2] <= FOOTER


def split(payload: bytes) -> list[Section]:
    """The message's sections in order; raises MessageFormatError on anything else."""
    sections: list[Section] = []
    view = memoryview(payload)
    pos = 0
    while pos < len(payload):
        try:
            used, obj = _decode_one(view[pos:])
        except Exception as exc:  # proton raises DataException, ValueError, ... on arbitrary bytes
            raise MessageFormatError(f"undecodable section at byte {pos}") from exc
        if not isinstance(obj, Described) or not isinstance(obj.descriptor, int):
            raise MessageFormatError(f"section at byte {pos} is not a described type")
        code = int(obj.descriptor)
        if not HEADER <= code <= FOOTER:
            raise MessageFormatError(f"unknown section code {code:#x}")
        sections.append(Section(code, bytes(view[pos : pos + used]), obj.value))
        pos += used
    if not sections:
        raise MessageFormatError("empty message")
    return sections


def unbatch(payload: bytes) -> list[bytes]:
    """The messages of a ``ServiceBusMessageBatch`` transfer, or ``[payload]`` for a single message.

    proton does not expose the transfer's message-format, so a batch is recognised by its shape: an
    envelope (at most a header, annotations and properties copied from the first message) whose body is
    data sections that each hold a complete encoded message.
    """
    sections = split(payload)
    inner = [s.value for s in sections if s.code == DATA]
    envelope = (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, DATA)
    if not inner or any(s.code not in envelope for s in sections):
        return [payload]
    if not all(isinstance(item, bytes) and _looks_like_message(item) for item in inner):
        return [payload]
    try:
        for item in inner:
            split(item)
    except MessageFormatError:
        return [payload]
    return inner


def _encode(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def _find(sections: list[Section], code: int) -> Any:
    return next((s.value for s in sections if s.code == code), None)


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    return value.hex() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ParsedMessage:
    payload: bytes  # as sent, minus delivery annotations (those are per hop)
    message_id: str | None
    ttl: float | None  # seconds, from the header
    scheduled_at: float | None  # epoch seconds
    view: FilterView


def parse(payload: bytes) -> ParsedMessage:
    sections = split(payload)
    header = _find(sections, HEADER) or []
    properties = _find(sections, PROPERTIES) or []
    annotations = _find(sections, MESSAGE_ANNOTATIONS) or {}
    ttl_ms = header[2] if len(header) > 2 else None
    scheduled = annotations.get(SCHEDULED_ENQUEUE_TIME)
    system = {name: properties[i] for i, name in _SYSTEM_FIELDS.items() if i < len(properties)}
    system["messageid"] = _to_text(system.get("messageid"))
    kept = b"".join(s.raw for s in sections if s.code != DELIVERY_ANNOTATIONS)
    return ParsedMessage(
        payload=kept,
        message_id=system["messageid"],
        ttl=ttl_ms / 1000.0 if ttl_ms else None,
        scheduled_at=int(scheduled) / 1000.0 if scheduled else None,
        view=FilterView(system, _find(sections, APPLICATION_PROPERTIES) or {}),
    )


def with_application_properties(payload: bytes, extra: Mapping[str, str]) -> bytes:
    """The message with ``extra`` merged into its application properties (used for dead-letter details)."""
    sections = split(payload)
    props = dict(_find(sections, APPLICATION_PROPERTIES) or {})
    props.update(extra)
    new = Section(APPLICATION_PROPERTIES, _encode(APPLICATION_PROPERTIES, props), props)
    kept = [s for s in sections if s.code != APPLICATION_PROPERTIES]
    at = next((i for i, s in enumerate(kept) if s.code in (*_BODY, FOOTER)), len(kept))
    kept.insert(at, new)
    return b"".join(s.raw for s in kept)


@dataclass(frozen=True)
class Stamp:
    """What the broker tells the receiver about a message (the ``x-opt-*`` annotations and the header)."""

    sequence_number: int
    enqueued_at: float
    delivery_count: int
    state: int  # 0 active, 1 deferred, 2 scheduled
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None


def _header(original: list[Any], delivery_count: int) -> list[Any]:
    fields = (list(original) + [None] * 5)[:5]
    fields[3] = delivery_count == 0  # first-acquirer
    fields[4] = uint(delivery_count)
    return fields


def stamp(payload: bytes, info: Stamp) -> bytes:
    """The stored message as delivered: a header with delivery-count and the broker's annotations."""
    sections = split(payload)
    annotations: dict[Any, Any] = dict(_find(sections, MESSAGE_ANNOTATIONS) or {})
    annotations[symbol("x-opt-sequence-number")] = info.sequence_number
    annotations[symbol("x-opt-enqueued-time")] = timestamp(int(info.enqueued_at * 1000))
    annotations[symbol("x-opt-message-state")] = info.state
    parts = [_encode(HEADER, _header(_find(sections, HEADER) or [], info.delivery_count))]
    if info.lock_token is not None and info.locked_until is not None:
        # As the service does: the lock token is the delivery tag and the only delivery annotation (the
        # Functions host passes it on, and the Python binding reads it there); locked-until is a message
        # annotation. See docs/servicebus-peer.md, "Lock tokens".
        parts.append(_encode(DELIVERY_ANNOTATIONS, {symbol("x-opt-lock-token"): info.lock_token}))
        annotations[symbol("x-opt-locked-until")] = timestamp(int(info.locked_until * 1000))
    parts.append(_encode(MESSAGE_ANNOTATIONS, annotations))
    skip = (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS)
    parts.extend(s.raw for s in sections if s.code not in skip)
    return b"".join(parts)


def body_and_properties(payload: bytes) -> tuple[bytes | Any, dict[str, Any]]:
    """For inspection: the body (data sections joined, else the AMQP value) and application properties."""
    sections = split(payload)
    data = [s.value for s in sections if s.code == DATA]
    body = b"".join(data) if data else _find(sections, AMQP_VALUE)
    if isinstance(body, str):
        body = body.encode("utf-8")
    return body, dict(_find(sections, APPLICATION_PROPERTIES) or {})
