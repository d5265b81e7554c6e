"""The production code path: ``ServiceBusClient(namespace, TokenCredential)`` over TLS on port 5671."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthenticationError

from emulators.servicebus import ServiceBusPeer

from .conftest import TEST_CONFIG

pytestmark = pytest.mark.slow

TLS_PORT = 5671  # the SDK always connects to 5671 when TLS is on


class JwtCredential:
    """A TokenCredential that issues unsigned-by-Entra JWTs for a fixed audience and records the scopes."""

    def __init__(self, audience: str) -> None:
        self.audience = audience
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        expires = int(time.time()) + 3600
        claims = {"aud": self.audience, "exp": expires, "iss": "https://sts.local/", "sub": "test-identity"}
        return AccessToken(jwt.encode(claims, "local-test-signing-key-of-32-bytes!", algorithm="HS256"), expires)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def tls_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceBusPeer]:
    if not _port_free(TLS_PORT):
        pytest.skip(f"port {TLS_PORT} is taken on 127.0.0.1; the SDK's TLS path cannot use another port")
    cert_dir: Path = tmp_path_factory.mktemp("tls")
    with ServiceBusPeer(TEST_CONFIG, tls_port=TLS_PORT, cert_dir=cert_dir) as running:
        yield running
    assert running.errors == []


def test_token_credential_over_tls(tls_peer: ServiceBusPeer) -> None:
    assert tls_peer.certificate is not None and tls_peer.tls_port == TLS_PORT
    credential = JwtCredential("https://servicebus.azure.net/")
    with ServiceBusClient("localhost", credential, connection_verify=str(tls_peer.certificate)) as client:
        with client.get_queue_sender("tls") as sender:
            sender.send_messages(ServiceBusMessage("over tls", message_id="tls-1"))
        with client.get_queue_receiver("tls", max_wait_time=5) as receiver:
            (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert (received.message_id, str(received)) == ("tls-1", "over tls")
            receiver.complete_message(received)
    assert ("https://servicebus.azure.net//.default",) in credential.scopes
    assert tls_peer.messages("tls") == []


def test_audience_without_trailing_slash_is_accepted(tls_peer: ServiceBusPeer) -> None:
    credential = JwtCredential("https://servicebus.azure.net")
    with (
        ServiceBusClient("127.0.0.1", credential, connection_verify=str(tls_peer.certificate)) as client,
        client.get_queue_sender("tls") as sender,
    ):
        sender.send_messages(ServiceBusMessage("ok", message_id="tls-2"))
    assert [m["message_id"] for m in tls_peer.messages("tls")] == ["tls-2"]
    with (
        ServiceBusClient.from_connection_string(tls_peer.connection_string) as plain,  # plain port alongside
        plain.get_queue_receiver("tls", max_wait_time=5) as receiver,
    ):
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(received)


def test_wrong_token_audience_is_refused(tls_peer: ServiceBusPeer) -> None:
    credential = JwtCredential("https://storage.azure.com/")
    with (
        ServiceBusClient("localhost", credential, connection_verify=str(tls_peer.certificate), retry_total=0) as client,
        pytest.raises(ServiceBusAuthenticationError),
        client.get_queue_sender("tls") as sender,
    ):
        sender.send_messages(ServiceBusMessage("refused"))
    assert tls_peer.messages("tls") == []
