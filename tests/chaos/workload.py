"""The valid side of the run: the commands, the Batch state they act on, and the faults Batch injects."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Final

from emulators.batch import BatchEmulator
from tests.chaos.model import VALID_PREFIX, ValidCommand

TASKS_PER_JOB: Final = 100
# Share of each action among the valid commands. terminateJob gets a job of its own each time, so no
# command ever races another over the same job.
ACTION_MIX: Final = (("terminateTask", 30), ("deleteTask", 30), ("reactivateTask", 30), ("terminateJob", 10))
# The state each action's target is seeded in, so the first call succeeds and a repeat is alreadyDone.
SEEDED_STATE: Final[dict[str, dict[str, Any]]] = {
    "terminateTask": {"state": "running"},
    "deleteTask": {"state": "completed", "exit_code": 0},
    "reactivateTask": {"state": "completed", "exit_code": 1},
    "terminateJob": {"state": "running"},
}


@dataclass
class Plan:
    commands: list[ValidCommand]
    resend_early: list[str] = field(default_factory=list)  # sent again right after the original
    resend_late: list[str] = field(default_factory=list)  # sent again once the run is half done
    jobs: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # job -> (task, seed kwargs)

    @property
    def seeded_jobs(self) -> set[str]:
        return set(self.jobs)


def make_plan(count: int, seed: int, resend_share: float = 0.02, dry_run_share: float = 0.03) -> Plan:
    rnd = random.Random(seed)
    actions = [action for action, weight in ACTION_MIX for _ in range(weight)]
    plan = Plan(commands=[])
    for n in range(count):
        action = rnd.choice(actions)
        command_id = f"{VALID_PREFIX}{n:06d}"
        if action == "terminateJob":
            job_id, task_id = f"cx-{n:06d}", None
            plan.jobs[job_id] = [("t0", SEEDED_STATE[action])]
        else:
            job_id, task_id = f"cj-{n // TASKS_PER_JOB:04d}", f"t{n:06d}"
            plan.jobs.setdefault(job_id, []).append((task_id, SEEDED_STATE[action]))
        dry_run = rnd.random() < dry_run_share
        plan.commands.append(ValidCommand(command_id, action, job_id, task_id, dry_run))
    resent = rnd.sample([c.command_id for c in plan.commands], round(count * resend_share))
    half = len(resent) // 2
    plan.resend_early, plan.resend_late = sorted(resent[:half]), sorted(resent[half:])
    return plan


def body(command: ValidCommand) -> bytes:
    data: dict[str, Any] = {"action": command.action, "jobId": command.job_id, "commandId": command.command_id}
    if command.task_id is not None:
        data["taskId"] = command.task_id
    if command.dry_run:
        data["dryRun"] = True
    data["requestedBy"] = "chaos"
    return json.dumps(data).encode()


def seed_batch(emulator: BatchEmulator, plan: Plan) -> int:
    """Create every job and task the plan acts on; returns the number of tasks."""
    tasks = 0
    for job_id, specs in plan.jobs.items():
        emulator.seed_job(job_id)
        emulator.seed_tasks(job_id, [{"id": task_id, **state} for task_id, state in specs])
        tasks += len(specs)
    return tasks


@dataclass(frozen=True)
class FaultKind:
    name: str
    settings: dict[str, Any]


def fault_kinds(read_timeout: float) -> list[FaultKind]:
    """Every kind of failure the emulator can inject that the decision table retries."""
    slow = read_timeout + 0.5  # longer than the client waits: the client sees a timeout
    return [
        FaultKind("500 InternalError", {"status": 500, "code": "InternalError"}),
        FaultKind("500 OperationTimedOut", {"status": 500, "code": "OperationTimedOut"}),
        FaultKind("502 (status only)", {"status": 502, "code": "BadGateway"}),
        FaultKind("503 ServerBusy + Retry-After", {"status": 503, "code": "ServerBusy", "retry_after": 0.5}),
        FaultKind("504 (status only)", {"status": 504, "code": "GatewayTimeout"}),
        FaultKind("408 RequestTimeout", {"status": 408, "code": "RequestTimeout"}),
        FaultKind("429 TooManyRequests + Retry-After", {"status": 429, "code": "TooManyRequests", "retry_after": 0.5}),
        FaultKind("401 AuthenticationFailed", {"status": 401, "code": "AuthenticationFailed"}),
        FaultKind("403 InsufficientAccountPermissions", {"status": 403, "code": "InsufficientAccountPermissions"}),
        FaultKind("connection reset", {"drop_connection": True}),
        FaultKind("timeout, then done anyway", {"latency": slow}),  # the change happens after the client gave up
        FaultKind("timeout, nothing done", {"latency": slow, "status": 503, "code": "ServerBusy"}),
    ]


def inject_faults(emulator: BatchEmulator, rate: float, kinds: list[FaultKind]) -> list[tuple[str, float]]:
    """Make ``rate`` of all Batch requests fail, split evenly over ``kinds``.

    The emulator tries its faults in order and the first that fires wins, so the i-th kind fires with
    share / (1 - (i-1) * share) to get ``share`` of all requests each. Returns (kind, probability).
    """
    if rate <= 0:
        return []
    share = rate / len(kinds)
    injected = []
    for index, kind in enumerate(kinds):
        probability = min(1.0, share / (1 - index * share))
        emulator.inject_fault("*", probability=probability, **kind.settings)
        injected.append((kind.name, probability))
    return injected
