"""Peak memory of a retention run does not grow with the number of tasks (tracemalloc, N vs 4N).

The run is the retention policy's selector expanded page by page through the real processor: one invocation
per listing page, each holding one page (at most 500 tasks, or 100 jobs with their task counts) and the one
continuation it writes. Each comparison multiplies the tasks by four, once with four times the jobs and once
with four times the pages per job. ``LeanQueue`` keeps only the selector messages still to run and counts the
rest, so it adds no memory of its own; the emulator is seeded before tracing starts.
"""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from shared.messages import Outbound, Received
from shared.policies import run_retention
from shared.processor import Processor
from shared.runtime import Runtime
from tests.retention.dataset import RETENTION_DAYS, make_dataset
from tests.support import product_env


@dataclass
class LeanQueue:
    """The processor's Bus: selector messages wait to be processed, everything else is only counted."""

    waiting: deque[Outbound] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)  # selector message ids (duplicate detection)
    commands: int = 0
    outcomes: int = 0

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        sent = 0
        for message in messages:
            sent += 1
            if b'"select"' in message.body:
                if message.message_id not in self.seen:
                    self.seen.add(message.message_id)
                    self.waiting.append(message)
            else:
                self.commands += 1
        return sent

    def schedule(self, message: Outbound) -> None:
        raise AssertionError("no listing fails here")

    def publish(self, message: Outbound) -> None:
        self.outcomes += 1

    def drain(self, processor: Processor) -> None:
        while self.waiting:
            message = self.waiting.popleft()
            result = processor.process(Received.read(message.body, message.message_id))
            assert result.settlement.kind == "complete", result


@dataclass(frozen=True)
class Measurement:
    tasks: int
    jobs: int
    peak_bytes: int
    commands: int

    def line(self) -> str:
        return (
            f"retention memory: {self.tasks} tasks in {self.jobs} jobs, "
            f"{self.commands} commands, peak {self.peak_bytes / 1024:.0f} KiB"
        )


def measure(identity: IdentityEndpoint, jobs: int, tasks_per_job: int) -> Measurement:
    dataset = make_dataset(datetime.now(UTC), jobs, tasks_per_job)
    with BatchEmulator(port=0, jwks_url=identity.jwks_url) as emulator:
        dataset.seed(emulator)
        env = {
            "RETENTION_DAYS": str(RETENTION_DAYS),
            "RETENTION_MAX_COMMANDS": "1000000",
            "FLEET_MAX_LIMIT": "1000000",
            "FLEET_SCOPE_PREFIXES": "ret-",
        }
        runtime = Runtime(product_env(emulator.url, **env))
        settings = runtime.settings.get()

        def one_run() -> LeanQueue:
            queue = LeanQueue()
            processor = Processor(settings, runtime.batch.get(), queue)
            run_retention(queue, settings, dataset.now)
            queue.drain(processor)
            return queue

        # Warm up once (token, connection pool, lazy imports) so one-time costs are not measured.
        one_run()
        gc.collect()
        # Each invocation logs one line, and pytest keeps every captured record: that is the test's memory.
        product_log = logging.getLogger("batch_lifecycle")
        product_log.disabled = True
        tracemalloc.start()
        try:
            queue = one_run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            product_log.disabled = False
    assert queue.commands == len(dataset.qualifying())
    return Measurement(dataset.size, jobs, peak, queue.commands)


@pytest.mark.usefixtures("identity_env")
@pytest.mark.parametrize(
    ("small_shape", "large_shape"),
    [
        pytest.param((100, 100), (400, 100), id="4x-jobs"),  # full job pages (100 jobs) in both
        pytest.param((10, 4_000), (10, 16_000), id="4x-pages-per-job"),
    ],
)
def test_peak_memory_is_flat_from_n_to_4n_tasks(
    identity: IdentityEndpoint,
    record_property: Callable[[str, object], None],
    small_shape: tuple[int, int],
    large_shape: tuple[int, int],
) -> None:
    small = measure(identity, *small_shape)
    large = measure(identity, *large_shape)
    for m in (small, large):
        print(m.line())
        record_property(f"peak_bytes_{m.tasks}", m.peak_bytes)
    assert large.tasks == 4 * small.tasks >= 40_000
    assert large.commands == 4 * small.commands
    # Growth with the tasks would show as up to 4x; what is allowed here is noise (caches, id sets).
    assert large.peak_bytes < small.peak_bytes * 1.5


def test_a_page_message_stays_far_below_the_body_limit() -> None:
    """A continuation carries one page of targets: 500 ids of at most 64 characters."""
    body = json.dumps({"continuation": {"pending": ["t" * 64] * 500}}).encode()
    assert len(body) < 40 * 1024
