"""The stand-ins in child processes, so their CPU is not the client's.

``python -m bench.emulator_process`` starts the Batch emulator and the identity endpoint on free loopback
ports, prints one JSON line with their addresses and serves until its stdin closes (or ``--lifetime``
seconds pass). ``--peer`` starts the Service Bus peer instead.

``RemoteEmulator`` runs that process and seeds through the emulator's admin HTTP API (``/_emulator/``),
which calls the same fast bulk ``seed_tasks`` a Python test would; seeding never goes through a proxy.
With ``servicebus=True`` it also runs the peer in a process of its own, and with ``batch_delay`` /
``servicebus_delay`` one more process with a latency proxy (``bench/latency_proxy.py``) in front of the
emulator and of the peer. Each stand-in has a process, so a GIL of its own: sharing one, each one's
wake-ups waited for the others' work, which added latency that no network has.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
SEED_CHUNK = 1000
DEFAULT_LIFETIME = 900.0  # seconds; a stand-ins process never outlives a benchmark by more than this


def serve(ready: Mapping[str, Any], lifetime: float) -> None:
    """Print the ready line, then return once stdin closes (the parent is done or died) or after ``lifetime``."""
    print(json.dumps(ready), flush=True)
    closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    closed.wait(lifetime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_process")
    parser.add_argument("--peer", action="store_true", help="run the Service Bus peer instead")
    parser.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME, help="exit after this many seconds")
    args = parser.parse_args(argv)
    stoppers: list[Callable[[], None]] = []
    try:
        if args.peer:
            from emulators.servicebus import ServiceBusPeer  # noqa: PLC0415 - only this child needs the peer

            peer = ServiceBusPeer(port=0, db_path=":memory:").start()
            stoppers.append(peer.stop)
            ready = {"servicebus": peer.connection_string, "servicebus_port": peer.port}
        else:
            from emulators.batch import BatchEmulator  # noqa: PLC0415 - only the child needs the servers
            from emulators.identity import IdentityEndpoint  # noqa: PLC0415

            identity = IdentityEndpoint(host="127.0.0.1", port=0).start()
            stoppers.append(identity.stop)
            batch = BatchEmulator(host="127.0.0.1", port=0, jwks_url=identity.jwks_url).start()
            stoppers.append(batch.stop)
            ready = {"batch": batch.url, "identity": identity.token_url, "secret": identity.header_secret}
        serve(ready, args.lifetime)
    finally:
        for stop in reversed(stoppers):
            stop()


def run_delay_seconds(pid: int | str = "self") -> float | None:
    """Time the threads of a process have spent runnable but waiting for a CPU (Linux schedstat).

    The sum over its current threads (``/proc/<pid>/task/*/schedstat``, second field, nanoseconds);
    None where the kernel does not report it.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return total / 1e9


class ChildProcess:
    """``python <arguments>`` that prints one JSON line when ready and serves until its stdin closes."""

    def __init__(self, name: str, *arguments: str) -> None:
        self.name = name
        self._arguments = arguments
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, *self._arguments],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"{' '.join(self._arguments)} exited before it was ready")
        ready: dict[str, Any] = json.loads(line)
        return ready

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def cpu_seconds(self) -> float | None:
        """User + system CPU the process has used so far (Linux ``/proc``; None elsewhere)."""
        if self._process is None:
            return None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # After the command name: state is field 3, utime and stime are fields 14 and 15 (man 5 proc).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run_delay_seconds(self) -> float | None:
        return None if self._process is None else run_delay_seconds(self._process.pid)


class RemoteEmulator:
    """A Batch emulator plus identity endpoint (plus, on request, the Service Bus peer and latency proxies)
    in subprocesses, seeded over the admin API.

    ``ready`` holds the addresses: ``batch``, ``identity``, ``secret``; with the peer ``servicebus`` (its
    connection string); with delays ``batch_proxied`` (a URL) and ``servicebus_proxied`` (a connection
    string) through the proxies.
    """

    def __init__(
        self,
        *,
        servicebus: bool = False,
        batch_delay: float | None = None,
        servicebus_delay: float | None = None,
        lifetime: float = DEFAULT_LIFETIME,
    ) -> None:
        if servicebus_delay is not None and not servicebus:
            raise ValueError("a Service Bus delay needs the peer (servicebus=True)")
        self._servicebus = servicebus
        self._delays = (batch_delay, servicebus_delay)
        self._lifetime = str(lifetime)
        self._children: list[ChildProcess] = []
        self.ready: dict[str, str] = {}
        self.batch_url = ""
        self.identity_url = ""
        self.identity_secret = ""
        self._admin = requests.Session()

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        ready = self._child("batch-emulator", "-m", "bench.emulator_process", "--lifetime", self._lifetime)
        self.batch_url, self.identity_url, self.identity_secret = ready["batch"], ready["identity"], ready["secret"]
        self.ready.update(ready)
        peer_port = 0
        if self._servicebus:
            peer = self._child(
                "servicebus-peer", "-m", "bench.emulator_process", "--peer", "--lifetime", self._lifetime
            )
            self.ready["servicebus"] = peer["servicebus"]
            peer_port = int(peer["servicebus_port"])
        batch_delay, servicebus_delay = self._delays
        forwards: list[tuple[str, int, float]] = []
        if batch_delay is not None:
            forwards.append(("batch_proxied", urlsplit(self.batch_url).port or 80, batch_delay))
        if servicebus_delay is not None:
            forwards.append(("servicebus_proxied", peer_port, servicebus_delay))
        if forwards:
            specs = [f"127.0.0.1:{port}={delay * 1000:g}" for _, port, delay in forwards]
            arguments = [argument for spec in specs for argument in ("--forward", spec)]
            proxies = self._child(
                "latency-proxies", "-m", "bench.latency_proxy", *arguments, "--lifetime", self._lifetime
            )
            for (name, port, _), address in zip(forwards, proxies["proxies"], strict=True):
                if name == "batch_proxied":
                    self.ready[name] = f"http://{address}"
                else:
                    proxied_port = address.rsplit(":", 1)[1]
                    self.ready[name] = self.ready["servicebus"].replace(f":{port};", f":{proxied_port};")

    def _child(self, name: str, *arguments: str) -> dict[str, Any]:
        child = ChildProcess(name, *arguments)
        self._children.append(child)
        return child.start()

    def stop(self) -> None:
        self._admin.close()
        children, self._children = self._children, []
        for child in reversed(children):
            child.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def cpu_seconds(self) -> float | None:
        """CPU all the stand-in processes have used so far (Linux; None elsewhere)."""
        seconds = list(self.cpu_seconds_by_process().values())
        return None if not seconds or None in seconds else sum(s for s in seconds if s is not None)

    def cpu_seconds_by_process(self) -> dict[str, float | None]:
        return {child.name: child.cpu_seconds() for child in self._children}

    def run_delay_seconds(self) -> float | None:
        """Time the stand-in processes have spent waiting for a CPU so far (Linux; None elsewhere)."""
        seconds = [child.run_delay_seconds() for child in self._children]
        return None if not seconds or None in seconds else sum(s for s in seconds if s is not None)

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._admin.post(f"{self.batch_url}/_emulator/{path}", json=body, timeout=60)
        if response.status_code >= 300:
            raise RuntimeError(f"admin {path}: HTTP {response.status_code} {response.text[:200]}")
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        self._post("reset", {})

    def seed_job(self, job_id: str, **fields: Any) -> None:
        self._post("jobs", {"id": job_id, **fields})

    def seed_tasks(self, job_id: str, tasks: Iterable[Mapping[str, Any]]) -> int:
        """Bulk seed (camelCase fields of the admin API), in chunks of SEED_CHUNK."""
        specs = list(tasks)
        count = 0
        for start in range(0, len(specs), SEED_CHUNK):
            count += int(self._post(f"jobs/{job_id}/tasks", {"value": specs[start : start + SEED_CHUNK]})["count"])
        return count

    def request_count(self) -> int:
        response = self._admin.get(f"{self.batch_url}/_emulator/stats", timeout=10)
        return int(response.json()["requestCount"])


if __name__ == "__main__":
    main()
