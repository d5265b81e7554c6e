"""What the real service refuses, the peer refuses, with errors the SDK maps to its documented exceptions."""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusError,
)

from emulators.servicebus import ServiceBusPeer

pytestmark = pytest.mark.slow


def test_unknown_entity_is_not_found(peer: ServiceBusPeer) -> None:
    with ServiceBusClient.from_connection_string(peer.connection_string, retry_total=0) as client:
        with pytest.raises(MessagingEntityNotFoundError), client.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage("lost"))
        with (
            pytest.raises(MessagingEntityNotFoundError),
            client.get_queue_receiver("no-such-queue", max_wait_time=1) as receiver,
        ):
            receiver.receive_messages(max_message_count=1, max_wait_time=1)
        with (
            pytest.raises(MessagingEntityNotFoundError),
            client.get_subscription_receiver("events", "no-such-subscription", max_wait_time=1) as receiver,
        ):
            receiver.receive_messages(max_message_count=1, max_wait_time=1)


def test_wrong_sas_key_is_refused(peer: ServiceBusPeer) -> None:
    wrong = peer.connection_string.replace("SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=not-the-key")
    wrong_name = peer.connection_string.replace("RootManageSharedAccessKey", "SomeOtherKey")
    for connection_string in (wrong, wrong_name):
        with (
            ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client,
            pytest.raises(ServiceBusAuthenticationError),
            client.get_queue_sender("settle") as sender,
        ):
            sender.send_messages(ServiceBusMessage("refused"))
    assert peer.messages("settle") == []


def test_configured_sas_key_is_the_one_accepted() -> None:
    with ServiceBusPeer(sas_key="custom-key") as custom:
        assert "SharedAccessKey=custom-key;" in custom.connection_string
        with (
            ServiceBusClient.from_connection_string(custom.connection_string) as client,
            client.get_queue_sender("batch-commands") as sender,
        ):
            sender.send_messages(ServiceBusMessage("accepted", message_id="k-1"))
        assert [m["message_id"] for m in custom.messages("batch-commands")] == ["k-1"]
        assert custom.errors == []


def test_session_receivers_are_refused_not_ignored(client: ServiceBusClient) -> None:
    with (
        pytest.raises(ServiceBusError, match="Sessions are not supported"),
        client.get_queue_receiver("settle", session_id="session-1", max_wait_time=1) as receiver,
    ):
        receiver.receive_messages(max_message_count=1, max_wait_time=1)
