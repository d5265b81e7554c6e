"""The local host: stand-ins plus function_app driven the way the Functions host drives it."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cli.outcomes import OutcomeBrowser
from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from emulators.servicebus import ServiceBusPeer
from local.demo import seed_demo
from local.functions import IndexedFunction, index, resolve
from local.http_server import FunctionsHttpServer
from local.outcomes import event_of
from local.queue_driver import QueueDriver
from local.settlement import SettlementServer
from local.timers import TimerScheduler
from shared.config import SETTINGS
from shared.runtime import Runtime, set_runtime

ROOT = Path(__file__).resolve().parents[1]
WELL_KNOWN_SB = (
    "Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)
log = logging.getLogger("local.host")
RECEIVER_LANES = 4  # receivers per queue trigger; maxConcurrentCalls is shared among them


@dataclass(frozen=True)
class Ports:
    batch: int = 8091
    identity: int = 8092
    servicebus: int = 5672
    http: int = 7071


@dataclass
class LocalHost:
    ports: Ports = field(default_factory=Ports)
    # In memory by default: the Batch emulator starts empty each run too, and a peer that remembered
    # last run's message ids would drop this run's commands as duplicates. --servicebus-db keeps them.
    db_path: str = ":memory:"
    seed: bool = True
    print_outcomes: bool = True
    out: TextIO | None = None
    concurrency: int = 16
    overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stoppers: list[Callable[[], None]] = []
        self.env: dict[str, str] = {}
        self.functions: dict[str, IndexedFunction] = {}
        self.batch: BatchEmulator | None = None
        self.peer: ServiceBusPeer | None = None
        self.timers: TimerScheduler | None = None
        self.http: FunctionsHttpServer | None = None
        self.drivers: list[QueueDriver] = []

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalHost:
        try:
            return self._start()
        except BaseException:
            self.stop()  # whatever did start must not outlive a failed start
            raise

    def _start(self) -> LocalHost:
        endpoints = self._start_standins()
        self.env = self._environment(endpoints)
        # azure-identity reads IDENTITY_ENDPOINT from the process environment; the functions get
        # clients built from exactly these settings, even if another host ran in this process.
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        self._stoppers.append(lambda: _restore_environment(saved))
        runtime = Runtime(self.env)
        runtime.settings.get()  # a bad setting stops start-up here, as it fails every invocation in Azure
        set_runtime(runtime)
        self._stoppers.append(lambda: set_runtime(None))
        self.functions = index(importlib.import_module("function_app").app)
        self._start_functions()
        if self.seed and self.batch is not None:
            seed_demo(self.batch)
        if self.print_outcomes:
            self._start_outcome_printer()
        self._banner()
        return self

    def stop(self) -> None:
        for stop in reversed(self._stoppers):
            with contextlib.suppress(Exception):
                stop()
        self._stoppers.clear()

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def servicebus_port(self) -> int:
        return self.peer.port if self.peer is not None else self.ports.servicebus

    # --- stand-ins ------------------------------------------------------------------------

    def _start_standins(self) -> dict[str, str]:
        """Start each stand-in, or use one already listening on its port."""
        endpoints: dict[str, str] = {}
        if _listening(self.ports.identity):
            endpoints["identity"] = f"http://127.0.0.1:{self.ports.identity}"
        else:
            identity = IdentityEndpoint(port=self.ports.identity)
            identity.start()
            self._stoppers.append(identity.stop)
            endpoints["identity"] = identity.url
            endpoints["identity_secret"] = identity.header_secret
        if _listening(self.ports.batch):
            endpoints["batch"] = f"http://127.0.0.1:{self.ports.batch}"
        else:
            self.batch = BatchEmulator(port=self.ports.batch, jwks_url=endpoints["identity"] + "/.well-known/jwks.json")
            self.batch.start()
            self._stoppers.append(self.batch.stop)
            endpoints["batch"] = self.batch.url
        if _listening(self.ports.servicebus):
            endpoints["servicebus"] = WELL_KNOWN_SB.format(port=self.ports.servicebus)
        else:
            if self.db_path != ":memory:":
                Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
            self.peer = ServiceBusPeer(port=self.ports.servicebus, db_path=self.db_path)
            self.peer.start()
            self._stoppers.append(self.peer.stop)
            endpoints["servicebus"] = self.peer.connection_string
        return endpoints

    def _environment(self, endpoints: dict[str, str]) -> dict[str, str]:
        """local.settings.json (or the sample) values, pointed at the running stand-ins."""
        settings_file = ROOT / "local.settings.json"
        if not settings_file.exists():
            settings_file = ROOT / "local.settings.sample.json"
        values: dict[str, str] = json.loads(settings_file.read_text())["Values"]
        values.update(
            {
                "ServiceBusConnection": endpoints["servicebus"],
                "IDENTITY_ENDPOINT": endpoints["identity"] + "/msi/token",
                "BATCH_ACCOUNTS": json.dumps({"local": endpoints["batch"]}),
                "BATCH_DEFAULT_ACCOUNT": "local",
                "BATCH_ALLOW_HTTP_LOOPBACK": "true",
            }
        )
        if "identity_secret" in endpoints:
            values["IDENTITY_HEADER"] = endpoints["identity_secret"]
        # As with Core Tools, a product setting already in the process environment wins over the file.
        values.update({name: os.environ[name] for name in SETTINGS if name in os.environ and name in values})
        values.update(self.overrides)
        return values

    # --- functions ------------------------------------------------------------------------

    def _start_functions(self) -> None:
        for function in self.functions.values():
            if function.kind == "serviceBusTrigger":
                queue = resolve(function.trigger["queueName"], self.env)
                connection = self.env[function.trigger["connection"]]
                # The host settles concurrently; one receiver does its settlements one round trip at a time,
                # so the invocation slots are spread over a few receivers (each settles only its own tokens).
                for slots in _lanes(self.concurrency, RECEIVER_LANES):
                    driver = QueueDriver(
                        function,
                        connection,
                        queue,
                        slots,
                        max_lock_renewal=_max_lock_renewal(ROOT / "host.json"),
                        settlement=SettlementServer.shared(),  # the host's Settlement gRPC service (one per process)
                    )
                    driver.start()
                    self._stoppers.append(driver.stop)
                    self.drivers.append(driver)
        self.timers = TimerScheduler(self.functions, self.env)
        self.timers.start()
        self._stoppers.append(self.timers.stop)
        self.http = FunctionsHttpServer(self.functions, self.timers.fire, port=self.ports.http)
        self.http.start()
        self._stoppers.append(self.http.stop)

    def _start_outcome_printer(self) -> None:
        # Browses (peeks) instead of receiving, so batch-lifecycle watch and send --wait see every event too.
        listener = OutcomeBrowser(
            self.env["ServiceBusConnection"],
            self.env["OUTCOME_TOPIC_NAME"],
            lambda message: self._print(_outcome_line(event_of(message))),
        ).start()
        self._stoppers.append(listener.stop)

    # --- output ---------------------------------------------------------------------------

    def _print(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def _banner(self) -> None:
        assert self.http is not None and self.timers is not None
        queue = self.env["COMMAND_QUEUE_NAME"]
        lines = [
            "Local Batch task lifecycle functions are running.",
            f"  Batch emulator      {json.loads(self.env['BATCH_ACCOUNTS'])['local']}  (admin API under /_emulator/)",
            f"  Identity endpoint   {self.env['IDENTITY_ENDPOINT']}",
            f"  Service Bus peer    amqp://127.0.0.1:{self.servicebus_port}  queue {queue}, "
            f"topic {self.env['OUTCOME_TOPIC_NAME']}",
            f"  HTTP functions      {self.http.url}/api/",
        ]
        for function in self.functions.values():
            lines.append(f"    {function.name:<20} {self._describe(function)}")
        lines += [
            "Send a command:",
            "  .venv/bin/python -m local send terminateTask --job demo-job --task running-1",
            "Outcome events are printed below as they are published. Ctrl-C stops everything.",
        ]
        for line in lines:
            self._print(line)

    def _describe(self, function: IndexedFunction) -> str:
        assert self.http is not None and self.timers is not None
        if function.kind == "serviceBusTrigger":
            return f"queue {resolve(function.trigger['queueName'], self.env)}"
        if function.kind == "timerTrigger":
            run_now = f"curl -X POST {self.http.url}/admin/functions/{function.name}"
            return f"timer '{self.timers.schedules[function.name]}' (UTC); run now: {run_now}"
        route = function.trigger.get("route") or function.name
        return f"{','.join(function.trigger.get('methods') or ['GET', 'POST'])} {self.http.url}/api/{route}"


def _lanes(concurrency: int, lanes: int) -> list[int]:
    """``concurrency`` invocation slots shared as evenly as possible by at most ``lanes`` receivers."""
    count = max(1, min(lanes, concurrency))
    return [concurrency // count + (1 if lane < concurrency % count else 0) for lane in range(count)]


def _max_lock_renewal(host_json: Path, default: float = 300.0) -> float:
    """host.json's ``extensions.serviceBus.maxAutoLockRenewalDuration`` (a TimeSpan) in seconds."""
    try:
        value = json.loads(host_json.read_text())["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]
    except (OSError, ValueError, KeyError, TypeError):
        return default
    return timespan_seconds(str(value))


def timespan_seconds(text: str) -> float:
    """A .NET TimeSpan (``[d.]hh:mm:ss[.fffffff]``) in seconds."""
    head, _, rest = text.strip().partition(":")
    days, _, hours = head.rpartition(".")
    minutes, seconds = rest.split(":")
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _listening(port: int) -> bool:
    if port == 0:
        return False
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _outcome_line(event: dict[str, Any]) -> str:
    if isinstance(event.get("fanOut"), dict):  # a selector page (README, "Fleet operations")
        fan_out = event["fanOut"]
        target = event.get("jobId") or fan_out.get("kind") or ""
        progress = (
            f"page={fan_out.get('page')} listed={fan_out.get('listed')} selected={fan_out.get('selected')} "
            f"enqueued={fan_out.get('enqueued')} total={fan_out.get('totalSelected')}"
            + (" limitReached" if fan_out.get("limitReached") else "")
            + (" (dry run)" if event.get("dryRun") else "")
        )
        return f"fanout   {event.get('decision', '?'):<11} {event.get('action') or '-':<14} {target:<28} {progress}"
    target = "/".join(part for part in (event.get("jobId"), event.get("taskId")) if part)
    code = (event.get("batchError") or {}).get("code") or event.get("deadLetterReason")
    details = [f"attempt={event.get('attempt')}", f"http={event.get('httpStatus')}", code]
    details += [
        f"retryAt={event['retryAt']}" if event.get("retryAt") else None,
        "(dry run)" if event.get("dryRun") else None,
    ]
    if event.get("httpStatus") is None and event.get("decision") == "deadLetter":
        # Batch was never called (an invalid message): say which message and what is wrong with it.
        details += [f"commandId={event.get('commandId')}", f"- {str(event.get('detail') or '')[:300]}"]
    tail = " ".join(part for part in details if part)
    return f"outcome  {event.get('decision', '?'):<11} {event.get('action') or '-':<14} {target:<28} {tail}"
