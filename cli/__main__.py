"""batch-lifecycle: send commands, watch outcomes and manage the dead-letter queue (docs/cli.md).

Works against Azure (--namespace, signed in with DefaultAzureCredential) and the local Service Bus
peer (--connection-string; by default the peer's well-known string on 127.0.0.1:5672).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

from azure.servicebus import ServiceBusClient

from cli import arguments, dlq, send
from cli.bus import ENV_CONNECTION, ENV_NAMESPACE, CliError, Target, open_client, resolve_target, talking, topic_access
from cli.outcomes import Filter, Follower, outcome_json, outcome_line, read_outcome

PROG: Final = "batch-lifecycle"
EXIT_USAGE: Final = 64
EXIT_INTERRUPTED: Final = 130
EPILOG: Final = f"""\
exit codes: 0 done (send --wait: succeeded or alreadyDone), 1 error (one line on stderr),
2 send --wait: deadLetter, 3 send --wait: no terminal outcome in time, 64 usage, 130 interrupted.
connection: --namespace NS (Entra ID) or --connection-string CS; defaults from {ENV_NAMESPACE} or
{ENV_CONNECTION}, else the local peer on 127.0.0.1:5672. Reference: docs/cli.md"""


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 64 for usage errors: 2 means deadLetter for send --wait."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_connection(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("connection")
    where.add_argument(
        "--namespace",
        metavar="NS",
        help=f"Azure: myns.servicebus.windows.net, signed in with DefaultAzureCredential (env {ENV_NAMESPACE})",
    )
    where.add_argument(
        "--connection-string",
        metavar="CS",
        help=f"a Service Bus connection string (env {ENV_CONNECTION}; default: the local peer on 127.0.0.1:5672)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log the SDK (-v info, -vv debug)")


def _add_queue(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue", metavar="NAME", default="batch-commands", help="command queue (default batch-commands)"
    )
    _add_connection(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="{send,watch,dlq}")
    commands.required = True
    sender = commands.add_parser(
        "send",
        help="send one command; --wait for its terminal outcome",
        description=send.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_arguments(sender)
    _add_connection(sender)
    sender.set_defaults(run=send.run)

    watcher = commands.add_parser(
        "watch",
        help="print outcome events as they arrive",
        description=WATCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watcher.add_argument(
        "--decision", metavar="D", action="append", default=[], help="only these decisions (repeatable, a,b)"
    )
    watcher.add_argument(
        "--action", metavar="A", action="append", default=[], help="only these actions (repeatable, a,b)"
    )
    watcher.add_argument(
        "--job", metavar="JOB_ID", action="append", default=[], help="only these jobIds (repeatable, a,b)"
    )
    watcher.add_argument("--json", action="store_true", help="print each event's JSON body, one per line")
    watcher.add_argument("--history", action="store_true", help="start with the events the subscription still holds")
    watcher.add_argument("--count", type=arguments.whole_number, metavar="N", help="stop after N printed events")
    watcher.add_argument("--timeout", type=arguments.seconds, metavar="S", help="stop after S seconds")
    watcher.add_argument(
        "--topic", metavar="NAME", default="batch-outcomes", help="outcome topic (default batch-outcomes)"
    )
    watcher.add_argument(
        "--subscription", metavar="NAME", default="all-outcomes", help="subscription browsed (default all-outcomes)"
    )
    _add_connection(watcher)
    watcher.set_defaults(run=run_watch)

    dead = commands.add_parser("dlq", help="the command queue's dead-letter queue: list, redrive, purge")
    dlq.add_arguments(dead, _add_queue)
    dead.set_defaults(run=dlq.run)
    return parser


WATCH_HELP: Final = """\
Print outcome events as they arrive on the topic, one line each (or --json). The subscription is
browsed, not received: nothing is taken from it, so other readers and its history are untouched."""


def run_watch(args: argparse.Namespace, client: ServiceBusClient, target: Target) -> int:
    keep = Filter.of(args.decision, args.action, args.job)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    printed = 0
    with (
        talking(target, topic_access(args.topic, args.subscription)),
        client.get_subscription_receiver(args.topic, args.subscription) as receiver,
    ):
        follower = Follower(receiver)
        if args.history:
            follower.seek_start()
        else:
            follower.seek_end()
        print(
            f"watching {args.topic}/{args.subscription} on {target.describe()} (browsing; Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        for message in follower.follow(deadline):
            outcome = read_outcome(message)
            if not keep(outcome):
                continue
            print(outcome_json(outcome) if args.json else outcome_line(outcome), flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                break
    return 0


def _configure_logging(verbose: int) -> None:
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )
        return
    # The SDK logs failures (with tracebacks) that this tool reports in one line of its own. Without a
    # handler of ours they would reach Python's last-resort handler on stderr.
    sdk = logging.getLogger("azure")
    if not any(isinstance(handler, logging.NullHandler) for handler in sdk.handlers):
        sdk.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (64)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose)
    runner: Callable[[argparse.Namespace, ServiceBusClient, Target], int] = args.run
    try:
        target = resolve_target(args.namespace, args.connection_string, os.environ)
        with open_client(target) as client:
            return runner(args, client, target)
    except CliError as exc:
        prefix = f"{PROG}: usage error: " if exc.exit_code == EXIT_USAGE else "error: "
        print(prefix + str(exc), file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `watch | head`: the reader went away
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
