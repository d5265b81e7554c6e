"""Shared test helpers for the unit suite: a settings factory and in-memory stand-ins.

The stand-ins implement the project's own small interfaces (``processor.BatchApi`` and
``processor.Bus``); nothing here imitates a third-party library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import jsonschema

import schemas
from shared.batch_client import BatchAnswer, BatchError
from shared.config import Settings, load_settings
from shared.contract import Command
from shared.messages import Outbound

ACCOUNTS: Final = {
    "prod": "https://prod.westeurope.batch.azure.com",
    "dev": "https://dev.northeurope.batch.azure.com",
}
DEFAULT_ACCOUNT: Final = "prod"
NAMESPACE: Final = "contoso-batch.servicebus.windows.net"
NOW: Final = datetime(2026, 11, 24, 4, 0, 0, tzinfo=UTC)


def env(**overrides: str) -> dict[str, str]:
    """A minimal valid environment; keyword arguments replace or add settings."""
    base = {
        "BATCH_ACCOUNTS": json.dumps(ACCOUNTS),
        "BATCH_DEFAULT_ACCOUNT": DEFAULT_ACCOUNT,
        "ServiceBusConnection__fullyQualifiedNamespace": NAMESPACE,
    }
    base.update(overrides)
    return base


def make_settings(**overrides: str) -> Settings:
    return load_settings(env(**overrides))


def answer(
    status: int | None,
    code: str | None = None,
    message: str = "",
    *,
    values: tuple[tuple[str, str], ...] = (),
    retry_after: float | None = None,
    body: Mapping[str, Any] | None = None,
    request_id: str | None = "4c5bd3a4-7d3f-4c42-9a49-3a6d1f1b2e01",
    duration_ms: int = 12,
) -> BatchAnswer:
    """A BatchAnswer as the client would build it from one response."""
    return BatchAnswer(
        status=status,
        error=BatchError(code, message, values) if code is not None else None,
        request_id=request_id if status is not None else None,
        client_request_id="0d7f6a3e-3b7c-5e1a-8f0d-5c2a9b1e4d77",
        retry_after=retry_after,
        body=body,
        duration_ms=duration_ms,
    )


@dataclass
class FakeBatch:
    """The project's BatchApi protocol in memory: answers are scripted, calls are recorded."""

    execute_answer: BatchAnswer = field(default_factory=lambda: answer(204))
    job_answer: BatchAnswer = field(default_factory=lambda: answer(200, body={"state": "active"}))
    task_answer: BatchAnswer = field(default_factory=lambda: answer(200, body={"state": "active"}))
    list_answer: BatchAnswer = field(default_factory=lambda: answer(200, body={"value": []}))
    counts_answer: BatchAnswer = field(
        default_factory=lambda: answer(
            200, body={"taskCounts": {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}}
        )
    )
    executed: list[Command] = field(default_factory=list)
    reads: list[tuple[str, ...]] = field(default_factory=list)

    def execute(self, command: Command) -> BatchAnswer:
        self.executed.append(command)
        return self.execute_answer

    def get_job(self, account: str, job_id: str, command: Command | None = None) -> BatchAnswer:
        self.reads.append(("job", account, job_id))
        return self.job_answer

    def get_task(self, account: str, job_id: str, task_id: str, command: Command | None = None) -> BatchAnswer:
        self.reads.append(("task", account, job_id, task_id))
        return self.task_answer

    def list_page(
        self, account: str, path: str, params: Mapping[str, str], next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer:
        self.reads.append(("list", account, path, next_link or ""))
        return self.list_answer

    def get_task_counts(self, account: str, job_id: str, key: str | None = None) -> BatchAnswer:
        self.reads.append(("counts", account, job_id))
        return self.counts_answer

    @property
    def calls(self) -> int:
        return len(self.executed) + len(self.reads)


class BusDown(RuntimeError):
    """What the in-memory bus raises when told to fail."""


@dataclass
class FakeBus:
    """The project's Bus protocol in memory: records what was sent; can be told to fail."""

    fail_publish: bool = False
    fail_schedule: bool = False
    fail_enqueue: bool = False
    published: list[Outbound] = field(default_factory=list)
    scheduled: list[Outbound] = field(default_factory=list)
    enqueued: list[Outbound] = field(default_factory=list)

    def publish(self, message: Outbound) -> None:
        if self.fail_publish:
            raise BusDown("topic unavailable")
        self.published.append(message)

    def schedule(self, message: Outbound) -> None:
        if self.fail_schedule:
            raise BusDown("queue unavailable")
        self.scheduled.append(message)

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        if self.fail_enqueue:
            raise BusDown("queue unavailable")
        batch = list(messages)
        self.enqueued.extend(batch)
        return len(batch)

    def events(self) -> list[dict[str, Any]]:
        """The published outcome bodies, decoded."""
        return [json.loads(message.body) for message in self.published]


class SchemaValidator:
    """A draft 2020-12 validator for one of the published schemas, with typed results."""

    def __init__(self, name: str) -> None:
        self.schema: dict[str, Any] = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(self.schema)
        self._validator = jsonschema.Draft202012Validator(self.schema)

    def errors(self, instance: object) -> list[str]:
        return [str(error.message) for error in self._validator.iter_errors(instance)]

    def is_valid(self, instance: object) -> bool:
        return not self.errors(instance)
