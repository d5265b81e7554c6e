"""Dry runs: read the target's state and predict the answer the real call would get.

The prediction is a (status, code) pair that then goes through the same decision table as a
real answer, so a dry run reports exactly the decision the policy would take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from shared.batch_client import BatchAnswer
from shared.contract import Command
from shared.policy import SUCCESS_STATUS

_JOB_STATE_CODES = {
    "completed": "JobCompleted",
    "terminating": "JobBeingTerminated",
    "deleting": "JobBeingDeleted",
}


class StateReader(Protocol):
    def get_job(self, account: str, job_id: str, command: Command | None = None) -> BatchAnswer: ...

    def get_task(self, account: str, job_id: str, task_id: str, command: Command | None = None) -> BatchAnswer: ...


def inspect(reader: StateReader, command: Command) -> tuple[BatchAnswer, int, str | None]:
    """Read job (and task) state; return the last read answer and the predicted (status, code).

    When a read itself fails (throttled, unauthorised ...), the prediction is that failure, so
    the caller treats it like the real call failing the same way.
    """
    job = reader.get_job(command.account, command.job_id, command)
    if not job.ok:
        return job, _status(job), job.code
    job_code = _job_conflict(command.action, _field(job.body, "state"))
    if command.task_id is None or job_code is not None:
        return job, (409 if job_code else SUCCESS_STATUS[command.action]), job_code
    task = reader.get_task(command.account, command.job_id, command.task_id, command)
    if not task.ok:
        return task, _status(task), task.code
    task_code = _task_conflict(command.action, task.body or {})
    return task, (409 if task_code else SUCCESS_STATUS[command.action]), task_code


def _status(answer: BatchAnswer) -> int:
    return answer.status if answer.status is not None else 0


def _field(body: Mapping[str, Any] | None, name: str) -> Any:
    return (body or {}).get(name)


def _job_conflict(action: str, state: str | None) -> str | None:
    code = _JOB_STATE_CODES.get(state or "")
    # Tasks of a completed job can still be deleted (that is what retention cleanup does).
    if action == "deleteTask" and code == "JobCompleted":
        return None
    # Delete Job is refused only while the job is already being deleted (docs/batch-facts.md, "Delete Job").
    if action == "deleteJob" and code != "JobBeingDeleted":
        return None
    return code


def _task_conflict(action: str, task: Mapping[str, Any]) -> str | None:
    completed = task.get("state") == "completed"
    if action == "terminateTask" and completed:
        return "TaskCompleted"
    if action == "reactivateTask":
        if not completed:
            return "TaskNotCompleted"
        info = task.get("executionInfo") or {}
        if info.get("result") == "success" or info.get("exitCode") == 0:
            return "TaskSucceeded"
    return None
