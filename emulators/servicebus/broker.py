"""Service Bus semantics over the store: send, fan-out, locks, settlement, scheduling, expiry.

Independent of AMQP: the protocol layer hands in encoded messages and lock tokens and gets back
encoded messages to deliver. All methods run on the reactor thread except ``inspect``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import message as amqp_message
from .config import Entity, PeerConfig
from .store import ACTIVE, DEFERRED, SCHEDULED, NewMessage, Row, Store

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
TTL_REASON = "TTLExpiredException"
_STATE_NAMES = {ACTIVE: "active", DEFERRED: "deferred", SCHEDULED: "scheduled"}


class BrokerError(Exception):
    """A refusal the protocol layer reports with an AMQP error condition."""

    condition = "amqp:internal-error"
    status = 500


class EntityNotFound(BrokerError):
    condition = "amqp:not-found"
    status = 404


class LockLost(BrokerError):
    condition = "com.microsoft:message-lock-lost"
    status = 410


class MessageNotFound(BrokerError):
    condition = "com.microsoft:message-not-found"
    status = 404


class BadRequest(BrokerError):
    condition = "com.microsoft:argument-error"
    status = 400


@dataclass(frozen=True)
class Target:
    """A receivable (or, for a topic, sendable) node: an entity or its dead-letter sub-queue."""

    entity: Entity
    dlq: bool = False

    @property
    def key(self) -> tuple[str, bool]:
        return (self.entity.path, self.dlq)


@dataclass(frozen=True)
class Delivery:
    lock_token: uuid.UUID | None  # None for receive-and-delete
    payload: bytes


class Broker:
    def __init__(self, config: PeerConfig, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._store = store
        self._clock = clock
        self._ready: set[tuple[str, bool]] = set()

    # -- addressing --------------------------------------------------------------------------

    def resolve(self, address: str) -> Target:
        """The node for a path such as ``q`` or ``t/Subscriptions/s/$DeadLetterQueue``."""
        path = address.strip("/")
        dlq = path.lower().endswith(DEAD_LETTER_SUFFIX)
        if dlq:
            path = path[: -len(DEAD_LETTER_SUFFIX)]
        entity = self.config.find(path)
        if entity is None or (dlq and entity.kind == "topic"):
            raise EntityNotFound(f"The messaging entity '{address}' could not be found.")
        return Target(entity, dlq)

    def take_ready(self) -> set[tuple[str, bool]]:
        """Nodes that gained deliverable messages since the last call."""
        ready, self._ready = self._ready, set()
        return ready

    # -- sending -----------------------------------------------------------------------------

    def send(self, target: Target, payloads: Sequence[bytes]) -> list[int]:
        """Enqueue messages (scheduled when they carry a scheduled enqueue time); their sequence numbers."""
        if target.dlq or target.entity.kind == "subscription":
            raise BadRequest(f"Cannot send to '{target.entity.path}'.")
        now = self._clock()
        with self._store.transaction():
            return [self._accept(target.entity, amqp_message.parse(p), now) for p in payloads]

    def _accept(self, entity: Entity, parsed: amqp_message.ParsedMessage, now: float) -> int:
        props = entity.props
        duplicate_checked = props.requires_duplicate_detection and parsed.message_id is not None
        if duplicate_checked and self._store.seen_recently(
            entity.path, str(parsed.message_id), now, props.duplicate_window
        ):
            return 0
        if parsed.scheduled_at is not None and parsed.scheduled_at > now:
            return self._store.insert(
                NewMessage(entity.path, SCHEDULED, parsed.payload, parsed.message_id, now, parsed.scheduled_at, None)
            )
        return self._enqueue(entity, parsed, now)

    def _enqueue(self, entity: Entity, parsed: amqp_message.ParsedMessage, now: float) -> int:
        if entity.kind != "topic":
            return self._insert_active(entity, parsed, now, entity.props.default_ttl)
        seq = 0
        for path in entity.subscriptions:
            sub = self.config.entities[path.lower()]
            if sub.accepts(parsed.view):
                ttl = _min_ttl(entity.props.default_ttl, sub.props.default_ttl)
                seq = self._insert_active(sub, parsed, now, ttl)
        return seq

    def _insert_active(self, entity: Entity, parsed: amqp_message.ParsedMessage, now: float, ttl: float | None) -> int:
        ttl = _min_ttl(parsed.ttl, ttl)
        expires = now + ttl if ttl is not None else None
        self._ready.add((entity.path, False))
        return self._store.insert(
            NewMessage(entity.path, ACTIVE, parsed.payload, parsed.message_id, now, None, expires)
        )

    def cancel_scheduled(self, target: Target, seqs: Sequence[int]) -> None:
        with self._store.transaction():
            for row in self._store.by_seq(target.entity.path, False, seqs):
                if row.state == SCHEDULED:
                    self._store.delete(row.seq)

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, target: Target, limit: int, peek_lock: bool) -> list[Delivery]:
        now = self._clock()
        with self._store.transaction():
            rows = self._store.available(target.entity.path, target.dlq, limit, now)
            return [self._hand_out(target, row, peek_lock, now) for row in rows]

    def _hand_out(self, target: Target, row: Row, peek_lock: bool, now: float) -> Delivery:
        if not peek_lock:
            self._store.delete(row.seq)
            return Delivery(None, self._render(row, None, None))
        token = uuid.uuid4()
        until = now + target.entity.props.lock_duration
        self._store.update(row.seq, lock_token=str(token), locked_until=until)
        return Delivery(token, self._render(row, token, until))

    def _render(self, row: Row, token: uuid.UUID | None, until: float | None) -> bytes:
        info = amqp_message.Stamp(row.seq, row.enqueued_at, row.delivery_count, row.state, token, until)
        return amqp_message.stamp(row.payload, info)

    def peek(self, target: Target, first: int, count: int) -> list[bytes]:
        with self._store.transaction():
            rows = self._store.from_seq(target.entity.path, target.dlq, first, count)
            return [self._render(row, None, None) for row in rows]

    def receive_deferred(self, target: Target, seqs: Sequence[int], peek_lock: bool) -> list[Delivery]:
        now = self._clock()
        with self._store.transaction():
            rows = [r for r in self._store.by_seq(target.entity.path, target.dlq, seqs) if r.state == DEFERRED]
            if len(rows) != len(set(seqs)) or any(r.lock_token for r in rows):
                raise MessageNotFound("One or more messages are missing, not deferred, or already locked.")
            return [self._hand_out(target, row, peek_lock, now) for row in rows]

    # -- settlement --------------------------------------------------------------------------

    def _locked(self, target: Target, token: uuid.UUID | str | None) -> Row:
        row = self._store.by_lock(str(token)) if token is not None else None
        if row is None or row.entity != target.entity.path or row.dlq != target.dlq:
            raise LockLost("The lock supplied is invalid: it expired, or the message was already settled.")
        if row.locked_until is not None and row.locked_until <= self._clock():
            raise LockLost("The lock supplied has expired.")
        return row

    def complete(self, target: Target, token: uuid.UUID | str | None) -> None:
        with self._store.transaction():
            self._store.delete(self._locked(target, token).seq)

    def abandon(self, target: Target, token: uuid.UUID | str | None) -> None:
        with self._store.transaction():
            self._give_back(target.entity, self._locked(target, token))

    def release(self, target: Target, token: uuid.UUID | str | None) -> None:
        """A delivery the client never handed to the application: unlocked without counting it."""
        with self._store.transaction():
            row = self._locked(target, token)
            self._store.update(row.seq, lock_token=None, locked_until=None)
            self._ready.add((row.entity, row.dlq))

    def defer(self, target: Target, token: uuid.UUID | str | None) -> None:
        with self._store.transaction():
            row = self._locked(target, token)
            self._store.update(row.seq, state=DEFERRED, lock_token=None, locked_until=None)

    def dead_letter(
        self, target: Target, token: uuid.UUID | str | None, reason: str | None, description: str | None
    ) -> None:
        with self._store.transaction():
            self._move_to_dead_letter(self._locked(target, token), reason, description)

    def renew(self, target: Target, tokens: Sequence[uuid.UUID | str | None]) -> list[float]:
        with self._store.transaction():
            rows = [self._locked(target, token) for token in tokens]
            until = self._clock() + target.entity.props.lock_duration
            for row in rows:
                self._store.update(row.seq, locked_until=until)
            return [until] * len(rows)

    def _give_back(self, entity: Entity, row: Row) -> None:
        count = row.delivery_count + 1
        if not row.dlq and count >= entity.props.max_delivery_count:
            self._store.update(row.seq, delivery_count=count)
            limit = entity.props.max_delivery_count
            self._move_to_dead_letter(
                row, MAX_DELIVERY_REASON, f"Message could not be consumed after {limit} delivery attempts."
            )
            return
        self._store.update(row.seq, delivery_count=count, lock_token=None, locked_until=None)
        self._ready.add((row.entity, row.dlq))

    def _move_to_dead_letter(self, row: Row, reason: str | None, description: str | None) -> None:
        if row.dlq:
            raise BadRequest("A message in a dead-letter queue cannot be dead-lettered again.")
        details = {"DeadLetterReason": reason, "DeadLetterErrorDescription": description}
        payload = amqp_message.with_application_properties(
            row.payload, {k: v for k, v in details.items() if v is not None}
        )
        self._store.update(
            row.seq,
            dlq=1,
            state=ACTIVE,
            payload=payload,
            lock_token=None,
            locked_until=None,
            expires_at=None,
            dl_reason=reason,
            dl_description=description,
        )
        self._ready.add((row.entity, True))

    # -- time --------------------------------------------------------------------------------

    def sweep(self) -> None:
        """Apply everything that fell due: lapsed locks, scheduled messages, expired messages."""
        now = self._clock()
        with self._store.transaction():
            for row in self._store.lapsed_locks(now):
                self._give_back(self.config.entities[row.entity.lower()], row)
            for row in self._store.due(now):
                self._release_scheduled(row, now)
            for row in self._store.expired(now):
                self._expire(row)
            self._store.forget_duplicates(now)

    def _release_scheduled(self, row: Row, now: float) -> None:
        entity = self.config.entities[row.entity.lower()]
        self._store.delete(row.seq)
        self._enqueue(entity, amqp_message.parse(row.payload), now)

    def _expire(self, row: Row) -> None:
        if self.config.entities[row.entity.lower()].props.dead_letter_on_expiration:
            self._move_to_dead_letter(row, TTL_REASON, "The message expired and was dead lettered.")
        else:
            self._store.delete(row.seq)

    def next_deadline(self) -> float | None:
        with self._store.transaction():
            return self._store.next_deadline()

    # -- inspection (any thread) -------------------------------------------------------------

    def inspect(self, path: str, state: str | None = None) -> list[dict[str, Any]]:
        target = self.resolve(path)
        with self._store.transaction():
            rows = self._store.listing(target.entity.path, target.dlq)
        views = [_describe(row) for row in rows]
        return [v for v in views if state is None or v["state"] == state]


def _min_ttl(a: float | None, b: float | None) -> float | None:
    present = [t for t in (a, b) if t is not None]
    return min(present) if present else None


def _describe(row: Row) -> dict[str, Any]:
    body, properties = amqp_message.body_and_properties(row.payload)
    return {
        "sequence_number": row.seq,
        "message_id": row.message_id,
        "body": body,
        "application_properties": properties,
        "state": "locked" if row.lock_token else _STATE_NAMES[row.state],
        "delivery_count": row.delivery_count,
        "enqueued_time": row.enqueued_at,
        "scheduled_enqueue_time": row.visible_at,
        "expires_at": row.expires_at,
        "dead_letter_reason": row.dl_reason,
        "dead_letter_description": row.dl_description,
    }
