"""A demo job whose tasks are in every interesting state, so each command has something to act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from emulators.batch import BatchEmulator

DEMO_JOB = "demo-job"


def seed_demo(batch: BatchEmulator) -> None:
    """Seed once: a restarted host that reuses a running emulator keeps its state."""
    if batch.get_job(DEMO_JOB) is not None:
        return
    batch.seed_job(DEMO_JOB)
    batch.seed_task(DEMO_JOB, "queued-1", state="active")
    batch.seed_task(DEMO_JOB, "running-1", state="running")
    batch.seed_task(DEMO_JOB, "running-2", state="running")
    batch.seed_task(DEMO_JOB, "failed-1", state="completed", exit_code=1)
    batch.seed_task(DEMO_JOB, "succeeded-1", state="completed", exit_code=0)
    month_ago = datetime.now(UTC) - timedelta(days=30)
    for n in range(1, 4):  # old enough for the retention cleanup to delete
        batch.seed_task(DEMO_JOB, f"old-{n}", state="completed", exit_code=0, state_transition_time=month_ago)
