"""``python -m local``: run the whole system locally; ``send`` a command; ``fire`` a timer now."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import urllib.request
import uuid
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from local.host import WELL_KNOWN_SB, LocalHost, Ports
from shared.config import ConfigError

ACTIONS = ("terminateTask", "deleteTask", "reactivateTask", "terminateJob")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="start the stand-ins and the functions (the default)")
    run.add_argument("--no-demo", action="store_true", help="do not seed the demo job")
    run.add_argument("--servicebus-db", default=":memory:", help="SQLite file that keeps the peer's messages")
    run.add_argument(
        "--log-level", default="WARNING", help="INFO shows the functions' structured log lines (default WARNING)"
    )
    for name, default in vars(Ports()).items():
        run.add_argument(f"--{name}-port", type=int, default=default)
    send = commands.add_parser("send", help="enqueue one lifecycle command")
    send.add_argument("action", choices=ACTIONS)
    send.add_argument("--job", required=True)
    send.add_argument("--task")
    send.add_argument("--account")
    send.add_argument("--reason")
    send.add_argument("--force", action="store_true")
    send.add_argument("--dry-run", action="store_true")
    send.add_argument("--command-id", help="defaults to a new UUID; also used as the message_id")
    send.add_argument("--servicebus-port", type=int, default=Ports().servicebus)
    send.add_argument("--queue", default="batch-commands")
    fire = commands.add_parser("fire", help="run a timer function now through the host's admin API")
    fire.add_argument("name")
    fire.add_argument("--http-port", type=int, default=Ports().http)
    args = parser.parse_args(argv)
    if args.command == "send":
        return _send(args)
    if args.command == "fire":
        return _fire(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING").upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # proton reports a client that closed its socket without the AMQP close handshake (the SDK
    # does that) as an error; it is harmless, so only the peer's own loggers speak.
    logging.getLogger("proton").setLevel(logging.CRITICAL)
    ports = Ports(**{name: getattr(args, f"{name}_port", default) for name, default in vars(Ports()).items()})
    host = LocalHost(
        ports=ports,
        db_path=getattr(args, "servicebus_db", ":memory:"),
        seed=not getattr(args, "no_demo", False),
        out=sys.stdout,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        host.start()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    finally:
        host.stop()
    return 0


def _command(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"action": args.action, "jobId": args.job, "commandId": args.command_id or str(uuid.uuid4())}
    optional = {"taskId": args.task, "account": args.account, "reason": args.reason}
    body.update({key: value for key, value in optional.items() if value})
    if args.force:
        body["force"] = True
    if args.dry_run:
        body["dryRun"] = True
    body["requestedBy"] = "python -m local send"
    return body


def _send(args: argparse.Namespace) -> int:
    body = _command(args)
    message = ServiceBusMessage(json.dumps(body), message_id=body["commandId"], content_type="application/json")
    with (
        ServiceBusClient.from_connection_string(WELL_KNOWN_SB.format(port=args.servicebus_port)) as client,
        client.get_queue_sender(args.queue) as sender,
    ):
        sender.send_messages(message)
    print(f"sent {json.dumps(body)}")
    return 0


def _fire(args: argparse.Namespace) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{args.http_port}/admin/functions/{args.name}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a fixed loopback URL
        print(f"{args.name}: HTTP {response.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
