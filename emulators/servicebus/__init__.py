"""A local Service Bus AMQP 1.0 peer for the real ``azure-servicebus`` SDK (7.15 or newer).

with ServiceBusPeer() as peer:
    client = ServiceBusClient.from_connection_string(peer.connection_string)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from proton import SSLDomain
from proton.reactor import ApplicationEvent, Container, EventInjector

from .amqp import PeerHandler
from .broker import Broker
from .cbs import SasKey
from .certs import make_certificate
from .config import DEFAULT_CONFIG_PATH, PeerConfig, load_config
from .store import Store

DEFAULT_SAS_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_SAS_KEY = "SAS_KEY_VALUE"
_JOIN_TIMEOUT = 10.0

__all__ = ["DEFAULT_CONFIG_PATH", "DEFAULT_SAS_KEY", "DEFAULT_SAS_KEY_NAME", "ServiceBusPeer"]


class ServiceBusPeer:
    """The peer in a background reactor thread. ``port=0`` picks a free port; ``tls_port`` adds TLS."""

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_port: int | None = None,
        db_path: str = ":memory:",
        sas_key: str = DEFAULT_SAS_KEY,
        sas_key_name: str = DEFAULT_SAS_KEY_NAME,
        cert_dir: Path | None = None,
    ) -> None:
        self.config: PeerConfig = load_config(config)
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.db_path = db_path
        self.sas = SasKey(sas_key_name, sas_key)
        self.cert_dir = cert_dir
        self.certificate: Path | None = None  # the PEM file clients pass as connection_verify
        self.errors: list[str] = []
        self._store: Store | None = None
        self._broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._injector: EventInjector | None = None
        self._sockets: list[Any] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ServiceBusPeer:
        """Open the database, bind the ports and run the reactor; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("peer already started")
        self._store = Store(self.db_path)
        self._broker = Broker(self.config, self._store)
        handler = PeerHandler(self._broker, self.sas, self.errors)
        container = Container(handler)
        try:
            self.port = self._listen(container, handler, self.port, None)
            if self.tls_port is not None:
                cert, key = make_certificate(self.cert_dir)
                self.certificate = cert
                domain = SSLDomain(SSLDomain.MODE_SERVER)
                domain.set_credentials(str(cert), str(key), None)
                self.tls_port = self._listen(container, handler, self.tls_port, domain)
        except Exception:
            self._close_sockets()
            self._store.close()
            raise
        self._injector = EventInjector()
        container.selectable(self._injector)
        self._thread = threading.Thread(target=self._run, args=(container,), name="servicebus-peer", daemon=True)
        self._thread.start()
        return self

    def _listen(self, container: Container, handler: PeerHandler, port: int, domain: SSLDomain | None) -> int:
        acceptor = container.listen(f"{self.host}:{port}", ssl_domain=domain)
        handler.add_acceptor(acceptor)
        sock: socket.socket = cast(Any, acceptor)._selectable._delegate  # proton keeps it private
        self._sockets.append(sock)
        return int(sock.getsockname()[1])

    def _run(self, container: Container) -> None:
        try:
            container.run()
        except Exception as exc:  # the reactor itself failed; tests see it through errors
            self.errors.append(f"reactor stopped: {exc!r}")
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def stop(self) -> None:
        """Close client connections and the listeners, stop the reactor and close the database."""
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent("peer_stop"))
        self._thread.join(_JOIN_TIMEOUT)
        if self._thread.is_alive():
            self.errors.append("reactor did not stop in time")
        self._injector.close()
        self._thread = None
        self._injector = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def restart(self) -> None:
        """Stop and start again on the same ports and database (a file database keeps its messages)."""
        self.stop()
        self.start()

    def __enter__(self) -> ServiceBusPeer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- for clients and tests ---------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        """The emulator-style connection string (plain AMQP on ``port``)."""
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName={self.sas.name};"
            f"SharedAccessKey={self.sas.key};UseDevelopmentEmulator=true"
        )

    def messages(self, entity: str, state: str | None = None) -> list[dict[str, Any]]:
        """Stored messages of ``entity`` (e.g. ``q``, ``q/$DeadLetterQueue``, ``t/Subscriptions/s``)."""
        if self._broker is None or self._store is None:
            raise RuntimeError("peer is not running")
        return self._broker.inspect(entity, state)
