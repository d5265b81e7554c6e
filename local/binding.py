"""The model binding data of a received Service Bus message, built the way the Functions host builds it.

In Azure the host's Service Bus extension (Microsoft.Azure.WebJobs.Extensions.ServiceBus) receives the
message with the .NET SDK and hands the Python worker a ``ModelBindingData`` (version ``1.0``, source
``AzureServiceBusReceivedMessage``, content type ``application/octet-stream``) whose content is

    16 lock-token bytes (``Guid.ToByteArray``: the delivery tag) + ``GetRawAmqpMessage().ToBytes()``

(``ServiceBusExtensionConfigProvider.ConvertReceivedMessageToBindingData``). The AMQP part is not the wire
message: the .NET SDK first turns it into an ``AmqpAnnotatedMessage`` (``AmqpMessageConverter.
AmqpMessageToSBMessage``), and ``ToBytes`` encodes that again (``AmqpAnnotatedMessageConverter.
ToAmqpMessage``). Both steps change what the Python side sees; :func:`binding_content` repeats them:

* message-id and correlation-id become strings (``MessageId.ToString()``: a ulong in decimal, a uuid as
  ``xxxxxxxx-xxxx-...`` in lower case, binary as upper-case hex); ``to`` and ``reply-to`` become strings;
* the header's delivery-count is one more than on the wire (the .NET SDK counts this delivery); with a
  TTL, creation-time and absolute-expiry-time are rewritten to now and now + TTL;
* annotation and application-property keys become strings (symbols for annotations); symbol values
  become strings; a binary application-property or annotation value cannot be written back
  (``SerializationException``), nor can a list, a map or an unknown described type: the invocation then
  fails before the function runs (:class:`BindingConversionError`);
* an AMQP value body that is a map gets string keys; the footer is dropped; data sections stay separate.

The worker then decodes the content with the package's converter (:func:`decode_with_package`, the
installed ``azurefunctions-extensions-bindings-servicebus``) - or, as the package's newer code does, with
``azure.servicebus.ServiceBusReceivedMessage.from_bytes`` (:func:`decode_from_bytes`).

To keep every AMQP type of the wire message (a string and a binary id look the same once pyamqp decoded
them), :func:`install_wire_capture` makes the SDK's pyamqp receiver keep the payload bytes it decoded.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp import receiver as _pyamqp_receiver
from azure.servicebus._pyamqp.message import Message as _PyamqpMessage
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.servicebus import ServiceBusConverter
from azurefunctions.extensions.bindings.servicebus import ServiceBusReceivedMessage as PackageMessage
from proton import Described, char, decimal32, decimal64, decimal128, float32, symbol, timestamp, uint, ulong

from emulators.servicebus.message import (
    AMQP_SEQUENCE,
    AMQP_VALUE,
    APPLICATION_PROPERTIES,
    DATA,
    DELIVERY_ANNOTATIONS,
    HEADER,
    MESSAGE_ANNOTATIONS,
    PROPERTIES,
    MessageFormatError,
    split,
)
from local.amqp_encode import described

VERSION = "1.0"
SOURCE = "AzureServiceBusReceivedMessage"
CONTENT_TYPE = "application/octet-stream"
LOCK_TOKEN_LENGTH = 16
_NET_DESCRIBED = {
    symbol("com.microsoft:uri"),
    symbol("com.microsoft:timespan"),
    symbol("com.microsoft:datetime-offset"),
}
_UINT_MAX = 2**32 - 1


class BindingConversionError(Exception):
    """The Functions host could not turn this message into binding data: the invocation fails."""


@dataclass(frozen=True)
class ModelBindingData:
    """The fields of the worker's ``ModelBindingData`` protobuf message that the package reads."""

    content: bytes
    version: str = VERSION
    source: str = SOURCE
    content_type: str = CONTENT_TYPE


# --- capturing the wire bytes ----------------------------------------------------------------------


class WireMessage(_PyamqpMessage):
    """pyamqp's decoded message plus the payload it was decoded from (``wire``)."""

    wire: bytes = b""


_capture_lock = threading.Lock()


def install_wire_capture() -> None:
    """Make the SDK's (sync, pyamqp) receiver keep each message's payload bytes; idempotent.

    The receiver decodes every transfer with ``receiver.decode_payload``; the wrapper returns the same
    message as a :class:`WireMessage` (a subclass of pyamqp's ``Message``), so the SDK is unaffected.
    """
    with _capture_lock:
        original = vars(_pyamqp_receiver)["decode_payload"]
        if getattr(original, "captures_wire", False):
            return

        def decode_payload(buffer: memoryview) -> _PyamqpMessage:
            message = WireMessage(*original(buffer))
            message.wire = bytes(buffer)
            return message

        decode_payload.captures_wire = True  # type: ignore[attr-defined]
        vars(_pyamqp_receiver)["decode_payload"] = decode_payload


def wire_of(message: ServiceBusReceivedMessage) -> bytes:
    """The payload of a message received after :func:`install_wire_capture`."""
    raw = getattr(message, "_message", None)
    wire = getattr(raw, "wire", b"")
    if not wire:
        raise RuntimeError("the message was received without wire capture (install_wire_capture)")
    return bytes(wire)


def delivery_tag_of(message: ServiceBusReceivedMessage) -> bytes:
    tag = getattr(message, "_delivery_tag", None)
    if tag is None or len(tag) != LOCK_TOKEN_LENGTH:
        raise BindingConversionError("the delivery tag is not a 16-byte lock token (not a peek-lock delivery)")
    return bytes(tag)


# --- the .NET round trip ---------------------------------------------------------------------------


def binding_content(wire: bytes, delivery_tag: bytes, now: Callable[[], float] = time.time) -> bytes:
    """Lock token + the AMQP message as the .NET host encodes it (see the module docstring)."""
    if len(delivery_tag) != LOCK_TOKEN_LENGTH:
        raise BindingConversionError("the lock token must be 16 bytes")
    try:
        decoded = split(wire)
    except MessageFormatError as exc:
        raise BindingConversionError(f"the message is not valid AMQP ({exc})") from exc
    sections = {s.code: s.value for s in reversed(decoded)}  # the first of each kind wins
    bodies = [s for s in decoded if s.code in (DATA, AMQP_SEQUENCE, AMQP_VALUE)]
    header, ttl = _header(sections.get(HEADER))
    parts = [described(HEADER, header)] if header is not None else []
    delivery = {
        symbol(_key_text(k)): _annotation_value(v) for k, v in (sections.get(DELIVERY_ANNOTATIONS) or {}).items()
    }
    if delivery:
        parts.append(described(DELIVERY_ANNOTATIONS, delivery))
    if MESSAGE_ANNOTATIONS in sections:
        parts.append(described(MESSAGE_ANNOTATIONS, _annotations(sections[MESSAGE_ANNOTATIONS] or {})))
    properties = _properties(sections.get(PROPERTIES), ttl, now)
    if properties is not None:
        parts.append(described(PROPERTIES, properties))
    application = _application_properties(sections.get(APPLICATION_PROPERTIES) or {})
    if application:
        parts.append(described(APPLICATION_PROPERTIES, application))
    parts.extend(_body(bodies))
    return bytes(delivery_tag) + b"".join(parts)


def model_binding_data(wire: bytes, delivery_tag: bytes) -> ModelBindingData:
    return ModelBindingData(content=binding_content(wire, delivery_tag))


def _header(fields: Any) -> tuple[list[Any] | None, int | None]:
    if not isinstance(fields, list):
        return None, None
    durable, priority, ttl, first_acquirer, count = (list(fields) + [None] * 5)[:5]
    header = [
        durable,
        priority,
        uint(min(int(ttl), _UINT_MAX)) if ttl is not None else None,
        first_acquirer,
        uint(int(count) + 1) if count is not None else None,  # the .NET SDK counts this delivery
    ]
    if all(value is None for value in header):
        return None, None
    return header, int(ttl) if ttl is not None else None


def _properties(fields: Any, ttl: int | None, now: Callable[[], float]) -> list[Any] | None:
    values = (list(fields) + [None] * 13)[:13] if isinstance(fields, list) else [None] * 13
    (message_id, user_id, to, subject, reply_to, correlation_id, content_type, content_encoding) = values[:8]
    (absolute_expiry, creation, group_id, group_sequence, reply_to_group_id) = values[8:]
    out: list[Any] = [
        _id_text(message_id, "message-id"),
        bytes(user_id) if user_id is not None else None,
        _address(to, "to"),
        subject or None,
        _address(reply_to, "reply-to"),
        _id_text(correlation_id, "correlation-id"),
        symbol(str(content_type)) if content_type else None,
        symbol(str(content_encoding)) if content_encoding else None,
        timestamp(absolute_expiry) if absolute_expiry is not None else None,
        timestamp(creation) if creation is not None else None,
        group_id or None,
        uint(group_sequence) if group_sequence is not None else None,
        reply_to_group_id or None,
    ]
    if ttl is not None:  # AmqpAnnotatedMessageConverter.ToAmqpMessage keeps TTLs over 49 days this way
        created = int(now() * 1000)
        out[9] = timestamp(created)
        out[8] = timestamp(created + ttl)
    return out if any(value is not None for value in out) else None


def _id_text(value: Any, name: str) -> str | None:
    """``MessageId.ToString()`` of Microsoft.Azure.Amqp: only ulong, uuid, binary and string are ids."""
    if value is None:
        return None
    if isinstance(value, ulong):
        return str(int(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, str) and not isinstance(value, symbol | char):
        return value
    raise BindingConversionError(f"the {name} is an AMQP {type(value).__name__}, which the .NET SDK cannot read")


def _address(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    raise BindingConversionError(f"the {name} address is an AMQP {type(value).__name__}")


def _key_text(key: Any) -> str:
    """``MapKey.ToString()``."""
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        return "True" if key else "False"
    if isinstance(key, int) and not isinstance(key, timestamp):
        return str(int(key))
    if isinstance(key, uuid.UUID):
        return str(key)
    if isinstance(key, bytes):
        return "System.ArraySegment`1[System.Byte]"
    raise BindingConversionError(f"a map key of AMQP type {type(key).__name__} has no reproducible .NET text")


def _simple(value: Any) -> bool:
    simple = (bool, int, float, float32, decimal32, decimal64, decimal128, uuid.UUID)
    return isinstance(value, simple) or (isinstance(value, str) and not isinstance(value, symbol))


def _annotation_value(value: Any) -> Any:
    """A delivery annotation: the .NET SDK keeps the raw AMQP object; only simple ones encode again."""
    if value is None or _simple(value):
        return value
    raise BindingConversionError(f"a delivery annotation of AMQP type {type(value).__name__} cannot be written back")


_DROP = object()


def _property_value(value: Any, where: str) -> Any:
    """``TryGetNetObjectFromAmqpObject`` (application-property mapping), then
    ``TryCreateAmqpPropertyValueFromNetProperty``: what an application property or annotation becomes."""
    if value is None or _simple(value):
        return value
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, Described) and isinstance(value.descriptor, symbol):
        return value if value.descriptor in _NET_DESCRIBED else _DROP
    if isinstance(value, bytes):
        raise BindingConversionError(f"{where} has a binary value, which ToBytes() cannot serialize")
    raise BindingConversionError(f"{where} has a value of AMQP type {type(value).__name__}")


def _annotations(annotations: dict[Any, Any]) -> dict[symbol, Any]:
    out: dict[symbol, Any] = {}
    for key, value in annotations.items():
        converted = _property_value(value, f"message annotation {_key_text(key)!r}")
        if converted is not _DROP:
            out[symbol(_key_text(key))] = converted
    return out


def _application_properties(properties: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in properties.items():
        converted = _property_value(value, f"application property {_key_text(key)!r}")
        if converted is not _DROP:
            out[_key_text(key)] = converted
    return out


def _body(sections: list[Any]) -> list[bytes]:
    data = [s.value for s in sections if s.code == DATA]
    if data:
        return [described(DATA, bytes(chunk)) for chunk in data]
    value = next((s.value for s in sections if s.code == AMQP_VALUE), None)
    if value is not None:
        return [described(AMQP_VALUE, _body_value(value))]
    return [described(AMQP_SEQUENCE, s.value) for s in sections if s.code == AMQP_SEQUENCE]


def _body_value(value: Any) -> Any:
    """An AMQP value body (``TryGetNetObjectFromAmqpObject`` with the body mapping, then ``TranslateValueBody``)."""
    if _simple(value) or isinstance(value, bytes | list):
        return value
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, dict):
        return {_key_text(k): v for k, v in value.items()}
    if isinstance(value, Described) and value.descriptor in _NET_DESCRIBED:
        return value
    raise BindingConversionError(f"an AMQP value body of type {type(value).__name__} is not supported by .NET")


# --- decoding on the worker side -------------------------------------------------------------------


def decode_with_package(content: bytes, pytype: Any = None) -> Any:
    """What the worker does: ``ServiceBusConverter.decode`` of a ``model_binding_data`` datum."""
    datum = Datum(value=ModelBindingData(content=content), type="model_binding_data")
    return ServiceBusConverter.decode(datum, trigger_metadata={}, pytype=pytype or PackageMessage)


def decode_from_bytes(content: bytes, pytype: Any = None) -> ServiceBusReceivedMessage:
    """The package's newer decoding: azure-servicebus's ``from_bytes`` of the AMQP part (pyamqp).

    ``pytype`` is accepted (and ignored) so that this can stand in for :func:`decode_with_package`.
    """
    return ServiceBusReceivedMessage.from_bytes(bytes(content[LOCK_TOKEN_LENGTH:]))
