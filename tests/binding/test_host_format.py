"""The binding data the local host builds: the .NET host's byte layout, and what each decoder reads from it.

Messages are sent with the real SDK to the peer, received with a real receiver, and turned into binding
data by ``local.binding`` exactly as the Functions host does (see its docstring for the sources). Both
decoders then read the same bytes: the installed package (1.0.0b2, uamqp) and azure-servicebus's
``ServiceBusReceivedMessage.from_bytes`` (pyamqp, what newer package versions use).
"""

from __future__ import annotations

import struct
import uuid
from datetime import timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage
from proton import symbol, timestamp, uint

from emulators.servicebus.message import DELIVERY_ANNOTATIONS, HEADER, PROPERTIES, split
from local.amqp_encode import described, encode
from local.binding import (
    BindingConversionError,
    ModelBindingData,
    binding_content,
    decode_from_bytes,
    decode_with_package,
)
from tests.binding.conftest import receive, send

DECODERS = {"package-1.0.0b2": decode_with_package, "from_bytes": decode_from_bytes}


def sections(content: bytes) -> dict[int, Any]:
    return {s.code: s.value for s in split(content[16:])}


# --- the encoder ----------------------------------------------------------------------------------


def test_the_encoder_writes_the_smallest_encodings_as_the_dotnet_host_does() -> None:
    token = uuid.UUID("fc53a15f-dd66-494f-825d-ee1b7c343cfb")
    header = described(HEADER, [None, None, uint(1_209_600_000), None, uint(1)])
    # list8: size 11, count 5; ttl as a full uint (0x70), delivery-count as smalluint (0x52).
    assert header == b"\x00\x53\x70\xc0\x0b\x05\x40\x40\x70" + struct.pack(">I", 1_209_600_000) + b"\x40\x52\x01"
    annotations = described(DELIVERY_ANNOTATIONS, {symbol("x-opt-lock-token"): token})
    assert annotations == b"\x00\x53\x71\xc1\x24\x02\xa3\x10x-opt-lock-token\x98" + token.bytes
    assert encode(12) == b"\x55\x0c"  # smalllong, as x-opt-sequence-number is sent
    assert encode(timestamp(1)) == b"\x83" + struct.pack(">q", 1)
    assert encode("é" * 200)[:1] == b"\xb1"  # 400 bytes of UTF-8: str32
    assert encode([]) == b"\x45"
    assert encode({"k": b"v"}) == b"\xc1\x07\x02\xa1\x01k\xa0\x01v"


def test_encoding_a_received_message_again_keeps_every_value_and_type(client: ServiceBusClient) -> None:
    send(client, "fields", ServiceBusMessage(b"{}", message_id="same", application_properties={"a": 1, "b": "x"}))
    (got,) = receive(client, "fields", 1)
    for section in split(got.wire):
        (again,) = split(described(section.code, section.value))
        assert again.value == section.value
        assert [type(v) for v in _flat(again.value)] == [type(v) for v in _flat(section.value)]
        assert len(again.raw) <= len(section.raw)  # the peer (proton) writes list32/map32


def _flat(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [part for pair in value.items() for item in pair for part in _flat(item)]
    if isinstance(value, list):
        return [part for item in value for part in _flat(item)]
    return [value]


# --- the layout -----------------------------------------------------------------------------------


def test_binding_data_is_the_lock_token_then_the_amqp_message(client: ServiceBusClient) -> None:
    send(client, "fields", ServiceBusMessage(b'{"a": 1}', message_id="layout", content_type="application/json"))
    (got,) = receive(client, "fields", 1)
    content = got.content
    assert content[:16] == got.lock_token.bytes_le == got.tag  # Guid.ToByteArray order: the delivery tag
    parts = sections(content)
    assert list(parts) == [0x70, 0x71, 0x72, 0x73, 0x75]  # header, delivery & message annotations, properties, data
    assert parts[DELIVERY_ANNOTATIONS] == {symbol("x-opt-lock-token"): got.lock_token}
    assert parts[HEADER][4] == got.delivery_count + 1  # the .NET SDK counts the delivery it hands over
    assert parts[PROPERTIES][6] == symbol("application/json")
    data = ModelBindingData(content=content)
    assert (data.version, data.source, data.content_type) == (
        "1.0",
        "AzureServiceBusReceivedMessage",
        "application/octet-stream",
    )


def test_with_a_ttl_creation_and_expiry_times_are_rewritten_as_to_amqp_message_does(client: ServiceBusClient) -> None:
    send(client, "fields", ServiceBusMessage(b"{}", message_id="ttl", time_to_live=timedelta(minutes=5)))
    (got,) = receive(client, "fields", 1)
    parts = sections(binding_content(got.wire, got.tag, now=lambda: 1000.0))
    assert parts[HEADER][2] == 300_000
    assert parts[PROPERTIES][9] == 1_000_000 and parts[PROPERTIES][8] == 1_300_000


# --- what each decoder reads ----------------------------------------------------------------------


ID_CASES = [
    ("text", "order-17", "order-17"),
    ("ulong", 424242, "424242"),  # MessageId.ToString() of a ulong id
    ("uuid", uuid.UUID(int=99), "00000000-0000-0000-0000-000000000063"),  # Guid.ToString()
    ("binary", b"\x01\xab", "01AB"),  # binary ids become upper-case hex
]


@pytest.mark.parametrize("decoder", DECODERS)
def test_ids_of_every_amqp_type_arrive_as_the_strings_the_dotnet_host_makes(
    client: ServiceBusClient, decoder: str
) -> None:
    send(
        client,
        "fields",
        *(ServiceBusMessage(b"{}", message_id=sent, correlation_id=sent) for _, sent, _ in ID_CASES),  # type: ignore[arg-type]
    )
    received = receive(client, "fields", len(ID_CASES))
    decoded = [DECODERS[decoder](got.content) for got in received]
    assert [m.message_id for m in decoded] == [text for _, _, text in ID_CASES]
    assert [m.correlation_id for m in decoded] == [text for _, _, text in ID_CASES]
    assert [m.lock_token for m in decoded] == [got.lock_token for got in received]


@pytest.mark.parametrize("decoder", DECODERS)
def test_application_properties_arrive_with_bytes_keys_and_their_types(client: ServiceBusClient, decoder: str) -> None:
    properties = {"attempt": "3", "count": 7, "ratio": 0.5, "flag": True, "id": uuid.UUID(int=5)}
    send(client, "fields", ServiceBusMessage(b"{}", message_id="props", application_properties=properties))  # type: ignore[arg-type]
    (got,) = receive(client, "fields", 1)
    decoded = DECODERS[decoder](got.content)
    assert decoded.application_properties == {
        b"attempt": b"3",
        b"count": 7,
        b"ratio": 0.5,
        b"flag": True,
        b"id": uuid.UUID(int=5),
    }


@pytest.mark.parametrize("decoder", DECODERS)
def test_body_sections_arrive_as_sent(client: ServiceBusClient, decoder: str) -> None:
    send(
        client,
        "fields",
        AmqpAnnotatedMessage(data_body=[b'{"action": ', b'"terminateJob"}'], properties={"message_id": "two-sections"}),
        AmqpAnnotatedMessage(value_body={"action": "terminateJob"}, properties={"message_id": "value"}),
    )
    two_sections, value_body = receive(client, "fields", 2)
    two = DECODERS[decoder](two_sections.content)
    assert list(two.body) == [b'{"action": ', b'"terminateJob"}']
    value = DECODERS[decoder](value_body.content)
    assert value.body == {b"action": b"terminateJob"}


def test_a_sequence_body_is_read_by_from_bytes_but_not_by_the_package_1_0_0b2(client: ServiceBusClient) -> None:
    send(client, "fields", AmqpAnnotatedMessage(sequence_body=[[1, "a"], [2]], properties={"message_id": "seq"}))
    (got,) = receive(client, "fields", 1)
    content = got.content
    assert list(decode_from_bytes(content).body) == [[1, b"a"], [2]]
    assert decode_with_package(content).body is None  # uamqp's decoder drops amqp-sequence sections


def test_the_package_1_0_0b2_loses_the_header_and_from_bytes_keeps_it(client: ServiceBusClient) -> None:
    send(client, "fields", ServiceBusMessage(b"{}", message_id="header"))
    (got,) = receive(client, "fields", 1)
    content = got.content
    assert decode_from_bytes(content).delivery_count == got.delivery_count + 1
    # 1.0.0b2 decodes only what follows "x-opt-lock-token", so the header (delivery count, TTL) is gone.
    package = decode_with_package(content)
    assert package.delivery_count is None and package.time_to_live is None
    assert package.sequence_number == got.sequence_number and package.locked_until_utc is not None


# --- what the .NET host cannot convert ------------------------------------------------------------


def test_a_binary_application_property_cannot_be_converted() -> None:
    """``AmqpAnnotatedMessageConverter.TryCreateAmqpPropertyValueFromNetProperty`` refuses a byte[] property.

    The Python SDK sends bytes property values as strings, so the message is written by hand, as a Java or
    JavaScript client (or any AMQP 1.0 client) can send it.
    """
    wire = described(PROPERTIES, ["binary-prop"]) + described(0x74, {"raw": b"\x00"}) + described(0x75, b"{}")
    with pytest.raises(BindingConversionError, match="binary value"):
        binding_content(wire, uuid.uuid4().bytes_le)


def test_ids_of_types_the_dotnet_sdk_cannot_read_fail_the_conversion() -> None:
    for message_id in (17, symbol("sym")):  # an AMQP long and a symbol are not message-id types
        with pytest.raises(BindingConversionError, match="message-id"):
            binding_content(described(PROPERTIES, [message_id]) + described(0x75, b"{}"), uuid.uuid4().bytes_le)


def test_symbol_values_become_strings_and_the_footer_is_dropped(client: ServiceBusClient) -> None:
    send(
        client,
        "fields",
        AmqpAnnotatedMessage(
            data_body=b"{}",
            properties={"message_id": "symbols"},
            annotations={"x-custom": symbol("sym")},
            footer={"f": 1},
        ),
    )
    (got,) = receive(client, "fields", 1)
    parts = sections(got.content)
    assert parts[0x72][symbol("x-custom")] == "sym" and not isinstance(parts[0x72][symbol("x-custom")], symbol)
    assert 0x78 not in parts
