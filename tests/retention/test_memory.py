"""Peak memory of one retention run does not grow with the number of tasks (tracemalloc, N vs 4N).

A listing page holds at most 1000 tasks, so memory is bounded by about two pages (while the next page
is fetched the client still holds the current one) plus one enqueue chunk. Each comparison keeps the
page fill equal and multiplies the tasks by four: once with four times the jobs, once with four times
the full pages per job. The emulator is seeded before tracing starts; what is traced is the run (and
the emulator thread building each page, also bounded by the page size). ``CountingQueue`` keeps
nothing, as the real gateway keeps at most one SDK batch.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from shared.retention import RetentionSummary, run_retention
from shared.runtime import Runtime
from tests.retention.dataset import RETENTION_DAYS, make_dataset
from tests.retention.memory_queue import CountingQueue
from tests.support import product_env


@dataclass(frozen=True)
class Measurement:
    tasks: int
    jobs: int
    peak_bytes: int
    summary: RetentionSummary

    def line(self) -> str:
        return (
            f"retention memory: {self.tasks} tasks in {self.jobs} jobs, "
            f"{self.summary.commands_enqueued} commands, peak {self.peak_bytes / 1024:.0f} KiB"
        )


def measure(identity: IdentityEndpoint, jobs: int, tasks_per_job: int) -> Measurement:
    dataset = make_dataset(datetime.now(UTC), jobs=jobs, tasks_per_job=tasks_per_job)
    with BatchEmulator(port=0, jwks_url=identity.jwks_url) as emulator:
        dataset.seed(emulator)
        env = {"RETENTION_DAYS": str(RETENTION_DAYS), "RETENTION_MAX_COMMANDS": "1000000"}
        runtime = Runtime(product_env(emulator.url, **env))
        batch, settings = runtime.batch.get(), runtime.settings.get()
        queue = CountingQueue()
        # Warm up once (token, connection pool, lazy imports) so one-time costs are not measured.
        run_retention(batch, queue, settings, dataset.now)
        gc.collect()
        tracemalloc.start()
        try:
            summary = run_retention(batch, queue, settings, dataset.now)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert summary.commands_enqueued == len(dataset.qualifying())
    return Measurement(dataset.size, jobs, peak, summary)


@pytest.mark.usefixtures("identity_env")
@pytest.mark.parametrize(
    ("small_shape", "large_shape"),
    [
        pytest.param((20, 500), (80, 500), id="4x-jobs"),
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
    assert large.summary.commands_enqueued == 4 * small.summary.commands_enqueued
    # Growth with the tasks would show as up to 4x; what is allowed here is noise (caches, the larger
    # job page in the 4x-jobs case), observed at 2-20%.
    assert large.peak_bytes < small.peak_bytes * 1.5
