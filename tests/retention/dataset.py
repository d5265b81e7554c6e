"""A deterministic mix of jobs and tasks (states, exit codes, ages) and the oracle of what qualifies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from emulators.batch import BatchEmulator

RETENTION_DAYS = 7
DAY = timedelta(days=1)
# (state, exit code, age): five of ten qualify with "any", three with "success"; the two just either
# side of the cutoff check the boundary.
KINDS: tuple[tuple[str, int | None, timedelta], ...] = (
    ("completed", 0, 30 * DAY),
    ("completed", 0, RETENTION_DAYS * DAY + timedelta(minutes=5)),
    ("completed", 1, 45 * DAY),
    ("completed", 0, RETENTION_DAYS * DAY - timedelta(minutes=5)),
    ("completed", 0, 1 * DAY),
    ("running", None, 30 * DAY),
    ("active", None, 30 * DAY),
    ("preparing", None, 30 * DAY),
    ("completed", 3, 8 * DAY),
    ("completed", 0, 90 * DAY),
)
JOB_STATES = ("active", "completed", "active", "terminating", "disabled")


@dataclass(frozen=True)
class TaskSeed:
    job_id: str
    task_id: str
    state: str
    exit_code: int | None
    transition: datetime

    def spec(self) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "state": self.state,
            "exit_code": self.exit_code,
            "state_transition_time": self.transition,
        }


@dataclass(frozen=True)
class Dataset:
    now: datetime
    jobs: dict[str, str]  # job id -> state
    tasks_per_job: int

    def tasks(self) -> Iterator[TaskSeed]:
        for index, job_id in enumerate(self.jobs):
            for number in range(self.tasks_per_job):
                state, exit_code, age = KINDS[(number + index) % len(KINDS)]
                yield TaskSeed(job_id, f"task-{number:05d}", state, exit_code, self.now - age)

    @property
    def size(self) -> int:
        return len(self.jobs) * self.tasks_per_job

    def qualifying(self, success_only: bool = False, prefix: str = "", job_state: str = "") -> set[tuple[str, str]]:
        """The oracle, from the seeds alone: (job, task) of every task the cleanup must delete."""
        cutoff = self.now - RETENTION_DAYS * DAY
        return {
            (seed.job_id, seed.task_id)
            for seed in self.tasks()
            if seed.state == "completed"
            and seed.transition < cutoff
            and (seed.exit_code == 0 or not success_only)
            and seed.job_id.startswith(prefix)
            and (self.jobs[seed.job_id] == job_state or not job_state)
        }

    def seed(self, emulator: BatchEmulator) -> None:
        for job_id, state in self.jobs.items():
            emulator.seed_job(job_id, state=state)
        by_job: dict[str, list[dict[str, Any]]] = {}
        for seed in self.tasks():
            by_job.setdefault(seed.job_id, []).append(seed.spec())
        for job_id, specs in by_job.items():
            emulator.seed_tasks(job_id, specs)


def make_dataset(now: datetime, jobs: int, tasks_per_job: int, other_jobs: int = 0) -> Dataset:
    """``jobs`` jobs named ``ret-NN`` in mixed states, plus ``other_jobs`` named ``other-NN``."""
    states = {f"ret-{n:02d}": JOB_STATES[n % len(JOB_STATES)] for n in range(jobs)}
    states.update({f"other-{n:02d}": JOB_STATES[n % len(JOB_STATES)] for n in range(other_jobs)})
    return Dataset(now, states, tasks_per_job)
