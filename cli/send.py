"""``send``: put one command on the queue, optionally wait for its terminal outcome.

The body follows the command contract (README, "Command contract"); ``message_id`` = commandId so the
queue's duplicate detection drops a command sent twice. The command is checked with the product's own
parser first when that parser knows every field and the action; fields or actions it does not know
yet (a newer server) are passed through for the server to judge.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from cli.bus import SENDER, CliError, Target, UsageError, queue_access, talking, topic_access
from cli.outcomes import Follower, Outcome, outcome_json, outcome_line, read_outcome
from shared import contract
from shared.config import ACTIONS as KNOWN_ACTIONS
from shared.messages import COMMAND_ID_PROPERTY

ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask", "terminateJob", "deleteJob")
# Exit codes of `send --wait` (docs/cli.md): the terminal decision, or no terminal outcome in time.
EXIT_FOR_DECISION: Final = {"succeeded": 0, "alreadyDone": 0, "deadLetter": 2}
EXIT_TIMEOUT: Final = 3
_ANY_ACCOUNT: Final = "(default account)"
# Command-line flag -> contract field, in the order the body lists them.
_FIELDS: Final = (
    ("job", "jobId"),
    ("task", "taskId"),
    ("select", "select"),
    ("job_select", "jobSelect"),
    ("limit", "limit"),
    ("account", "account"),
    ("reason", "reason"),
    ("if_match", "ifMatch"),
    ("if_unmodified_since", "ifUnmodifiedSince"),
)
_BODY_FLAGS: Final = ("action", *(flag for flag, _ in _FIELDS), "force", "dry_run", "command_id", "requested_by")
_SELECTOR_FIELDS: Final = ("select", "jobSelect", "limit")
DESCRIPTION: Final = """\
Send one lifecycle command to the command queue, message_id = commandId. A single-target command is
checked with the product's contract first (nothing is sent if it breaks a rule); selector commands and
raw bodies are left to the server. --wait follows the outcome topic and exits with the terminal
decision's code: 0 succeeded/alreadyDone, 2 deadLetter, 3 no terminal outcome in time."""
TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True)
class Draft:
    """A message ready to send: the body bytes and the ids to send and correlate by."""

    body: bytes
    message_id: str
    command_id: str
    subject: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=ACTIONS, help="the lifecycle action (omit with --raw)")
    target = parser.add_argument_group("target: one job or task, or a selector (docs/cli.md)")
    target.add_argument("--job", metavar="JOB_ID", help="jobId")
    target.add_argument("--task", metavar="TASK_ID", help="taskId (task actions on one task)")
    target.add_argument("--select", metavar="JSON", type=_json_object("--select"), help="selector object: select")
    target.add_argument("--job-select", metavar="JSON", type=_json_object("--job-select"), help="jobSelect object")
    target.add_argument("--limit", type=int, metavar="N", help="limit: at most this many targets (selector commands)")
    fields = parser.add_argument_group("contract fields")
    fields.add_argument("--account", metavar="ALIAS", help="account alias (default: the app's default account)")
    fields.add_argument("--reason", metavar="TEXT", help="terminateJob: the job's terminate reason")
    fields.add_argument("--force", action="store_true", help="force (terminateJob, deleteJob)")
    fields.add_argument("--if-match", metavar="ETAG", help="ifMatch precondition")
    fields.add_argument("--if-unmodified-since", metavar="DATE", help="ifUnmodifiedSince (RFC 1123 or ISO 8601)")
    fields.add_argument("--dry-run", action="store_true", help="dryRun: predict, change nothing")
    fields.add_argument("--command-id", metavar="ID", help="commandId, also the message_id (default: a new UUID)")
    fields.add_argument(
        "--requested-by", metavar="TEXT", help="requestedBy (default: batch-lifecycle and your user name)"
    )
    fields.add_argument(
        "--traceparent", metavar="TP", type=_traceparent, help="W3C trace context to continue (default: a new trace)"
    )
    raw = parser.add_argument_group("raw mode (testing producers)")
    raw.add_argument("--raw", metavar="FILE", help="send this file's bytes as the body, as given ('-' = stdin)")
    raw.add_argument(
        "--message-id", metavar="ID", help="raw mode: the message_id (default: the body's commandId, else a UUID)"
    )
    wait = parser.add_argument_group("waiting")
    wait.add_argument("--wait", action="store_true", help="wait for the terminal outcome; exit code per decision")
    wait.add_argument(
        "--timeout", metavar="S", type=_positive, default=300.0, help="seconds --wait waits (default 300)"
    )
    wait.add_argument(
        "--topic", metavar="NAME", default="batch-outcomes", help="outcome topic (default batch-outcomes)"
    )
    wait.add_argument(
        "--subscription", metavar="NAME", default="all-outcomes", help="subscription browsed (default all-outcomes)"
    )
    parser.add_argument(
        "--queue", metavar="NAME", default="batch-commands", help="command queue (default batch-commands)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON: the sent message, or with --wait the outcome")


def _json_object(flag: str) -> Any:
    def parse(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{flag} is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f'{flag} must be a JSON object, e.g. \'{{"state": "completed"}}\'')
        return value

    return parse


def _traceparent(text: str) -> str:
    if not TRACEPARENT.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "expected a W3C traceparent: 00-<32 hex digits>-<16 hex digits>-<2 hex digits>"
        )
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def run(args: argparse.Namespace, client: ServiceBusClient, target: Target) -> int:
    draft = raw_draft(args) if args.raw is not None else command_draft(args)
    if not args.wait:
        _send(client, target, args.queue, draft)
        _print_sent(args, draft)
        return 0
    with (
        talking(target, topic_access(args.topic, args.subscription)),
        client.get_subscription_receiver(args.topic, args.subscription) as receiver,
    ):
        follower = Follower(receiver)
        follower.seek_end()  # before sending: the outcome cannot be missed as "old"
        _send(client, target, args.queue, draft)
        _print_sent(args, draft, stream=sys.stderr if args.json else sys.stdout)
        outcome = wait_for(follower, draft.command_id, args.timeout)
    if outcome is None:
        print(
            f"timeout: no terminal outcome for commandId {draft.command_id} within {args.timeout:g} s "
            f"(the command is on the queue; watch with: batch-lifecycle watch)",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    print(outcome_json(outcome) if args.json else outcome_line(outcome), flush=True)
    return EXIT_FOR_DECISION.get(outcome.decision, 1)


def command_draft(args: argparse.Namespace) -> Draft:
    if args.action is None:
        raise UsageError("send needs an action (one of " + ", ".join(ACTIONS) + ") or --raw FILE")
    if args.message_id is not None:
        raise UsageError("--message-id is for --raw; a command's message_id is its --command-id")
    body = command_body(args)
    command_id = body["commandId"]
    encoded = json.dumps(body, separators=(",", ":")).encode("ascii")
    note = check_locally(body, encoded, command_id)
    if note:
        print(note, file=sys.stderr)
    traceparent = args.traceparent or new_traceparent()
    return Draft(
        body=encoded,
        message_id=command_id,
        command_id=command_id,
        subject=args.action,
        properties={COMMAND_ID_PROPERTY: command_id, "traceparent": traceparent, "Diagnostic-Id": traceparent},
    )


def command_body(args: argparse.Namespace) -> dict[str, Any]:
    """The contract's fields from the flags, in a fixed order; absent flags are left out."""
    body: dict[str, Any] = {"action": args.action}
    body.update({name: getattr(args, flag) for flag, name in _FIELDS if getattr(args, flag) is not None})
    if args.force:
        body["force"] = True
    if args.dry_run:
        body["dryRun"] = True
    body["commandId"] = args.command_id if args.command_id is not None else str(uuid.uuid4())
    body["requestedBy"] = args.requested_by if args.requested_by is not None else f"batch-lifecycle ({_user()})"
    return body


def check_locally(body: dict[str, Any], encoded: bytes, message_id: str) -> str | None:
    """Refuse what the product's parser refuses (nothing is sent); a note when it cannot judge the command.

    Selector commands depend on the server's settings (the scope guard and the limits), and a field or
    action this copy of the contract does not know may be known to a newer server: both go unchecked.
    """
    if any(name in body for name in _SELECTOR_FIELDS):
        return "note: selector commands are checked by the server (its scope guard and limits are server settings)"
    unknown = sorted(set(body) - contract.FIELDS)
    if body.get("action") not in KNOWN_ACTIONS:
        unknown.insert(0, f"action {body.get('action')}")
    if unknown:
        return (
            f"note: this copy of the command contract does not know {', '.join(unknown)}; "
            "sending it unchecked, the server validates it"
        )
    account = body.get("account")
    accounts = {account} if isinstance(account, str) else {_ANY_ACCOUNT}  # only the server knows its aliases
    try:
        contract.parse_command(encoded, message_id, accounts, _ANY_ACCOUNT)
    except contract.InvalidCommand as exc:
        raise CliError("the command breaks the contract, nothing was sent: " + "; ".join(exc.problems)) from None
    return None


def raw_draft(args: argparse.Namespace) -> Draft:
    """The bytes as given; only the message_id is ours to choose."""
    given = [flag for flag in (*_BODY_FLAGS, "traceparent") if _set(args, flag)]
    if given:
        names = ", ".join("--" + flag.replace("_", "-") if flag != "action" else "an action" for flag in given)
        raise UsageError(f"--raw sends the body as given; leave out {names}")
    try:
        body = sys.stdin.buffer.read() if args.raw == "-" else _read_file(args.raw)
    except OSError as exc:
        raise UsageError(f"cannot read --raw {args.raw}: {exc.strerror or exc}") from None
    declared = _declared_command_id(body)
    message_id = args.message_id or declared or str(uuid.uuid4())
    return Draft(body=body, message_id=message_id, command_id=declared or message_id, content_type=None)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _set(args: argparse.Namespace, flag: str) -> bool:
    value = getattr(args, flag)
    return value is not None and value is not False


def _declared_command_id(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    command_id = value.get("commandId") if isinstance(value, dict) else None
    return command_id if isinstance(command_id, str) and command_id else None


def new_traceparent() -> str:
    """A new W3C trace context (sampled), so one trace can follow the command end to end."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown user"


def _send(client: ServiceBusClient, target: Target, queue: str, draft: Draft) -> None:
    message = ServiceBusMessage(
        draft.body,
        message_id=draft.message_id,
        subject=draft.subject,
        correlation_id=draft.command_id if draft.subject is not None else None,
        content_type=draft.content_type,
        application_properties=_properties(draft.properties),
    )
    with talking(target, queue_access(SENDER, queue)), client.get_queue_sender(queue) as sender:
        sender.send_messages(message)


def _properties(given: dict[str, str]) -> dict[str | bytes, Any] | None:
    found: dict[str | bytes, Any] = {}
    for name, value in given.items():
        found[name] = value
    return found or None


def _print_sent(args: argparse.Namespace, draft: Draft, stream: Any = None) -> None:
    stream = stream or sys.stdout
    if args.json and not args.wait:
        try:
            body: Any = json.loads(draft.body)
        except (ValueError, RecursionError):
            body = None
        sent = {"queue": args.queue, "messageId": draft.message_id, "commandId": draft.command_id, "body": body}
        if "traceparent" in draft.properties:
            sent["traceparent"] = draft.properties["traceparent"]
        print(json.dumps(sent, separators=(",", ":")), file=stream, flush=True)
        return
    trace = draft.properties.get("traceparent", "")
    trace_note = f" trace={trace.split('-')[1]}" if trace.count("-") == 3 else ""
    what = f"{len(draft.body)} raw bytes" if args.raw is not None else draft.body.decode("ascii")
    print(f"sent {what} to {args.queue} (message_id={draft.message_id}{trace_note})", file=stream, flush=True)


def wait_for(follower: Follower, command_id: str, timeout: float) -> Outcome | None:
    """The command's terminal outcome; its progress events (retry, expanding) go to stderr as they come."""
    deadline = time.monotonic() + timeout
    for message in follower.follow(deadline):
        outcome = read_outcome(message)
        if not outcome.belongs_to(command_id):
            continue
        if outcome.terminal:
            return outcome
        print(outcome_line(outcome), file=sys.stderr, flush=True)
    return None
