"""SQLite persistence for messages and the duplicate-detection history.

One connection, guarded by a lock so tests can inspect state from their own thread while the reactor
thread owns every write. File databases use WAL with ``synchronous=NORMAL``: a commit survives a crash
of the peer process without an fsync per message.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ACTIVE, DEFERRED, SCHEDULED = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    dlq INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL,
    payload BLOB NOT NULL,
    message_id TEXT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    visible_at REAL,
    expires_at REAL,
    lock_token TEXT UNIQUE,
    locked_until REAL,
    dl_reason TEXT,
    dl_description TEXT
);
CREATE INDEX IF NOT EXISTS ix_ready ON messages(entity, dlq, state, seq);
CREATE INDEX IF NOT EXISTS ix_locks ON messages(locked_until) WHERE locked_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_due ON messages(visible_at) WHERE state = 2;
CREATE INDEX IF NOT EXISTS ix_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS duplicates (
    entity TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seen_until REAL NOT NULL,
    PRIMARY KEY (entity, message_id)
);
"""
_COLUMNS = (
    "seq, entity, dlq, state, payload, message_id, delivery_count, enqueued_at, visible_at, expires_at, "
    "lock_token, locked_until, dl_reason, dl_description"
)
_UPDATABLE = frozenset(_COLUMNS.split(", ")) - {"seq"}


@dataclass
class Row:
    seq: int
    entity: str
    dlq: bool
    state: int
    payload: bytes
    message_id: str | None
    delivery_count: int
    enqueued_at: float
    visible_at: float | None
    expires_at: float | None
    lock_token: str | None
    locked_until: float | None
    dl_reason: str | None
    dl_description: str | None


@dataclass(frozen=True)
class NewMessage:
    entity: str
    state: int
    payload: bytes
    message_id: str | None
    enqueued_at: float
    visible_at: float | None
    expires_at: float | None


def _row(values: Sequence[Any]) -> Row:
    row = Row(*values)
    row.dlq = bool(row.dlq)
    row.payload = bytes(row.payload)
    return row


class Store:
    def __init__(self, path: str) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        with self.transaction():
            # Locks belong to connections, and none survive a restart.
            self._db.execute("UPDATE messages SET lock_token = NULL, locked_until = NULL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self._db:
            yield

    def _select(self, where: str, args: Iterable[Any] = ()) -> list[Row]:
        cursor = self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE {where}", tuple(args))  # noqa: S608
        return [_row(values) for values in cursor.fetchall()]

    def insert(self, message: NewMessage) -> int:
        cursor = self._db.execute(
            "INSERT INTO messages (entity, state, payload, message_id, enqueued_at, visible_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                message.entity,
                message.state,
                message.payload,
                message.message_id,
                message.enqueued_at,
                message.visible_at,
                message.expires_at,
            ),
        )
        return int(cursor.lastrowid or 0)

    def update(self, seq: int, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE messages SET {assignments} WHERE seq = ?", (*fields.values(), seq))  # noqa: S608

    def delete(self, seq: int) -> None:
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))

    def available(self, entity: str, dlq: bool, limit: int, now: float) -> list[Row]:
        return self._select(
            "entity = ? AND dlq = ? AND state = 0 AND lock_token IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY seq LIMIT ?",
            (entity, int(dlq), now, limit),
        )

    def by_lock(self, token: str) -> Row | None:
        rows = self._select("lock_token = ?", (token,))
        return rows[0] if rows else None

    def by_seq(self, entity: str, dlq: bool, seqs: Sequence[int]) -> list[Row]:
        marks = ", ".join("?" * len(seqs))
        return self._select(f"entity = ? AND dlq = ? AND seq IN ({marks}) ORDER BY seq", (entity, int(dlq), *seqs))

    def from_seq(self, entity: str, dlq: bool, first: int, limit: int) -> list[Row]:
        return self._select(
            "entity = ? AND dlq = ? AND seq >= ? ORDER BY seq LIMIT ?", (entity, int(dlq), first, limit)
        )

    def listing(self, entity: str, dlq: bool) -> list[Row]:
        return self._select("entity = ? AND dlq = ? ORDER BY seq", (entity, int(dlq)))

    def lapsed_locks(self, now: float) -> list[Row]:
        return self._select("locked_until IS NOT NULL AND locked_until <= ? ORDER BY seq", (now,))

    def due(self, now: float) -> list[Row]:
        return self._select("state = 2 AND visible_at <= ? ORDER BY seq", (now,))

    def expired(self, now: float) -> list[Row]:
        return self._select(
            "expires_at IS NOT NULL AND expires_at <= ? AND dlq = 0 AND state IN (0, 1)"
            " AND lock_token IS NULL ORDER BY seq",
            (now,),
        )

    def next_deadline(self) -> float | None:
        row = self._db.execute(
            # Each part walks its index in order and stops at the first row (an aggregate MIN with the
            # extra conditions of the last part would visit every stored message on every event).
            "SELECT MIN(t) FROM ("
            " SELECT MIN(locked_until) AS t FROM messages WHERE locked_until IS NOT NULL"
            " UNION ALL SELECT MIN(visible_at) FROM messages WHERE state = 2"
            " UNION ALL SELECT * FROM (SELECT expires_at FROM messages INDEXED BY ix_expiry"
            " WHERE expires_at IS NOT NULL AND dlq = 0 AND state IN (0, 1) AND lock_token IS NULL"
            " ORDER BY expires_at LIMIT 1))"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def seen_recently(self, entity: str, message_id: str, now: float, window: float) -> bool:
        """Record ``message_id``; True when it was already recorded within the window."""
        row = self._db.execute(
            "SELECT seen_until FROM duplicates WHERE entity = ? AND message_id = ?", (entity, message_id)
        ).fetchone()
        if row is not None and row[0] > now:
            return True
        self._db.execute(
            "INSERT OR REPLACE INTO duplicates (entity, message_id, seen_until) VALUES (?, ?, ?)",
            (entity, message_id, now + window),
        )
        return False

    def forget_duplicates(self, now: float) -> None:
        self._db.execute("DELETE FROM duplicates WHERE seen_until <= ?", (now,))
