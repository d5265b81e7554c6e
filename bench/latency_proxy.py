"""A loopback TCP proxy that adds a fixed delay to each direction, for benchmarks under network latency.

    python -m bench.latency_proxy --forward 127.0.0.1:5672=5 [--forward 8091=20/20 ...] [--lifetime 300]

``LatencyProxy`` listens on 127.0.0.1 and forwards every connection to a loopback target. Bytes read
from one side are written to the other side ``delay`` seconds after they were read, so a request/response
round trip through the proxy takes ``delay_out + delay_back`` longer than without it, whatever the
protocol (AMQP to the Service Bus peer, HTTP to the Batch emulator).

* Ordering: each direction of each connection is one FIFO of (due time, bytes) with one timer, armed for
  the head only; bytes leave in the order they arrived, each at its own due time (arrival + delay).
  A half-close (EOF) is forwarded the same way, after the bytes before it.
* No serialisation: connections and directions are independent (asyncio protocols on one event loop;
  nothing blocks); bytes waiting out their delay hold nothing that another connection needs, and are
  never held longer than their own delay. Bytes due at the same moment leave in one write.
* Bounded: the proxy runs on a daemon thread and stops by itself after ``lifetime`` seconds, or when
  ``stop()`` is called, or when the process that runs it exits. A direction holding more than
  ``MAX_PENDING_BYTES`` (or whose receiver is slow to read) stops reading from its sender meanwhile.
* Loopback only: it binds 127.0.0.1 and refuses a target that is not a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

LISTEN_HOST: Final = "127.0.0.1"
MAX_PENDING_BYTES: Final = 4 * 1024 * 1024  # per direction of one connection
DEFAULT_LIFETIME: Final = 600.0
_EOF: Final = b""


def _loopback(host: str) -> str:
    """The address to connect to, or ValueError when ``host`` is not loopback."""
    address = "127.0.0.1" if host == "localhost" else host
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"the latency proxy forwards to loopback addresses only, not {host}")
    return address


@dataclass
class ProxyStats:
    connections: int = 0
    writes_out: int = 0  # client -> target
    writes_back: int = 0  # target -> client
    bytes_out: int = 0
    bytes_back: int = 0


class _Pipe:
    """One direction of one connection: a FIFO of (due, bytes) drained by one timer, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, stats: ProxyStats, outbound: bool) -> None:
        self._loop = loop
        self._delay = delay
        self._stats = stats
        self._outbound = outbound
        self._chunks: deque[tuple[float, bytes]] = deque()
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self.source: asyncio.Transport | None = None  # where the bytes are read
        self.sink: asyncio.Transport | None = None  # where they are written, once connected
        self.done = False  # EOF delivered, or the sink is gone
        self._eof_fed = False
        self._paused = False

    def feed(self, data: bytes) -> None:
        """Bytes just read (``_EOF`` for end of stream); they leave after the delay."""
        if self.done or self._eof_fed:
            return
        self._eof_fed = data == _EOF
        self._chunks.append((self._loop.time() + self._delay, data))
        self._pending += len(data)
        if self._pending > MAX_PENDING_BYTES:
            self.pause_source()
        if self._timer is None:
            self._arm()

    def connect(self, sink: asyncio.Transport) -> None:
        self.sink = sink
        if self._timer is None:
            self._arm()

    def pause_source(self) -> None:
        if self.source is not None and not self._paused:
            self._paused = True
            with contextlib.suppress(RuntimeError):  # the source is closing
                self.source.pause_reading()

    def resume_source(self) -> None:
        if self.source is not None and self._paused and self._pending <= MAX_PENDING_BYTES:
            self._paused = False
            with contextlib.suppress(RuntimeError):
                self.source.resume_reading()

    def _arm(self) -> None:
        if self.sink is not None and self._chunks:
            self._timer = self._loop.call_at(self._chunks[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        sink = self.sink
        if sink is None or self.done:
            return
        now = self._loop.time() + 1e-6  # the loop runs a timer within its clock resolution of due
        out: list[bytes] = []
        eof = False
        while self._chunks and self._chunks[0][0] <= now:
            data = self._chunks.popleft()[1]
            if data == _EOF:
                eof = True
                break
            out.append(data)
        if out:
            payload = b"".join(out) if len(out) > 1 else out[0]
            self._pending -= len(payload)
            sink.write(payload)
            if self._outbound:
                self._stats.writes_out += 1
                self._stats.bytes_out += len(payload)
            else:
                self._stats.writes_back += 1
                self._stats.bytes_back += len(payload)
            if not self._chunks or self._pending <= MAX_PENDING_BYTES // 2:
                self.resume_source()
        if eof:
            if sink.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    sink.write_eof()
            self.finish()
            return
        self._arm()

    def finish(self) -> None:
        """Nothing more goes this way (EOF delivered, or the sink went away)."""
        if self.done:
            return
        self.done = True
        self._chunks.clear()
        self._pending = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Connection:
    """A client connection and its connection to the target, joined by two pipes."""

    def __init__(self, proxy: LatencyProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.out = _Pipe(loop, proxy.delay_out, proxy.stats, outbound=True)
        self.back = _Pipe(loop, proxy.delay_back, proxy.stats, outbound=False)
        self.transports: list[asyncio.Transport] = []

    def settle(self) -> None:
        """Close both sides once neither direction has anything left to deliver."""
        if self.out.done and self.back.done:
            self.abort()

    def abort(self) -> None:
        self.out.finish()
        self.back.finish()
        for transport in self.transports:
            transport.close()
        self.proxy._connections.discard(self)


class _Side(asyncio.Protocol):
    """One socket of a connection: what it reads feeds ``inbound``; ``outbound`` writes to it."""

    def __init__(self, connection: _Connection, inbound: _Pipe, outbound: _Pipe) -> None:
        self.connection = connection
        self.inbound = inbound
        self.outbound = outbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.transports.append(transport)
        self.inbound.source = transport
        self.outbound.connect(transport)

    def data_received(self, data: bytes) -> None:
        self.inbound.feed(data)

    def eof_received(self) -> bool:
        self.inbound.feed(_EOF)
        self._check()
        return True  # keep the other direction open (half-close), as TCP does

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbound.feed(_EOF)  # what was read still goes through, then EOF
        self.outbound.finish()  # nothing can be written to this side any more
        self._check()

    def pause_writing(self) -> None:  # this side's receiver is slow: stop reading what feeds it
        self.outbound.pause_source()

    def resume_writing(self) -> None:
        self.outbound.resume_source()

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        # After the pipes had a chance to deliver what is due, close what is finished.
        loop.call_soon(self.connection.settle)


class _ClientSide(_Side):
    def __init__(self, proxy: LatencyProxy, loop: asyncio.AbstractEventLoop) -> None:
        connection = _Connection(proxy, loop)
        super().__init__(connection, connection.out, connection.back)
        self._loop = loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        proxy = self.connection.proxy
        proxy.stats.connections += 1
        proxy._connections.add(self.connection)
        task = self._loop.create_task(self._connect_target())
        proxy._tasks.add(task)
        task.add_done_callback(proxy._tasks.discard)

    async def _connect_target(self) -> None:
        proxy = self.connection.proxy
        try:
            await self._loop.create_connection(
                lambda: _Side(self.connection, self.connection.back, self.connection.out),
                proxy.target_host,
                proxy.target_port,
            )
        except OSError:
            self.connection.abort()  # the client sees the connection close, as with a refused port


class LatencyProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` with ``delay`` seconds each way.

    ``return_delay`` (target -> client) defaults to ``delay``. ``port=0`` picks a free port; after
    ``start()`` it holds the bound one.
    """

    def __init__(
        self,
        target_port: int,
        delay: float,
        *,
        return_delay: float | None = None,
        target_host: str = "127.0.0.1",
        port: int = 0,
        lifetime: float = DEFAULT_LIFETIME,
        name: str = "latency-proxy",
    ) -> None:
        if delay < 0 or (return_delay is not None and return_delay < 0):
            raise ValueError("delays cannot be negative")
        self.target_host = _loopback(target_host)
        self.target_port = target_port
        self.delay_out = delay
        self.delay_back = delay if return_delay is None else return_delay
        self.port = port
        self.lifetime = lifetime
        self.name = name
        self.stats = ProxyStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{LISTEN_HOST}:{self.port}"

    # --- lifecycle (any thread) -------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"{self.name} did not start") from self._error
        if not self._ready.is_set():
            raise RuntimeError(f"{self.name} did not start within 10 s")
        return self

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished (lifetime reached)
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(10)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- the loop thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); after it, the proxy just ends
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await loop.create_server(lambda: _ClientSide(self, loop), LISTEN_HOST, self.port)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.lifetime)
        server.close()
        for connection in list(self._connections):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()


def _forward(spec: str) -> tuple[str, int, float, float | None]:
    """``[HOST:]PORT=OUT_MS[/BACK_MS]`` -> (host, port, out delay, back delay) in seconds."""
    target, _, delays = spec.partition("=")
    host, _, port = target.rpartition(":")
    out, _, back = delays.partition("/")
    return host or LISTEN_HOST, int(port), float(out) / 1000, float(back) / 1000 if back else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--forward",
        action="append",
        required=True,
        metavar="[HOST:]PORT=OUT_MS[/BACK_MS]",
        help="a proxy to this loopback port with these delays (back defaults to out); repeatable",
    )
    parser.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME, help="stop after this many seconds")
    args = parser.parse_args(argv)
    from bench.emulator_process import serve  # noqa: PLC0415 - the stand-ins' ready-line protocol

    proxies = []
    try:
        for host, port, out, back in map(_forward, args.forward):
            proxy = LatencyProxy(port, out, return_delay=back, target_host=host, lifetime=args.lifetime)
            proxies.append(proxy.start())
        # One JSON line with the listening addresses, in --forward order; serve until stdin closes
        # (Ctrl-D), Ctrl-C, or the lifetime is over.
        with contextlib.suppress(KeyboardInterrupt):
            serve({"proxies": [proxy.address for proxy in proxies]}, args.lifetime)
    finally:
        for proxy in proxies:
            proxy.stop()


if __name__ == "__main__":
    main()
