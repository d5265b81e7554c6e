"""``dlq list | redrive | purge``: the command queue's dead-letter sub-queue.

``list`` only browses (peek). ``redrive`` and ``purge`` first browse to fix the set of messages they
act on, then receive the dead-letter queue with peek-lock up to the last of them: a selected message is
settled (redrive: resent first, completed only after the resend succeeded; purge: completed), every
other message received on the way is kept locked so the next receive moves past it, and abandoned at
the end, so it stays in the dead-letter queue. Nothing is removed that was not resent (redrive) or
confirmed (purge); a failure halfway leaves every unsettled message where it was (docs/cli.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError

from cli import arguments
from cli.bus import RECEIVER, SENDER, CliError, Target, UsageError, queue_access, talking
from cli.outcomes import text_properties
from shared.messages import ATTEMPT_PROPERTY, COMMAND_ID_PROPERTY, REDRIVE_PROPERTY, USABLE_ID, body_bytes

DEAD_LETTER_PROPERTIES: Final = ("DeadLetterReason", "DeadLetterErrorDescription")
# Removed from a resent message: the attempt count starts again, and the broker's dead-letter stamps go.
DROPPED_ON_REDRIVE: Final = frozenset({ATTEMPT_PROPERTY, REDRIVE_PROPERTY, *DEAD_LETTER_PROPERTIES})
NO_REASON: Final = "(no reason)"
MAX_MESSAGE_ID: Final = 128  # Service Bus
REDRIVE_SUFFIX: Final = re.compile(r"#redrive-([0-9]{1,9})\Z")
_PEEK_PAGE: Final = 250
_RECEIVE_WAIT: Final = 3.0  # seconds an empty receive waits before the scan ends
_RENEW_MARGIN: Final = timedelta(seconds=20)
_EXAMPLES: Final = 3


@dataclass(frozen=True)
class Dead:
    """What the tool needs to know of one dead-lettered message."""

    sequence_number: int
    message_id: str | None
    reason: str
    description: str
    command_id: str | None
    enqueued: datetime | None
    delivery_count: int = 0


def read_dead(message: ServiceBusReceivedMessage) -> Dead:
    properties = text_properties(message.application_properties)
    reason = message.dead_letter_reason or properties.get("DeadLetterReason") or NO_REASON
    description = message.dead_letter_error_description or properties.get("DeadLetterErrorDescription") or ""
    message_id = str(message.message_id) if message.message_id is not None else None
    command_id = _body_command_id(message) or _text(properties.get(COMMAND_ID_PROPERTY)) or message_id
    return Dead(
        sequence_number=int(message.sequence_number or 0),
        message_id=message_id,
        reason=str(reason),
        description=str(description),
        command_id=command_id,
        enqueued=message.enqueued_time_utc,
        delivery_count=int(message.delivery_count or 0),
    )


def _body_command_id(message: ServiceBusReceivedMessage) -> str | None:
    try:
        value = json.loads(body_bytes(message.body))
    except Exception:  # any body at all can be dead-lettered
        return None
    found = value.get("commandId") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Selection:
    """Which dead-letters: any of the reasons, any of the commandIds (both given: both must match), or all."""

    reasons: frozenset[str] = frozenset()
    command_ids: frozenset[str] = frozenset()
    everything: bool = False

    def picks(self, dead: Dead) -> bool:
        if self.everything:
            return True
        reason_ok = not self.reasons or dead.reason in self.reasons
        id_ok = not self.command_ids or bool({dead.command_id, dead.message_id} & self.command_ids)
        return reason_ok and id_ok

    def describe(self) -> str:
        if self.everything or not (self.reasons or self.command_ids):
            return "all dead-lettered messages"
        parts = []
        if self.reasons:
            parts.append("reason " + " or ".join(sorted(self.reasons)))
        if self.command_ids:
            parts.append("commandId " + " or ".join(sorted(self.command_ids)))
        return "dead-letters with " + " and ".join(parts)


# --- command line -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    commands = parser.add_subparsers(dest="dlq_command", metavar="{list,redrive,purge}")
    commands.required = True
    listing = commands.add_parser(
        "list", help="the dead-letter queue grouped by reason (browse only)", description=LIST_HELP
    )
    listing.add_argument("--messages", action="store_true", help="also list every message, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    add_common(listing)
    listing.set_defaults(dlq_run=run_list)

    redrive = commands.add_parser("redrive", help="resend dead-letters to the queue", description=REDRIVE_HELP)
    which = redrive.add_argument_group("which messages (one at least; --reason and --command-id combine)")
    which.add_argument("--reason", metavar="R", action="append", default=[], help="dead-letter reason (repeatable)")
    which.add_argument(
        "--command-id", metavar="ID", action="append", default=[], help="commandId or message_id (repeatable)"
    )
    which.add_argument("--all", action="store_true", help="every dead-lettered message")
    redrive.add_argument("--dry-run", action="store_true", help="show what would move; change nothing")
    redrive.add_argument(
        "--rate",
        metavar="N",
        type=arguments.rate,
        default=10.0,
        help="at most this many messages per second (default 10; 0 = no cap)",
    )
    redrive.add_argument(
        "--max", type=arguments.whole_number, metavar="N", help="move at most N messages (oldest first)"
    )
    redrive.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_common(redrive)
    redrive.set_defaults(dlq_run=run_redrive)

    purge = commands.add_parser("purge", help="delete dead-letters (asks first)", description=PURGE_HELP)
    purge.add_argument("--reason", metavar="R", action="append", default=[], help="only this reason (repeatable)")
    purge.add_argument(
        "--command-id", metavar="ID", action="append", default=[], help="only this commandId (repeatable)"
    )
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_common(purge)
    purge.set_defaults(dlq_run=run_purge)


LIST_HELP: Final = "Browse the command queue's dead-letter queue; nothing is locked or removed."
REDRIVE_HELP: Final = (
    "Resend selected dead-letters to the command queue with a new message_id (<original>#redrive-<n>) and "
    "no attempt property; each is removed from the dead-letter queue only after its resend succeeded. "
    "Messages not selected stay where they are."
)
PURGE_HELP: Final = (
    "Delete dead-letters from the command queue's dead-letter queue, after confirmation (--yes skips it; "
    "without a terminal, --yes is required)."
)


def run(args: argparse.Namespace, client: ServiceBusClient, target: Target) -> int:
    runner: Callable[[argparse.Namespace, ServiceBusClient, Target], int] = args.dlq_run
    return runner(args, client, target)


def _dead_letter_receiver(client: ServiceBusClient, queue: str) -> ServiceBusReceiver:
    return client.get_queue_receiver(
        queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0
    )


def browse(receiver: ServiceBusReceiver) -> Iterator[ServiceBusReceivedMessage]:
    """Every message of the (dead-letter) queue, oldest first, by peek: nothing is locked."""
    next_sequence = 1
    while True:
        page = receiver.peek_messages(_PEEK_PAGE, sequence_number=next_sequence)
        fresh = [message for message in page if int(message.sequence_number or 0) >= next_sequence]
        if not fresh:
            return
        yield from fresh
        next_sequence = max(int(message.sequence_number or 0) for message in fresh) + 1


# --- list -------------------------------------------------------------------------------------------


@dataclass
class Group:
    reason: str
    count: int = 0
    descriptions: Counter[str] = field(default_factory=Counter)
    command_ids: list[str] = field(default_factory=list)
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, dead: Dead) -> None:
        self.count += 1
        self.descriptions[dead.description] += 1
        if dead.command_id and len(self.command_ids) < _EXAMPLES:
            self.command_ids.append(dead.command_id)
        if dead.enqueued is not None:
            self.oldest = min(self.oldest or dead.enqueued, dead.enqueued)
            self.newest = max(self.newest or dead.enqueued, dead.enqueued)

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "count": self.count,
            "descriptions": [{"description": d, "count": n} for d, n in self.descriptions.most_common(_EXAMPLES)],
            "distinctDescriptions": len(self.descriptions),
            "exampleCommandIds": self.command_ids,
            "oldestEnqueued": _iso(self.oldest),
            "newestEnqueued": _iso(self.newest),
        }


def group(deads: Iterable[Dead]) -> list[Group]:
    groups: dict[str, Group] = {}
    for dead in deads:
        groups.setdefault(dead.reason, Group(dead.reason)).add(dead)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def run_list(args: argparse.Namespace, client: ServiceBusClient, target: Target) -> int:
    with talking(target, queue_access(RECEIVER, args.queue)), _dead_letter_receiver(client, args.queue) as receiver:
        deads = [read_dead(message) for message in browse(receiver)]
    groups = group(deads)
    where = f"{args.queue}/$DeadLetterQueue"
    if args.json:
        document: dict[str, Any] = {"queue": args.queue, "total": len(deads), "reasons": [g.to_json() for g in groups]}
        if args.messages:
            document["messages"] = [_dead_json(dead) for dead in deads]
        print(json.dumps(document, indent=2))
        return 0
    print(f"{where}: {len(deads)} message{'s' if len(deads) != 1 else ''}")
    for g in groups:
        span = f"  enqueued {_iso(g.oldest)}" if g.oldest else ""
        span += f" .. {_iso(g.newest)}" if g.newest and _iso(g.newest) != _iso(g.oldest) else ""
        print(f"{g.count:>7}  {g.reason}{span}")
        for description, count in g.descriptions.most_common(_EXAMPLES):
            print(f"{'':>9}{count:>5} x {_short(description) or '(no description)'}")
        if len(g.descriptions) > _EXAMPLES:
            print(f"{'':>9}... {len(g.descriptions) - _EXAMPLES} more distinct descriptions")
        if g.command_ids:
            print(f"{'':>9}e.g. commandId {', '.join(g.command_ids)}")
    if args.messages:
        print()
        for dead in deads:
            print(_dead_line(dead))
    return 0


def _dead_json(dead: Dead) -> dict[str, Any]:
    return {
        "sequenceNumber": dead.sequence_number,
        "messageId": dead.message_id,
        "commandId": dead.command_id,
        "reason": dead.reason,
        "description": dead.description,
        "enqueued": _iso(dead.enqueued),
        "deliveryCount": dead.delivery_count,
    }


def _dead_line(dead: Dead) -> str:
    return (
        f"seq={dead.sequence_number} {dead.reason} commandId={dead.command_id} message_id={dead.message_id} "
        f"- {_short(dead.description)}"
    )


def _short(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- moving -----------------------------------------------------------------------------------------


class Skip(Exception):
    """A selected message the action leaves unsettled (it stays in, or returns to, the dead-letter queue)."""

    def __init__(self, why: str, *, still_locked: bool = True) -> None:
        super().__init__(why)
        self.still_locked = still_locked


def redrive_id(original: str | None, sequence_number: int) -> str:
    """``<original>#redrive-<n>``: n is one more than the redrive count the original id already carries.

    Deterministic, so a redrive that is repeated after a failure (resent, but not yet removed from the
    dead-letter queue) sends the same id again and the queue's duplicate detection drops the repeat.
    Bounded to Service Bus's 128 characters: a longer base is shortened and made unique by a digest.
    """
    base = original if original else f"seq-{sequence_number}"
    generation = 1
    match = REDRIVE_SUFFIX.search(base)
    if match:
        base, generation = base[: match.start()], int(match.group(1)) + 1
    suffix = f"#redrive-{generation}"
    if len(base) + len(suffix) > MAX_MESSAGE_ID:
        digest = hashlib.sha256(base.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        base = f"{base[: MAX_MESSAGE_ID - len(suffix) - len(digest) - 1]}~{digest}"
    return base + suffix


def keep_command_id(body: bytes, original_id: str | None) -> bytes:
    """The body, with ``commandId`` added when it relied on the old message_id for it.

    A command without a ``commandId`` field takes the message_id as its commandId; the resend has a new
    message_id, so the field keeps the command's identity (and its outcomes' ids). Other bodies are
    sent byte for byte.
    """
    if original_id is None or not USABLE_ID.fullmatch(original_id):
        return body
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return body
    if not isinstance(value, dict) or "commandId" in value:
        return body
    inner = body.rstrip()
    if not inner.endswith(b"}"):
        return body
    inner = inner[:-1].rstrip()
    separator = b"" if inner.endswith(b"{") else b","
    return inner + separator + b'"commandId":' + json.dumps(original_id).encode("ascii") + b"}"


def resend_copy(message: ServiceBusReceivedMessage, dead: Dead) -> ServiceBusMessage:
    if message.body_type != AmqpMessageBodyType.DATA:
        raise Skip(f"its body is an AMQP {message.body_type.value}, not data; it cannot be resent as it was")
    properties: dict[str | bytes, Any] = {
        name: _decoded(value)
        for name, value in text_properties_raw(message.application_properties).items()
        if name not in DROPPED_ON_REDRIVE
    }
    message_id = redrive_id(dead.message_id, dead.sequence_number)
    generation = REDRIVE_SUFFIX.search(message_id)
    # The processor gives a redrive generation ids of its own (retry copies, outcomes): duplicate detection
    # then keeps them even inside the window of the original run (shared/messages.py REDRIVE_PROPERTY).
    properties[REDRIVE_PROPERTY] = int(generation.group(1)) if generation else 1
    return ServiceBusMessage(
        keep_command_id(body_bytes(message.body), dead.message_id),
        message_id=message_id,
        subject=message.subject,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        reply_to=message.reply_to,
        to=message.to,
        application_properties=properties,
    )


def text_properties_raw(properties: Mapping[Any, Any] | None) -> dict[str, Any]:
    """Keys as text, values untouched."""
    return {
        (key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)): value
        for key, value in (properties or {}).items()
    }


def _decoded(value: Any) -> Any:
    """The SDK hands out string properties as bytes: send them back as strings when they are UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


class Pacer:
    """At most ``rate`` sends per second: consecutive sends start at least 1/rate seconds apart."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._last: float | None = None

    def wait(self, meanwhile: Callable[[], None]) -> None:
        if self._interval and self._last is not None:
            due = self._last + self._interval
            while (left := due - self._clock()) > 0:
                meanwhile()
                time.sleep(min(left, 1.0))
        self._last = self._clock()


@dataclass
class Result:
    settled: list[Dead] = field(default_factory=list)
    skipped: list[tuple[Dead, str]] = field(default_factory=list)
    not_reached: list[Dead] = field(default_factory=list)  # never acted on: not received, or the run stopped


class Scan:
    """Peek-lock receive up to the last wanted message; settle each wanted one with ``act``.

    ``act`` settles the message, raises ``Skip`` to leave it, or raises anything else to stop the scan.
    Messages received on the way that are not wanted stay locked (so the next receive moves past them),
    their locks renewed while the scan lasts, and are abandoned at the end: back into the queue, as they
    were. Whatever is still locked when the scan stops, for any reason, is abandoned too (or, when the
    connection is gone, its lock lapses): nothing unsettled is lost.
    """

    def __init__(
        self,
        receiver: ServiceBusReceiver,
        wanted: Mapping[int, Dead],
        act: Callable[[ServiceBusReceivedMessage, Dead], None],
        batch: int = 50,
    ) -> None:
        self._receiver = receiver
        self._remaining = dict(wanted)
        self._act = act
        self._batch = batch
        self._locked: dict[int, ServiceBusReceivedMessage] = {}
        self.result = Result()

    def run(self) -> Result:
        try:
            self._scan()
        finally:
            self._release()
            self.result.not_reached = sorted(self._remaining.values(), key=lambda dead: dead.sequence_number)
        return self.result

    def _scan(self) -> None:
        while self._remaining:
            received = self._receiver.receive_messages(max_message_count=self._batch, max_wait_time=_RECEIVE_WAIT)
            if not received:
                return  # the rest of the selection is gone, or locked by another receiver
            last_wanted = max(self._remaining)
            passed = False
            batch = {int(message.sequence_number or 0): message for message in received}
            self._locked.update(batch)  # all of them, before acting: a failure must release the whole batch
            for sequence, message in batch.items():
                dead = self._remaining.get(sequence)
                if dead is None:
                    passed = passed or sequence > last_wanted
                    continue
                try:
                    self._act(message, dead)
                except Skip as exc:
                    self.result.skipped.append((dead, str(exc)))
                    if not exc.still_locked:
                        del self._locked[sequence]
                else:
                    del self._locked[sequence]
                    self.result.settled.append(dead)
                del self._remaining[sequence]
            if passed:
                return  # past the last wanted message: the rest of the selection is not available

    def renew_locks(self) -> None:
        """Renew the locks that would lapse soon (a slow, rate-capped redrive holds them for long)."""
        soon = datetime.now(UTC) + _RENEW_MARGIN
        for sequence, message in list(self._locked.items()):
            until = message.locked_until_utc
            if until is not None and until <= soon:
                try:
                    self._receiver.renew_message_lock(message)
                except ServiceBusError:
                    self._locked.pop(sequence, None)  # lapsed: it is back in the queue anyway

    def _release(self) -> None:
        """Abandon what is still locked; if that fails (connection gone), the locks lapse on their own."""
        for message in self._locked.values():
            try:
                self._receiver.abandon_message(message)
            except MessageLockLostError:
                continue  # lapsed already: it is back in the queue
            except Exception:  # each further attempt would fail alike, after its retries
                break
        self._locked.clear()


def _select(receiver: ServiceBusReceiver, selection: Selection, limit: int | None) -> list[Dead]:
    chosen = []
    for message in browse(receiver):
        dead = read_dead(message)
        if selection.picks(dead):
            chosen.append(dead)
            if limit is not None and len(chosen) >= limit:
                break
    return chosen


def _selection(args: argparse.Namespace, require: bool) -> Selection:
    reasons, ids = frozenset(args.reason), frozenset(args.command_id)
    everything = bool(getattr(args, "all", False))
    if everything and (reasons or ids):
        raise UsageError("--all selects every message; leave out --reason and --command-id")
    if require and not (everything or reasons or ids):
        raise UsageError("say which dead-letters: --reason R, --command-id ID or --all")
    return Selection(reasons, ids, everything)


def _counts(deads: Iterable[Dead]) -> str:
    counts = Counter(dead.reason for dead in deads)
    return ", ".join(f"{reason}: {count}" for reason, count in counts.most_common()) or "none"


# --- redrive ----------------------------------------------------------------------------------------


def run_redrive(args: argparse.Namespace, client: ServiceBusClient, target: Target) -> int:
    selection = _selection(args, require=True)
    with talking(target, queue_access(RECEIVER, args.queue)), _dead_letter_receiver(client, args.queue) as receiver:
        chosen = _select(receiver, selection, args.max)
        if args.dry_run or not chosen:
            return _report_plan(args, selection, chosen)
        with talking(target, queue_access(SENDER, args.queue)), client.get_queue_sender(args.queue) as sender:
            redrive = Redrive(args, target, receiver, sender)
            try:
                failure = redrive.run(chosen)
            finally:  # also on Ctrl-C; and before closing, which a broken connection could make fail
                redrive.report(chosen)
    if failure is not None:
        raise failure
    return 0


class Redrive:
    """Resend, then complete, one message at a time at the capped rate; the first failure stops it."""

    def __init__(
        self, args: argparse.Namespace, target: Target, receiver: ServiceBusReceiver, sender: ServiceBusSender
    ) -> None:
        self._args = args
        self._target = target
        self._receiver = receiver
        self._sender = sender
        self._pacer = Pacer(args.rate)
        self.resent: dict[int, str] = {}  # sequence number -> the resend's message_id
        self.result = Result()
        self._scan: Scan | None = None

    def run(self, chosen: list[Dead]) -> CliError | None:
        batch = 50 if not self._args.rate else max(1, min(50, int(self._args.rate * 10)))
        self._scan = Scan(self._receiver, {dead.sequence_number: dead for dead in chosen}, self._move, batch)
        try:
            with talking(self._target, queue_access(RECEIVER, self._args.queue)):
                self._scan.run()
        except CliError as exc:
            return exc
        finally:
            self.result = self._scan.result
        return None

    def _move(self, message: ServiceBusReceivedMessage, dead: Dead) -> None:
        copy = resend_copy(message, dead)
        self._pacer.wait(self._renew_locks)
        with talking(self._target, queue_access(SENDER, self._args.queue)):
            self._sender.send_messages(copy)
        self.resent[dead.sequence_number] = str(copy.message_id)
        if not self._args.json:
            print(f"moved seq={dead.sequence_number} {dead.reason} {dead.message_id} -> {copy.message_id}", flush=True)
        try:  # only now, after the resend succeeded
            self._receiver.complete_message(message)
        except MessageLockLostError:
            raise Skip("resent, but its lock lapsed before it could be removed", still_locked=False) from None

    def _renew_locks(self) -> None:
        if self._scan is not None:
            self._scan.renew_locks()

    def report(self, chosen: list[Dead]) -> None:
        args, result = self._args, self.result
        moved = result.settled
        removed = {dead.sequence_number for dead in moved}
        doubtful = [
            dead for dead in chosen if dead.sequence_number in self.resent and dead.sequence_number not in removed
        ]
        skipped = [(dead, why) for dead, why in result.skipped if dead.sequence_number not in self.resent]
        left = len(chosen) - len(moved)
        if args.json:
            summary = {
                "selected": len(chosen),
                "moved": [_dead_json(d) | {"newMessageId": self.resent[d.sequence_number]} for d in moved],
                "resentNotRemoved": [
                    _dead_json(d) | {"newMessageId": self.resent[d.sequence_number]} for d in doubtful
                ],
                "skipped": [_dead_json(d) | {"why": why} for d, why in skipped],
                "notMoved": [_dead_json(d) for d in result.not_reached],
            }
            print(json.dumps(summary, indent=2))
            return
        for dead, why in skipped:
            print(f"skipped seq={dead.sequence_number} {dead.message_id}: {why}; it stays in the dead-letter queue")
        for dead in doubtful:
            print(
                f"resent seq={dead.sequence_number} {dead.message_id} as {self.resent[dead.sequence_number]}, "
                "but it is still in the dead-letter queue: redrive it again (the repeat has the same message_id, "
                "which duplicate detection drops)"
            )
        print(
            f"moved {len(moved)} of {len(chosen)} selected message{'s' if len(chosen) != 1 else ''} "
            f"({_counts(moved)}) from {args.queue}/$DeadLetterQueue to {args.queue}"
            + (f"; {left} still in the dead-letter queue" if left else ""),
            flush=True,
        )


def _report_plan(args: argparse.Namespace, selection: Selection, chosen: list[Dead]) -> int:
    new_ids = {dead.sequence_number: redrive_id(dead.message_id, dead.sequence_number) for dead in chosen}
    if args.json:
        plan = {
            "dryRun": bool(args.dry_run),
            "selection": selection.describe(),
            "wouldMove": [_dead_json(dead) | {"newMessageId": new_ids[dead.sequence_number]} for dead in chosen],
        }
        print(json.dumps(plan, indent=2))
        return 0
    if not chosen:
        print(f"nothing to move: no {selection.describe()} in {args.queue}/$DeadLetterQueue")
        return 0
    for dead in chosen:
        print(
            f"would move seq={dead.sequence_number} {dead.reason} {dead.message_id} -> {new_ids[dead.sequence_number]}"
        )
    print(
        f"dry run: would move {len(chosen)} message{'s' if len(chosen) != 1 else ''} ({_counts(chosen)}) "
        f"from {args.queue}/$DeadLetterQueue to {args.queue}; nothing changed"
    )
    return 0


# --- purge ------------------------------------------------------------------------------------------


def run_purge(args: argparse.Namespace, client: ServiceBusClient, target: Target) -> int:
    selection = _selection(args, require=False)
    if not args.yes and not sys.stdin.isatty():
        raise CliError("refusing to purge without confirmation: standard input is not a terminal; pass --yes")
    where = f"{args.queue}/$DeadLetterQueue"
    with talking(target, queue_access(RECEIVER, args.queue)), _dead_letter_receiver(client, args.queue) as receiver:
        chosen = _select(receiver, selection, None)
        if not chosen:
            print(f"nothing to purge: no {selection.describe()} in {where}")
            return 0
        if not args.yes and not _confirm(f"Delete {len(chosen)} message(s) ({_counts(chosen)}) from {where}?"):
            print("nothing purged", file=sys.stderr)
            return 1

        def delete(message: ServiceBusReceivedMessage, dead: Dead) -> None:
            try:
                receiver.complete_message(message)
            except MessageLockLostError:
                raise Skip("its lock lapsed before it could be removed", still_locked=False) from None

        scan = Scan(receiver, {dead.sequence_number: dead for dead in chosen}, delete)
        try:
            scan.run()
        finally:
            _report_purge(args, where, chosen, scan.result)
    return 0


def _report_purge(args: argparse.Namespace, where: str, chosen: list[Dead], result: Result) -> None:
    if args.json:
        summary = {
            "selected": len(chosen),
            "purged": [_dead_json(d) for d in result.settled],
            "notPurged": [_dead_json(d) for d in result.not_reached + [dead for dead, _ in result.skipped]],
        }
        print(json.dumps(summary, indent=2))
        return
    left = len(chosen) - len(result.settled)
    print(
        f"purged {len(result.settled)} of {len(chosen)} selected message(s) ({_counts(result.settled)}) from {where}"
        + (f"; {left} not purged" if left else ""),
        flush=True,
    )


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
