"""A fleet harness: the real processor, Batch over HTTP (the emulator, real tokens), the queue in memory.

``Fleet.run`` sends one command and drains the queue: the selector's pages, the commands they enqueue and, for
``jobSelect``, the per-job selectors, each processed by ``Processor`` exactly as ``process_command`` does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulators.batch import BatchEmulator
from shared.config import Settings
from shared.processor import Processor
from shared.runtime import Runtime
from tests.fleet_queue import FleetQueue
from tests.support import product_env

OLD = datetime.now(UTC) - timedelta(days=30)
TERMINAL = ("succeeded", "alreadyDone", "deadLetter")


@dataclass
class Fleet:
    batch: BatchEmulator
    settings: Settings
    processor: Processor
    queue: FleetQueue = field(default_factory=FleetQueue)

    def send(self, body: dict[str, Any]) -> None:
        self.queue.send(body)

    def run(self, body: dict[str, Any], stop: Callable[[], bool] | None = None) -> int:
        self.send(body)
        return self.drain(stop)

    def drain(self, stop: Callable[[], bool] | None = None) -> int:
        return self.queue.drain(self.processor, stop=stop)

    def outcomes(self, command_id: str) -> list[dict[str, Any]]:
        return self.queue.events_of(command_id)

    def final(self, command_id: str) -> dict[str, Any]:
        """The one terminal outcome of a command (fails if there is not exactly one)."""
        (event,) = self.queue.terminal(command_id)
        return event

    def acted(self, action: str | None = None) -> list[tuple[str, str | None]]:
        """(job, task) of every single-target command the queue accepted, in order."""
        return [(c.job_id, c.task_id) for c in self.queue.commands() if action is None or c.action == action]

    def deliveries_of_targets(self) -> Counter[str]:
        """How often each single-target command was delivered to the processor."""
        ids = {json.loads(m.body)["commandId"] for m in self.queue.history if "select" not in json.loads(m.body)}
        return Counter({message_id: n for message_id, n in self.queue.deliveries.items() if message_id in ids})

    def tasks_left(self, job_id: str, task_ids: Iterable[str]) -> set[str]:
        return {task for task in task_ids if self.batch.get_task(job_id, task) is not None}

    def job_state(self, job_id: str) -> str | None:
        job = self.batch.get_job(job_id)
        return None if job is None else str(job["state"])


def make_fleet(batch: BatchEmulator, **overrides: str) -> Fleet:
    settings_env = {"FLEET_SCOPE_PREFIXES": "fleet-", "RETRY_MAX_ATTEMPTS": "4", **overrides}
    runtime = Runtime(product_env(batch.url, **settings_env))
    queue = FleetQueue()
    return Fleet(batch, runtime.settings.get(), Processor(runtime.settings.get(), runtime.batch.get(), queue), queue)
