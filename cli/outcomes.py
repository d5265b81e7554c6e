"""Outcome events: follow a topic subscription without taking anything from it, and print them.

The tool reads the deployed ``all-outcomes`` subscription by *browsing* (peek): it locks, receives and
removes nothing, so whatever else reads that subscription, and the week of history it keeps, are left
as they are, and no subscription has to be created in Azure. A browse sees only what is still in the
subscription: a reader that receives and completes events (a consumer of ``all-outcomes``) takes them
within milliseconds, before any poll sees them (docs/cli.md). ``OutcomeBrowser`` is such a display
reader that browses instead, for the local host's outcome printer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from shared.messages import UnreadableBody, body_bytes

TERMINAL: Final = ("succeeded", "alreadyDone", "deadLetter")
_PAGE: Final = 100
log = logging.getLogger("cli.outcomes")


class Follower:
    """Browses a subscription from a sequence number onwards, page by page, as messages arrive."""

    def __init__(self, receiver: ServiceBusReceiver, poll: float = 0.2) -> None:
        self._receiver = receiver
        self._poll = poll
        self.next_sequence = 1

    def seek_start(self) -> None:
        """From the oldest event the subscription still holds."""
        self.next_sequence = 1

    def seek_end(self) -> None:
        """Past the newest event: only events that arrive from now on are seen.

        Peek has no "last message" call, so this finds the newest sequence number by galloping and then
        bisecting with one-message peeks: about 2 x log2(sequence numbers in the subscription) round trips.
        """
        last = self._first_from(1)
        if last is None:  # empty: whatever arrives from now on is new
            self.next_sequence = 1
            return
        step = 1
        while (found := self._first_from(last + step)) is not None:
            last = found
            step *= 2
        beyond = last + step  # a message at `last`, none at `beyond` or later
        while beyond - last > 1:
            middle = (last + beyond) // 2
            found = self._first_from(middle)
            if found is None or found >= beyond:
                beyond = middle
            else:
                last = found
        self.next_sequence = last + 1

    def _first_from(self, sequence_number: int) -> int | None:
        found = self._receiver.peek_messages(1, sequence_number=sequence_number)
        return _sequence(found[0]) if found else None

    def take(self) -> list[ServiceBusReceivedMessage]:
        """The next page of messages that arrived since the last call (possibly none)."""
        page = self._receiver.peek_messages(_PAGE, sequence_number=self.next_sequence)
        fresh = [message for message in page if _sequence(message) >= self.next_sequence]
        if fresh:
            self.next_sequence = max(_sequence(message) for message in fresh) + 1
        return fresh

    def follow(self, deadline: float | None = None) -> Iterator[ServiceBusReceivedMessage]:
        """Messages as they arrive, until ``deadline`` (time.monotonic()) or forever."""
        while deadline is None or time.monotonic() < deadline:
            page = self.take()
            yield from page
            if len(page) < _PAGE:
                pause = self._poll if deadline is None else min(self._poll, max(0.0, deadline - time.monotonic()))
                time.sleep(pause)


class OutcomeBrowser:
    """Hands every new outcome event to ``on_message`` without taking it from the subscription.

    A background thread that browses the subscription from its newest event on, across peer restarts:
    the same interface as ``local.outcomes.OutcomeListener``, but nothing is received or completed, so
    any number of readers (this one, ``batch-lifecycle watch``, ``send --wait``) all see every event.
    """

    def __init__(
        self,
        connection_string: str,
        topic: str,
        on_message: Callable[[ServiceBusReceivedMessage], None],
        subscription: str = "all-outcomes",
        poll: float = 0.2,
    ) -> None:
        self._connection_string = connection_string
        self._topic = topic
        self._subscription = subscription
        self._on_message = on_message
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"browse:{subscription}", daemon=True)
        self._started = threading.Event()

    def start(self) -> OutcomeBrowser:
        """Returns once the newest event is found: every event published from now on is handed over."""
        self._thread.start()
        self._started.wait(timeout=30)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        next_sequence: int | None = None
        while not self._stop.is_set():
            try:
                with (
                    ServiceBusClient.from_connection_string(self._connection_string) as client,
                    client.get_subscription_receiver(self._topic, self._subscription) as receiver,
                ):
                    follower = Follower(receiver, self._poll)
                    follower.seek_end()
                    if next_sequence is not None:  # reconnected: go on where it stopped ...
                        # ... unless the peer restarted empty (its numbers start again): all it holds is new
                        follower.next_sequence = next_sequence if follower.next_sequence >= next_sequence else 1
                    self._started.set()
                    while not self._stop.is_set():
                        page = follower.take()
                        for message in page:
                            self._on_message(message)
                        next_sequence = follower.next_sequence
                        if not page:
                            self._stop.wait(self._poll)
            except ServiceBusError as exc:
                log.info("outcome browser reconnecting after %s", type(exc).__name__)
                self._started.set()
                self._stop.wait(0.5)


def _sequence(message: ServiceBusReceivedMessage) -> int:
    return int(message.sequence_number or 0)


def text_properties(properties: Mapping[Any, Any] | None) -> dict[str, Any]:
    """Application properties with text keys (the SDK hands out bytes keys and values)."""
    result: dict[str, Any] = {}
    for key, value in (properties or {}).items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        result[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return result


@dataclass(frozen=True)
class Outcome:
    """One outcome event as read from the topic: its body (None if unreadable) and its properties."""

    message_id: str
    correlation_id: str | None
    properties: Mapping[str, Any]
    event: Mapping[str, Any] | None
    enqueued: datetime | None

    @property
    def decision(self) -> str:
        return str(self.properties.get("decision") or self._field("decision") or "?")

    @property
    def action(self) -> str:
        return str(self.properties.get("action") or self._field("action") or "")

    @property
    def job_id(self) -> str:
        return str(self.properties.get("jobId") or self._field("jobId") or "")

    @property
    def command_id(self) -> str:
        return str(self._field("commandId") or self.correlation_id or "")

    @property
    def terminal(self) -> bool:
        return self.decision in TERMINAL

    def _field(self, name: str) -> Any:
        return self.event.get(name) if self.event is not None else None

    def belongs_to(self, command_id: str) -> bool:
        return self.correlation_id == command_id or (self.correlation_id is None and self.command_id == command_id)


def read_outcome(message: ServiceBusReceivedMessage) -> Outcome:
    event: Mapping[str, Any] | None
    try:
        value = json.loads(body_bytes(message.body))
        event = value if isinstance(value, dict) else None
    except (UnreadableBody, ValueError, RecursionError):
        event = None
    correlation = message.correlation_id
    return Outcome(
        message_id=str(message.message_id),
        correlation_id=str(correlation) if correlation is not None else None,
        properties=text_properties(message.application_properties),
        event=event,
        enqueued=message.enqueued_time_utc,
    )


@dataclass(frozen=True)
class Filter:
    """Any of the given values per field (case-sensitive, as the contract's values); empty = any."""

    decisions: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    jobs: frozenset[str] = frozenset()

    @classmethod
    def of(cls, decisions: Iterable[str], actions: Iterable[str], jobs: Iterable[str]) -> Filter:
        return cls(_split(decisions), _split(actions), _split(jobs))

    def __call__(self, outcome: Outcome) -> bool:
        return (
            (not self.decisions or outcome.decision in self.decisions)
            and (not self.actions or outcome.action in self.actions)
            and (not self.jobs or outcome.job_id in self.jobs)
        )


def _split(values: Iterable[str]) -> frozenset[str]:
    return frozenset(part.strip() for value in values for part in value.split(",") if part.strip())


def outcome_json(outcome: Outcome) -> str:
    """The event as published (ASCII JSON, one line); an unreadable one as a small stand-in object."""
    if outcome.event is not None:
        return json.dumps(outcome.event, separators=(",", ":"))
    return json.dumps({"messageId": outcome.message_id, "unreadable": True}, separators=(",", ":"))


def outcome_line(outcome: Outcome) -> str:
    """One human line: when, decision, action, target, then what Batch answered."""
    event = outcome.event
    when = _when(event, outcome.enqueued)
    if event is None:
        return f"{when}  ?           message {outcome.message_id}: the body is not a JSON object"
    if outcome.decision == "summary" or (event.get("event") and not event.get("action")):
        return f"{when}  summary     {_summary(event)}"
    target = "/".join(str(part) for part in (event.get("jobId"), event.get("taskId")) if part) or "-"
    batch_error = event.get("batchError") if isinstance(event.get("batchError"), dict) else {}
    code = (batch_error or {}).get("code") or event.get("deadLetterReason")
    details: list[Any] = [f"attempt={event.get('attempt')}"]
    if event.get("httpStatus") is not None:
        details.append(f"http={event.get('httpStatus')}")
    details += [code, f"retryAt={event['retryAt']}" if event.get("retryAt") else None]
    fan_out = event.get("fanOut")
    if isinstance(fan_out, dict):
        details.append("fanOut " + " ".join(f"{key}={value}" for key, value in fan_out.items() if key != "targets"))
    details += ["(dry run)" if event.get("dryRun") else None, f"commandId={outcome.command_id}"]
    unexplained = event.get("httpStatus") is None and outcome.decision == "deadLetter"
    if event.get("detail") and (unexplained or event.get("dryRun")):
        # Batch was never called (say what is wrong), or a dry run (say what the real call would get and why).
        details.append(f"- {str(event.get('detail'))[:300]}")
    tail = " ".join(str(part) for part in details if part)
    return f"{when}  {outcome.decision:<11} {outcome.action or '-':<14} {target:<28} {tail}"


def _summary(event: Mapping[str, Any]) -> str:
    name = str(event.get("event") or "summary")
    fields = " ".join(f"{key}={value}" for key, value in event.items() if key != "event" and _scalar(value))
    return f"{name} {fields}"[:400]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _when(event: Mapping[str, Any] | None, enqueued: datetime | None) -> str:
    moment: datetime | None = None
    text = event.get("occurredAt") if event is not None else None
    if isinstance(text, str):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
    moment = moment or enqueued
    if moment is None:
        return "-" * 20
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
