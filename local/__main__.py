"""``python -m local``: run the whole system locally; ``send`` a command; ``fire`` a timer now.

``send`` is the batch-lifecycle tool's ``send`` (cli/, docs/cli.md) pointed at the local peer.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import urllib.request

from cli.__main__ import main as batch_lifecycle
from local.host import WELL_KNOWN_SB, LocalHost, Ports
from shared.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["send"]:
        return _send(arguments[1:])
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
    # Handled above, before parsing; listed here for --help.
    commands.add_parser("send", help="enqueue a command on the local peer: batch-lifecycle send (docs/cli.md)")
    fire = commands.add_parser("fire", help="run a timer function now through the host's admin API")
    fire.add_argument("name")
    fire.add_argument("--http-port", type=int, default=Ports().http)
    args = parser.parse_args(arguments)
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


def _send(argv: list[str]) -> int:
    """``batch-lifecycle send ARGS`` against the local peer (``--servicebus-port``, default 5672)."""
    port = argparse.ArgumentParser(add_help=False)
    port.add_argument("--servicebus-port", type=int, default=Ports().servicebus)
    known, rest = port.parse_known_args(argv)
    if not any(arg.split("=")[0] in ("--connection-string", "--namespace") for arg in rest):
        rest += ["--connection-string", WELL_KNOWN_SB.format(port=known.servicebus_port)]
    return batch_lifecycle(["send", *rest])


def _fire(args: argparse.Namespace) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{args.http_port}/admin/functions/{args.name}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a fixed loopback URL
        print(f"{args.name}: HTTP {response.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
