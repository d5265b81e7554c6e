"""Plain records of what the chaos run sent and what it observed; the checks work on these only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

TERMINAL: Final = frozenset({"succeeded", "alreadyDone", "deadLetter"})
CHAOS_KEY: Final = "chaosKey"  # application property on every message the suite sends
# Every id in a malformed body that could pass the id rule starts with this; no valid command uses it.
FUZZ_PREFIX: Final = "fuzz"
VALID_PREFIX: Final = "cc-"


@dataclass(frozen=True)
class ValidCommand:
    """A well-formed command; ``message_id`` is its commandId (as producers should send it)."""

    command_id: str
    action: str
    job_id: str
    task_id: str | None
    dry_run: bool = False


@dataclass(frozen=True)
class MalformedMessage:
    """One generated message that breaks the contract.

    ``candidates`` are the commandIds its outcome may carry (the body's commandId when it is a string,
    the message_id as text, the SHA-256 digest the processor falls back to); ``kept`` are the body's
    fields that on their own obey their rule, which an invalid message's outcome should keep.
    """

    key: str
    category: str
    message_id: object
    body_kind: str  # data | value | sequence
    body: object
    properties: dict[Any, Any] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()
    kept: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class OutcomeRecord:
    """One distinct topic message as a subscriber received it (redeliveries removed by sequence number)."""

    sequence_number: int
    message_id: str
    properties: dict[str, Any]
    event: dict[str, Any]

    @property
    def command_id(self) -> str:
        return str(self.event.get("commandId"))

    @property
    def decision(self) -> str:
        return str(self.event.get("decision"))


@dataclass(frozen=True)
class DeadLetterRecord:
    sequence_number: int
    message_id: str
    reason: str | None
    description: str | None
    chaos_key: str | None
    command_id: str | None = None  # the commandId application property (retry copies carry it)
    delivery_count: int = 0


@dataclass(frozen=True)
class BatchCall:
    method: str
    path: str
    job_id: str
    client_request_id: str


@dataclass
class Sent:
    valid: list[ValidCommand] = field(default_factory=list)
    resent: set[str] = field(default_factory=set)  # commandIds sent twice (new message_id)
    malformed: list[MalformedMessage] = field(default_factory=list)
    unsendable: list[MalformedMessage] = field(default_factory=list)  # the SDK refused to encode them


@dataclass
class Observed:
    outcomes: list[OutcomeRecord] = field(default_factory=list)
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)
    batch_calls: list[BatchCall] = field(default_factory=list)
