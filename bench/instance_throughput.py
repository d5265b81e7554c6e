"""Benchmark 5: one instance's command throughput under real network latency (GitHub issue #13).

The stand-ins - Batch emulator with identity endpoint, Service Bus peer, and the latency proxies
(``bench/latency_proxy.py``) in front of the peer (5 ms each way) and of the emulator (20 ms each way) -
run in child processes, one each (``bench/emulator_process.RemoteEmulator``). The worker runs in this
process, so its CPU per command (``time.process_time``) excludes the stand-ins':

* ``HostStandIn`` stands in for the Functions host's Service Bus trigger with ``maxConcurrentCalls`` N
  and ``prefetchCount`` 0 (host.json): N invocation slots, each a real SDK peek-lock receiver that
  receives one message at a time, calls function_app's ``process_command`` on the slot's thread with a
  ``ServiceBusMessageActions``-shaped object, and that object settles on the slot's receiver (the
  function's own ``settle``, with its time limit). Everything behind the function is the product
  (``shared.runtime.Runtime``: the pooled Batch client, the Service Bus gateway's sender pool).
* ``local.queue_driver.QueueDriver`` (what ``make run`` uses) is measured once the same way, for
  comparison; see docs/benchmarks.md for what limits it.

Each repetition interleaves a latency probe and a loaded run (which goes first alternates):

* probe, one operation at a time through the proxies, with the product's clients: receive one message
  (a receiver with ``prefetch_count=0``), the Batch call (``BatchClient.execute`` terminateTask),
  publish an outcome (``ServiceBusGateway.publish``), settle (``shared.settlement.settle``, as the
  function settles: ``complete_message`` under its time limit); medians of each.
  Per-command latency L = receive + Batch call + publish + settle: the operations one invocation slot
  waits for in turn. The ideal bound is concurrency / L commands per second.
* loaded run: ``commands`` terminateTask commands for running tasks are queued first (directly to the
  peer, not through the proxy), then the slots are released; the clock stops at the last settlement.

``ratio_to_bound`` is each repetition's commands/s over that repetition's bound, then the median. Under
load the worker's waits are timed too (thin wrappers around the processor's Batch client and gateway, the
slots' receive and settle calls): their means explain the gap to the bound (Little's law).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
)

from bench.client_cost import identity_environment_vars
from bench.emulator_process import RemoteEmulator, run_delay_seconds
from bench.report import put_median
from shared.batch_client import BatchAnswer
from shared.contract import Command
from shared.messages import Outbound
from shared.outcome import Outcome
from shared.processor import BatchApi, Bus, Processor, Settlement
from shared.runtime import Lazy, Runtime, set_runtime
from shared.settlement import settle

CONCURRENCY: Final = 16  # host.json maxConcurrentCalls
SERVICEBUS_DELAY: Final = 0.005  # seconds, each way
BATCH_DELAY: Final = 0.020  # seconds, each way
TABLE: Final = (1, 4, 8, 16, 32)  # up to the Batch connection pool (shared.runtime.POOL_SIZE)
QUEUE: Final = "batch-commands"
TOPIC: Final = "batch-outcomes"
ALL_OUTCOMES: Final = "all-outcomes"  # the subscription without a filter (emulators/servicebus/default_config.json)
DRAIN_WAIT: Final = 10.0  # seconds for the outcomes a finished run has already published
ACCOUNT: Final = "local"
RECEIVE_WAIT: Final = 10.0  # a slot only receives when a message is queued for it, so this never runs out
SEND_CHUNK: Final = 100
log = logging.getLogger("bench.instance_throughput")


# --- the worker: a stand-in for the Functions host's queue trigger ------------------------------------


class Timings:
    """How long the worker waited for each kind of operation under load (seconds, in arrival order)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, kind: str, seconds: float) -> None:
        self.samples.setdefault(kind, []).append(seconds)  # list.append is atomic under the GIL

    def clear(self) -> None:
        self.samples = {}

    def mean_ms(self, kind: str) -> float:
        values = self.samples.get(kind)
        return statistics.fmean(values) * 1000 if values else 0.0


class TimedBatch:
    """The processor's Batch client, timing ``execute``; every other attribute is the client's own."""

    def __init__(self, inner: BatchApi, timings: Timings) -> None:
        self._inner = inner
        self._timings = timings

    def execute(self, command: Command) -> BatchAnswer:
        started = time.perf_counter()
        try:
            return self._inner.execute(command)
        finally:
            self._timings.add("batch_call", time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedBus:
    """The processor's Service Bus gateway, timing ``publish``; every other attribute is the gateway's own."""

    def __init__(self, inner: Bus, timings: Timings) -> None:
        self._inner = inner
        self._timings = timings

    def publish(self, message: Outbound) -> None:
        started = time.perf_counter()
        try:
            self._inner.publish(message)
        finally:
            self._timings.add("publish", time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SlotActions:
    """``ServiceBusMessageActions`` for one slot: settles on the slot's own receiver.

    The SDK receiver is not thread-safe; the function settles from the helper thread of its time limit
    while the slot's thread waits for the function, and the lock keeps the two apart even if a
    settlement outlives its time limit.
    """

    def __init__(self, receiver: ServiceBusReceiver, lock: threading.Lock, timings: Timings | None = None) -> None:
        self._receiver = receiver
        self._lock = lock
        self._timings = timings
        self.kind: str | None = None

    def complete(self, message: Any) -> None:
        with self._lock:
            started, cpu = time.perf_counter(), time.thread_time()
            self._receiver.complete_message(message)
            if self._timings is not None:
                self._timings.add("settle", time.perf_counter() - started)
                self._timings.add("settle_cpu", time.thread_time() - cpu)
        self.kind = "complete"

    def abandon(self, message: Any) -> None:
        with self._lock:
            self._receiver.abandon_message(message)
        self.kind = "abandon"

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None:
        with self._lock:
            self._receiver.dead_letter_message(
                message, reason=deadletter_reason, error_description=deadletter_error_description
            )
        self.kind = "deadletter"


@dataclass
class _Run:
    target: int
    done: int = 0
    settlements: dict[str, int] = field(default_factory=dict)
    finished: threading.Event = field(default_factory=threading.Event)
    ended: float = 0.0


class HostStandIn:
    """``slots`` invocation slots on a queue, at most ``limit`` of them busy at once.

    Like the Functions host's ServiceBusProcessor with maxConcurrentCalls = limit and prefetch 0: each
    busy slot receives one message (peek-lock), invokes the function on its own thread and the function
    settles explicitly. A slot receives only while a ticket is left (one per queued command of the run):
    a receive that ended empty would leave link credit behind, and the local peer hands messages to such
    a link that the SDK never returns (docs/benchmarks.md, end to end), so no receive here ever waits
    on an empty queue.
    """

    def __init__(
        self,
        function: Callable[..., None],
        trigger_name: str,
        connection_string: str,
        queue: str,
        slots: int,
        *,
        timings: Timings | None = None,
    ) -> None:
        self._function = function
        self.timings = timings or Timings()
        self._trigger = trigger_name
        self._actions = [p for p in inspect.signature(function).parameters if p != trigger_name]
        self._connection_string = connection_string
        self._queue = queue
        self._slots = slots
        # One gate: a slot may receive while fewer than ``limit`` slots are busy and a ticket is left.
        self._gate = threading.Condition()
        self._limit = slots
        self._busy = 0
        self._tickets = 0
        self._stop = threading.Event()
        self._opened = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._slot, name=f"slot-{index}", daemon=True) for index in range(slots)
        ]
        self._run: _Run | None = None
        self._count_lock = threading.Lock()
        self.errors: list[str] = []

    def start(self) -> HostStandIn:
        for thread in self._threads:
            thread.start()
        for _ in self._threads:  # every receive link open before any clock starts
            if not self._opened.acquire(timeout=60):
                raise RuntimeError(f"slots did not open their receivers: {self.errors}")
        if self.errors:
            raise RuntimeError(f"slots failed: {self.errors}")
        return self

    def stop(self) -> None:
        with self._gate:
            self._stop.set()
            self._gate.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def run(self, commands: int, limit: int, timeout: float = 300.0) -> float:
        """Let up to ``limit`` slots take ``commands`` queued messages; seconds until the last settled."""
        if limit > self._slots:
            raise ValueError(f"only {self._slots} slots")
        with self._gate:
            if not self._gate.wait_for(lambda: self._busy == 0 and self._tickets == 0, timeout=60):
                raise RuntimeError("the previous run has not finished")
            run = self._run = _Run(commands)
            self._limit = limit
            started = time.perf_counter()
            self._tickets = commands
            self._gate.notify_all()
        deadline = started + timeout
        while not run.finished.wait(0.5):
            if self.errors or time.perf_counter() > deadline:
                raise RuntimeError(f"{run.done} of {commands} commands settled: {self.errors or 'timed out'}")
        if run.settlements != {"complete": commands}:
            raise RuntimeError(f"settlements {run.settlements}; expected {commands} completions: {self.errors}")
        return run.ended - started

    def _slot(self) -> None:
        try:
            with (
                ServiceBusClient.from_connection_string(self._connection_string) as client,
                client.get_queue_receiver(self._queue, prefetch_count=0) as receiver,
            ):
                receiver.peek_messages(max_message_count=1)  # opens the links (the queue is empty)
                self._opened.release()
                self._serve(receiver)
        except Exception as exc:
            self.errors.append(repr(exc))
            self._opened.release()

    def _serve(self, receiver: ServiceBusReceiver) -> None:
        lock = threading.Lock()
        while not self._stop.is_set():
            if not self._enter():
                continue
            try:
                with lock:
                    started, cpu = time.perf_counter(), time.thread_time()
                    messages = receiver.receive_messages(max_message_count=1, max_wait_time=RECEIVE_WAIT)
                    self.timings.add("receive", time.perf_counter() - started)
                    self.timings.add("receive_cpu", time.thread_time() - cpu)
                if not messages:
                    self.errors.append("a receive ended empty while a message was queued")
                    with self._gate:
                        self._tickets += 1
                    continue
                self._invoke(messages[0], SlotActions(receiver, lock, self.timings))
            finally:
                with self._gate:
                    self._busy -= 1
                    self._gate.notify_all()

    def _enter(self) -> bool:
        """Wait for a ticket and a place among the busy slots; False when the stand-in stops."""
        with self._gate:
            self._gate.wait_for(lambda: self._stop.is_set() or (self._tickets > 0 and self._busy < self._limit))
            if self._stop.is_set():
                return False
            self._tickets -= 1
            self._busy += 1
            return True

    def _invoke(self, message: ServiceBusReceivedMessage, actions: SlotActions) -> None:
        arguments: dict[str, Any] = {self._trigger: message, **dict.fromkeys(self._actions, actions)}
        started = time.perf_counter()
        try:
            self._function(**arguments)
        except Exception:  # the host abandons the message of a function that raised
            log.exception("the function raised; the message is abandoned")
            actions.abandon(message)
        self.timings.add("invocation", time.perf_counter() - started)
        kind = actions.kind or "none"
        run = self._run
        if run is None:
            return
        with self._count_lock:
            run.settlements[kind] = run.settlements.get(kind, 0) + 1
            run.done += 1
            if run.done == run.target:
                run.ended = time.perf_counter()
                run.finished.set()


# --- the benchmark --------------------------------------------------------------------------------

LATENCY_PARTS: Final = ("receive", "batch_call", "publish", "settle")


@dataclass(frozen=True)
class Latencies:
    """Medians of single operations through the proxies, one at a time, in seconds."""

    receive: float
    batch_call: float
    publish: float
    settle: float

    @property
    def per_command(self) -> float:
        return self.receive + self.batch_call + self.publish + self.settle

    def as_ms(self) -> dict[str, float]:
        parts = {name: getattr(self, name) * 1000 for name in LATENCY_PARTS}
        return {**parts, "per_command": self.per_command * 1000}


@dataclass(frozen=True)
class Usage:
    """Seconds of CPU used, and of waiting for a CPU while runnable, by the worker and by the stand-ins."""

    cpu: float
    wait: float | None
    standins_cpu: dict[str, float | None]  # by stand-in process
    standins_wait: float | None

    @classmethod
    def now(cls, remote: RemoteEmulator) -> Usage:
        return cls(
            time.process_time(), run_delay_seconds(), remote.cpu_seconds_by_process(), remote.run_delay_seconds()
        )

    def since(self, before: Usage) -> Usage:
        def minus(after: float | None, earlier: float | None) -> float | None:
            return None if after is None or earlier is None else after - earlier

        return Usage(
            self.cpu - before.cpu,
            minus(self.wait, before.wait),
            {name: minus(seconds, before.standins_cpu.get(name)) for name, seconds in self.standins_cpu.items()},
            minus(self.standins_wait, before.standins_wait),
        )

    def per_command_ms(self, commands: int) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else seconds / commands * 1000

        by_process = {name: ms(seconds) for name, seconds in self.standins_cpu.items()}
        known = [value for value in by_process.values() if value is not None]
        return {
            "cpu_ms_per_command": ms(self.cpu),
            "cpu_wait_ms_per_command": ms(self.wait),
            "standins_cpu_ms_per_command": sum(known) if known and len(known) == len(by_process) else None,
            "standins_cpu_ms_per_command_by_process": by_process,
            "standins_cpu_wait_ms_per_command": ms(self.standins_wait),
        }


@dataclass(frozen=True)
class Loaded:
    concurrency: int
    commands: int
    seconds: float
    usage: Usage
    latency_ms: dict[str, float]  # means under load, as the worker waited for them
    host_cpu_ms: float | None = None  # of the worker's CPU per command, the host stand-in's receive + settle

    @property
    def per_second(self) -> float:
        return self.commands / self.seconds

    def figures(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "commands": self.commands,
            "commands_per_second": self.per_second,
            **self.usage.per_command_ms(self.commands),
            "host_standin_cpu_ms_per_command": self.host_cpu_ms,
            "loaded_latency_ms": self.latency_ms,
        }


class Bench:
    """The stand-ins, the product runtime pointed at them through the proxies, and the host stand-in."""

    def __init__(self, remote: RemoteEmulator, runtime: Runtime, function: Any, slots: int) -> None:
        self.remote = remote
        self.runtime = runtime
        self.function = function
        self.timings = Timings()
        # The product's processor on the product's clients, each wrapped to time its waits under load.
        runtime.processor = Lazy(
            lambda: Processor(
                runtime.settings.get(),
                cast(BatchApi, TimedBatch(runtime.batch.get(), self.timings)),
                cast(Bus, TimedBus(runtime.bus.get(), self.timings)),
            )
        )
        self.direct = ServiceBusClient.from_connection_string(remote.ready["servicebus"])
        self.proxied_connection = remote.ready["servicebus_proxied"]
        self.host = HostStandIn(
            function.call, function.trigger["name"], self.proxied_connection, QUEUE, slots, timings=self.timings
        )
        self._probe_client = ServiceBusClient.from_connection_string(self.proxied_connection)
        self._probe_receiver = self._probe_client.get_queue_receiver(QUEUE, prefetch_count=0)
        self._sender = self.direct.get_queue_sender(QUEUE)
        self._outcomes = self.direct.get_subscription_receiver(
            TOPIC, ALL_OUTCOMES, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=0
        )

    def close(self) -> None:
        self.host.stop()
        for closeable in (self._probe_receiver, self._probe_client, self._sender, self._outcomes, self.direct):
            with contextlib.suppress(Exception):
                closeable.close()

    # --- preparation, off the clock ---

    def seed(self, count: int, prefix: str) -> str:
        job = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.remote.seed_job(job)
        self.remote.seed_tasks(job, [{"id": f"t{i}", "state": "running"} for i in range(count)])
        return job

    def queue_commands(self, count: int, prefix: str) -> None:
        """``count`` terminateTask commands for running tasks, sent straight to the peer (no proxy)."""
        job = self.seed(count, prefix)
        messages = [
            ServiceBusMessage(
                json.dumps({"action": "terminateTask", "jobId": job, "taskId": f"t{i}", "commandId": f"{job}-{i}"}),
                message_id=f"{job}-{i}",
                content_type="application/json",
            )
            for i in range(count)
        ]
        for start in range(0, count, SEND_CHUNK):
            self._sender.send_messages(messages[start : start + SEND_CHUNK])

    def drain_outcomes(self, expected: int) -> None:
        """Delete the ``expected`` outcome events a finished run published, off the clock, as a subscriber
        would consume them; fewer than that is a failed run.

        The peer's store is not indexed for its per-event deadline query, so every message left in a
        subscription makes each later peer operation slower (with 4 000 stored, ~1 ms per event); left to
        pile up over a run, they slowed the peer from ~2 to ~4.5 ms of CPU per command. Asking for exactly
        what is left to take leaves no credit on the link between runs (see HostStandIn).
        """
        drained = 0
        while drained < expected:
            batch = self._outcomes.receive_messages(
                max_message_count=min(expected - drained, 1000), max_wait_time=DRAIN_WAIT
            )
            if not batch:
                raise RuntimeError(f"{expected} outcome events expected, {drained} published")
            drained += len(batch)

    # --- measurements ---

    def probe(self, samples: int) -> Latencies:
        """Each operation of a command alone, one at a time, through the proxies; medians."""
        job = self.seed(samples, "probe")
        batch, bus = self.runtime.batch.get(), self.runtime.bus.get()
        timeout = self.runtime.settings.get().servicebus_timeout
        for start in range(0, samples, SEND_CHUNK):
            count = min(SEND_CHUNK, samples - start)
            self._sender.send_messages(
                [ServiceBusMessage(b"{}", message_id=f"{job}-m{start + i}") for i in range(count)]
            )
        actions = SlotActions(self._probe_receiver, threading.Lock())
        measured: dict[str, list[float]] = {name: [] for name in LATENCY_PARTS}
        for index in range(samples):
            started = time.perf_counter()
            messages = self._probe_receiver.receive_messages(max_message_count=1, max_wait_time=RECEIVE_WAIT)
            measured["receive"].append(time.perf_counter() - started)
            if not messages:
                raise RuntimeError("the probe receive ended empty")
            command = Command(
                action="terminateTask", job_id=job, task_id=f"t{index}", account=ACCOUNT, command_id=f"{job}-{index}"
            )
            started = time.perf_counter()
            answer = batch.execute(command)
            measured["batch_call"].append(time.perf_counter() - started)
            if not answer.ok:
                raise RuntimeError(f"probe Batch call: HTTP {answer.status} {answer.code}")
            outcome = Outcome(
                command_id=command.command_id,
                action=command.action,
                account=ACCOUNT,
                job_id=job,
                task_id=command.task_id,
                decision="succeeded",
                attempt=1,
                occurred_at=_now(),
                answer=answer,
            )
            started = time.perf_counter()
            bus.publish(outcome.message())
            measured["publish"].append(time.perf_counter() - started)
            started = time.perf_counter()
            settle(actions, messages[0], Settlement("complete"), timeout)  # as process_command settles
            measured["settle"].append(time.perf_counter() - started)
            if actions.kind != "complete":
                raise RuntimeError("the probe settlement failed")
        self.drain_outcomes(samples)
        return Latencies(*(statistics.median(measured[name]) for name in LATENCY_PARTS))

    def loaded(self, commands: int, concurrency: int, prefix: str) -> Loaded:
        """``commands`` queued commands through ``concurrency`` slots; the clock runs from release to last."""
        self.queue_commands(commands, prefix)
        self.timings.clear()
        before = Usage.now(self.remote)
        seconds = self.host.run(commands, concurrency)
        usage = Usage.now(self.remote).since(before)
        self.drain_outcomes(commands)  # every command settled, so each has published its one outcome
        # The host's part of the worker's CPU: receiving and settling (in Azure, the .NET host does both).
        host_cpu = self.timings.mean_ms("receive_cpu") + self.timings.mean_ms("settle_cpu")
        return Loaded(concurrency, commands, seconds, usage, self._loaded_latencies(LATENCY_PARTS), host_cpu)

    def _loaded_latencies(self, parts: Sequence[str]) -> dict[str, float]:
        """Means under load: Little's law ties them to the throughput (concurrency / mean busy time)."""
        means = {name: self.timings.mean_ms(name) for name in parts}
        if "receive" in parts:
            invocation = self.timings.mean_ms("invocation")
            # The invocation's own time besides its three waits: the processor's work and the handoffs
            # to the helper threads that bound the Service Bus calls (shared/deadline.py).
            means["invocation_other"] = invocation - means["batch_call"] - means["publish"] - means["settle"]
            means["per_command"] = means["receive"] + invocation
        return means

    def local_driver(self, commands: int, concurrency: int) -> tuple[Loaded, dict[str, float]]:
        """The same load through ``local.queue_driver.QueueDriver`` (the local host's driver).

        Also returns how its driver thread spent the run: the SDK receiver calls it made, timed.
        """
        from local.queue_driver import QueueDriver  # noqa: PLC0415 - only this comparison needs it

        driver = QueueDriver(self.function, self.proxied_connection, QUEUE, concurrency)
        driver.start()
        thread = DriverThreadTimings()
        try:
            time.sleep(1.0)  # its receiver connects and starts polling the empty queue
            self.timings.clear()
            with thread.installed():
                before, started = Usage.now(self.remote), time.perf_counter()
                self.queue_commands(commands, "local-driver")  # on the clock: the driver is already receiving
                deadline = started + 300
                while driver.invocations < commands:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"the local driver settled {driver.invocations} of {commands}")
                    time.sleep(0.005)
                ended = time.perf_counter()
            seconds, usage = ended - started, Usage.now(self.remote).since(before)
        finally:
            driver.stop()
        self.drain_outcomes(commands)
        # Its receive and settlements happen on its driver thread; the function's Batch call and publish
        # are timed as for the host stand-in.
        loaded = Loaded(concurrency, commands, seconds, usage, self._loaded_latencies(("batch_call", "publish")))
        return loaded, thread.summary(started, ended)


class DriverThreadTimings:
    """Times the SDK receiver calls made on a driver thread (``queue:<function>``) while installed.

    The wrappers are set on the ``ServiceBusReceiver`` class for the duration of one run only, and time
    nothing on other threads.
    """

    SETTLEMENTS: Final = ("complete_message", "abandon_message", "dead_letter_message", "defer_message")

    def __init__(self, thread_prefix: str = "queue:") -> None:
        self._prefix = thread_prefix
        self.intervals: dict[str, list[tuple[float, float]]] = {"receive": [], "settle": []}
        self.received = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        names = ("receive_messages", *self.SETTLEMENTS)
        originals = {name: getattr(ServiceBusReceiver, name) for name in names}
        for name, original in originals.items():
            setattr(
                ServiceBusReceiver, name, self._wrap("receive" if name == "receive_messages" else "settle", original)
            )
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(ServiceBusReceiver, name, original)

    def _wrap(self, kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(receiver: ServiceBusReceiver, *args: Any, **kwargs: Any) -> Any:
            if not threading.current_thread().name.startswith(self._prefix):
                return original(receiver, *args, **kwargs)
            started = time.perf_counter()
            try:
                result = original(receiver, *args, **kwargs)
            finally:
                self.intervals[kind].append((started, time.perf_counter()))
            if kind == "receive":
                self.received += len(result)
            return result

        return timed

    def summary(self, started: float, ended: float) -> dict[str, float]:
        """Shares of the window [started, ended] the driver thread spent in each kind of call."""

        def within_window(kind: str) -> float:
            return sum(max(0.0, min(end, ended) - max(start, started)) for start, end in self.intervals[kind])

        receives, settlements = self.intervals["receive"], self.intervals["settle"]
        wall = ended - started
        return {
            "settle_share_of_wall": within_window("settle") / wall,
            "receive_share_of_wall": within_window("receive") / wall,
            "settle_ms_median": statistics.median([end - start for start, end in settlements] or [0.0]) * 1000,
            "receive_ms_median": statistics.median([end - start for start, end in receives] or [0.0]) * 1000,
            "settlements": len(settlements),
            "receives": len(receives),
            "messages_per_receive": self.received / max(len(receives), 1),
        }


def _now() -> datetime:
    return datetime.now(UTC)


def _environment(remote: RemoteEmulator) -> dict[str, str]:
    return {
        "BATCH_ACCOUNTS": json.dumps({ACCOUNT: remote.ready["batch_proxied"]}),
        "BATCH_DEFAULT_ACCOUNT": ACCOUNT,
        "BATCH_ALLOW_HTTP_LOOPBACK": "true",
        "ServiceBusConnection": remote.ready["servicebus_proxied"],
        "AZURE_CLIENT_ID": "bench-identity",
    }


@contextlib.contextmanager
def _bench(slots: int) -> Iterator[Bench]:
    from local.functions import index  # noqa: PLC0415 - the worker's indexing, shared with the local host

    with (
        RemoteEmulator(servicebus=True, batch_delay=BATCH_DELAY, servicebus_delay=SERVICEBUS_DELAY) as remote,
        identity_environment_vars(remote.identity_url, remote.identity_secret),
    ):
        runtime = Runtime(_environment(remote))
        runtime.settings.get()
        set_runtime(runtime)
        bench: Bench | None = None
        try:
            import function_app  # noqa: PLC0415 - imported as the worker would, after the settings

            function = index(function_app.app)["process_command"]
            bench = Bench(remote, runtime, function, slots)
            bench.host.start()
            yield bench
        finally:
            if bench is not None:
                bench.close()
            set_runtime(None)
            with contextlib.suppress(Exception):
                runtime.bus.get().close()


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one figure over the repetitions."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(
    *,
    commands: int = 400,
    runs: int = 5,
    probes: int = 15,
    table: Sequence[int] = TABLE,
    table_commands_per_slot: int = 20,
    table_min_commands: int = 40,
    table_passes: int = 2,
    local_driver_commands: int = 200,
) -> dict[str, Any]:
    """The figures of ``instance_throughput`` in bench/results.json."""
    slots = max((CONCURRENCY, *table))
    with _bench(slots) as bench:
        # Warm: every slot's links, the sender pool up to the concurrency, the token, Batch connections.
        bench.loaded(slots * 3, slots, "warm")
        bench.probe(3)
        repetitions: list[dict[str, Any]] = []
        for number in range(runs):
            if number % 2 == 0:  # alternate which goes first, so drift on a shared machine hits both
                latencies = bench.probe(probes)
                loaded = bench.loaded(commands, CONCURRENCY, f"run{number}")
            else:
                loaded = bench.loaded(commands, CONCURRENCY, f"run{number}")
                latencies = bench.probe(probes)
            repetitions.append(_repetition(latencies, loaded))
        per_command = statistics.median(r["latency_ms"]["per_command"] for r in repetitions) / 1000
        # The table in passes, ascending then descending, so drift does not favour one end of it.
        by_concurrency: dict[int, list[Loaded]] = {c: [] for c in table}
        for number in range(table_passes):
            for c in table if number % 2 == 0 else tuple(reversed(table)):
                commands_of_c = max(table_min_commands, table_commands_per_slot * c)
                by_concurrency[c].append(bench.loaded(commands_of_c, c, f"c{c}-{number}"))
        rows = [_row(runs_of_c, per_command) for runs_of_c in by_concurrency.values()]
        local: dict[str, Any] | None = None
        if local_driver_commands:
            try:
                driven, driver_thread = bench.local_driver(local_driver_commands, CONCURRENCY)
            except Exception as exc:  # a comparison only (local/ changes on its own): never voids the rest
                log.exception("the local queue driver comparison failed")
                local = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                local = {**_row([driven], per_command), "driver_thread": driver_thread}
    return _summary(commands=commands, runs=runs, probes=probes, repetitions=repetitions, rows=rows, local=local)


def _repetition(latencies: Latencies, loaded: Loaded) -> dict[str, Any]:
    bound = CONCURRENCY / latencies.per_command
    return {
        "latency_ms": latencies.as_ms(),
        "bound_commands_per_second": bound,
        "ratio_to_bound": loaded.per_second / bound,
        **loaded.figures(),
    }


def _row(runs: Sequence[Loaded], per_command: float) -> dict[str, Any]:
    """One concurrency's figures over its runs: medians with ranges, and the last run's details."""
    concurrency = runs[0].concurrency
    bound = concurrency / per_command
    row: dict[str, Any] = {**runs[-1].figures(), "runs": len(runs), "bound_commands_per_second": bound}
    put_median(row, "commands_per_second", [run.per_second for run in runs])
    put_median(row, "ratio_to_bound", [run.per_second / bound for run in runs])
    for name in ("cpu_ms_per_command", "standins_cpu_ms_per_command"):
        values = [run.figures()[name] for run in runs]
        if None not in values:
            put_median(row, name, values)
    return row


def _summary(
    *,
    commands: int,
    runs: int,
    probes: int,
    repetitions: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    local: dict[str, Any] | None,
) -> dict[str, Any]:
    def latencies(key: str) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for name in repetitions[0][key]:
            put_median(figures, name, [r[key][name] for r in repetitions])
        return figures

    summary: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "delay_ms_each_way": {"servicebus": SERVICEBUS_DELAY * 1000, "batch": BATCH_DELAY * 1000},
        "commands_per_run": commands,
        "runs": runs,
        "probe_samples": probes,
        "per_command_latency": "receive + batch_call + publish + settle (medians, one operation at a time)",
        "latency_ms": latencies("latency_ms"),
        "loaded_latency_ms": latencies("loaded_latency_ms"),
    }
    for name in (
        "bound_commands_per_second",
        "commands_per_second",
        "ratio_to_bound",
        "cpu_ms_per_command",
        "host_standin_cpu_ms_per_command",
        "cpu_wait_ms_per_command",
        "standins_cpu_ms_per_command",
        "standins_cpu_wait_ms_per_command",
    ):
        values = [r[name] for r in repetitions if r[name] is not None]
        if values:
            put_median(summary, name, values)
        else:
            summary[name] = None
    summary.update(repetitions=repetitions, concurrency_table=rows, local_queue_driver=local)
    return summary
