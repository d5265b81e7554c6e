"""Shared plumbing for the local HTTP stand-ins: a threaded keep-alive server run in the background."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class KeepAliveServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server that remembers open connections so `stop()` can cut them."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, addr = self.socket.accept()
        # Responses go out in one write, but Nagle would still delay them behind the client's ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            self._connections.add(conn)
        return conn, addr

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        # A client that hangs up mid-answer (timeouts, dropped-connection faults) is routine here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):  # the peer may have gone already
                conn.shutdown(socket.SHUT_RDWR)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that writes each response with a single socket write."""

    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections must not pin a thread forever.
    timeout = 60

    def log_message(self, format: str, *args: object) -> None:
        """Per-request logging would dominate the cost of a request."""

    def read_body(self) -> bytes:
        raw_length = self.headers.get("Content-Length") or "0"
        if not raw_length.isdigit() or self.headers.get("Transfer-Encoding"):
            # Without a usable length the next request on this connection cannot be found: close it.
            self.close_connection = True
            return b""
        length = int(raw_length)
        return self.rfile.read(length) if length else b""

    def send_whole(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {self.date_time_string()}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        bodiless = status in (204, 304)  # HTTP forbids a body, and a Content-Length, on these
        if not bodiless:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if bodiless else head + body)

    def drop_connection(self) -> None:
        """Close the socket without answering, like a network failure mid-request."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class BackgroundHttpServer:
    """Owns a `KeepAliveServer` on a daemon thread; usable as a context manager."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: KeepAliveServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler bound to this instance; subclasses build it."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = KeepAliveServer((self.host, self.port), self.handler_class())
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_until_interrupted(server: BackgroundHttpServer, ready_message: Callable[[], str]) -> None:
    """CLI helper: start, print the ready line (scripts wait for it), serve until Ctrl-C."""
    server.start()
    print(ready_message(), flush=True)
    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
