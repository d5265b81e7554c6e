"""The peer places the lock token where Service Bus does: the delivery tag and a delivery annotation.

A message received in peek-lock mode from Service Bus carries its lock token twice: as the transfer's
delivery tag (16 bytes, ``Guid.ToByteArray`` order, which the SDKs read) and as ``x-opt-lock-token`` (an
AMQP uuid) in the delivery annotations, which the Functions host passes on and the Python binding reads.
``x-opt-locked-until``, ``x-opt-sequence-number`` and ``x-opt-enqueued-time`` are message annotations.
"""

from __future__ import annotations

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from proton import symbol

from emulators.servicebus.message import DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, split
from local.binding import wire_of
from tests.binding.conftest import receive, send


def test_the_lock_token_is_the_delivery_tag_and_the_only_delivery_annotation(client: ServiceBusClient) -> None:
    send(client, "peer-tokens", ServiceBusMessage(b"{}", message_id="token"))
    (got,) = receive(client, "peer-tokens", 1)
    sections = {s.code: s.value for s in split(got.wire)}
    assert got.tag == got.lock_token.bytes_le
    assert sections[DELIVERY_ANNOTATIONS] == {symbol("x-opt-lock-token"): got.lock_token}
    annotations = sections[MESSAGE_ANNOTATIONS]
    assert symbol("x-opt-lock-token") not in annotations
    assert {symbol("x-opt-locked-until"), symbol("x-opt-sequence-number"), symbol("x-opt-enqueued-time")} <= set(
        annotations
    )


def test_a_message_received_without_a_lock_has_no_lock_token_annotation(client: ServiceBusClient) -> None:
    send(client, "peer-tokens", ServiceBusMessage(b"{}", message_id="no-lock"))
    with client.get_queue_receiver("peer-tokens", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        (message,) = receiver.receive_messages(max_wait_time=5)
    sections = {s.code: s.value for s in split(wire_of(message))}
    assert DELIVERY_ANNOTATIONS not in sections
    assert symbol("x-opt-locked-until") not in sections[MESSAGE_ANNOTATIONS]


def test_the_sdk_reads_the_same_lock_token_from_the_tag_and_from_the_annotation(client: ServiceBusClient) -> None:
    send(client, "peer-tokens", ServiceBusMessage(b"{}", message_id="both"))
    (got,) = receive(client, "peer-tokens", 1)
    assert got.message.raw_amqp_message.delivery_annotations == {b"x-opt-lock-token": got.lock_token}
