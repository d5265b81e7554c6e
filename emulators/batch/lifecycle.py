"""State machines of Batch tasks and jobs as pure functions over their REST JSON.

Every function returns a new dict and leaves its input untouched (the store relies on that).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeGuard

from emulators.batch.errors import BatchApiError, ControlError
from emulators.batch.odata_filter import JOB_STATES, TASK_STATES
from emulators.batch.timefmt import format_iso, parse_iso

Json = dict[str, Any]

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FOREVER = "P10675199DT2H48M5.4775807S"
_EMULATED_NODE = "tvmps_emulated_node_0"
# Shared by every task that does not override them: stored resources are never edited in place, and
# sharing keeps 100 000 seeded tasks small.
_DEFAULT_CONSTRAINTS = {"maxWallClockTime": _FOREVER, "retentionTime": "P7D", "maxTaskRetryCount": 0}
_SEEDED_NODE = {"nodeId": _EMULATED_NODE}
# Exit code reported for a task whose process the service killed (user termination).
_TERMINATED_EXIT_CODE = 137
# failureInfo.category takes the documented ErrorCategory spelling, `UserError` / `ServerError`, as the
# service answers (the SDK's enum says "usererror"; the SDK hands back the unknown casing as a plain str).
_USER_ERROR = "UserError"
_USER_TERMINATED = {"category": _USER_ERROR, "code": "TaskEnded", "message": "Task Was Ended by User Request"}
_FAILED_EXIT = {
    "category": _USER_ERROR,
    "code": "FailureExitCode",
    "message": "The task process exited with an unexpected exit code",
}


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None


def require_id(value: object) -> str:
    if not is_valid_id(value):
        raise BatchApiError(
            "InvalidPropertyValue",
            {
                "PropertyName": "id",
                "PropertyValue": str(value)[:100],
                "Reason": "An id may contain only letters, digits, hyphens and underscores, up to 64 characters.",
            },
        )
    return str(value)


def transition(data: Json, state: str, now: str) -> Json:
    return {
        **data,
        "previousState": data["state"],
        "previousStateTransitionTime": data["stateTransitionTime"],
        "state": state,
        "stateTransitionTime": now,
    }


def new_job(body: Mapping[str, Any], state: str, created: str, transitioned: str) -> Json:
    """A job as the service shows it: the caller's properties plus service defaults and state."""
    pool_id = (body.get("poolInfo") or {}).get("poolId", "")
    return {
        "priority": 0,
        "maxParallelTasks": -1,
        "allowTaskPreemption": False,
        "usesTaskDependencies": False,
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
        "constraints": {"maxWallClockTime": _FOREVER, "maxTaskRetryCount": 0},
        **body,
        "creationTime": created,
        "state": state,
        "stateTransitionTime": transitioned,
        "executionInfo": {"startTime": created, "poolId": pool_id},
    }


def new_task(body: Mapping[str, Any], created: str, transitioned: str) -> Json:
    custom = body.get("constraints")
    return {
        "requiredSlots": 1,
        **body,
        "creationTime": created,
        "state": "active",
        "stateTransitionTime": transitioned,
        "constraints": _DEFAULT_CONSTRAINTS | custom if isinstance(custom, dict) else _DEFAULT_CONSTRAINTS,
        "executionInfo": {"retryCount": 0, "requeueCount": 0},
    }


def _on_node(task: Json, job: Json, state: str, now: str) -> Json:
    """The task moved to `state` on the emulated node: from here on it has a `nodeInfo`."""
    moved = transition(task, state, now)
    moved["nodeInfo"] = {
        "poolId": job["executionInfo"].get("poolId", ""),
        "nodeId": _EMULATED_NODE,
        "taskRootDirectory": f"workitems/{job['id']}/job-1/{task['id']}",
    }
    return moved


def prepare_run(task: Json, job: Json, now: str) -> Json:
    """Preparing: the service has assigned the task to a node, which has not started it yet."""
    return _on_node(task, job, "preparing", now)


def start_run(task: Json, job: Json, now: str) -> Json:
    started = _on_node(task, job, "running", now)
    started["executionInfo"] = {**task["executionInfo"], "startTime": now}
    return started


def finish_run(task: Json, exit_code: int, now: str) -> Json:
    info = {**task["executionInfo"], "endTime": now, "exitCode": exit_code}
    retries_allowed = task["constraints"].get("maxTaskRetryCount", 0)
    if exit_code != 0 and (retries_allowed == -1 or info["retryCount"] < retries_allowed):
        retried = transition(task, "active", now)
        retried["executionInfo"] = {**info, "retryCount": info["retryCount"] + 1, "lastRetryTime": now}
        return retried
    finished = transition(task, "completed", now)
    info["result"] = "success" if exit_code == 0 else "failure"
    if exit_code != 0:
        info["failureInfo"] = _FAILED_EXIT
    finished["executionInfo"] = info
    return finished


def terminate_run(task: Json, now: str) -> Json:
    info = {**task["executionInfo"], "endTime": now, "result": "failure", "failureInfo": _USER_TERMINATED}
    if task["state"] in ("preparing", "running"):
        info["exitCode"] = _TERMINATED_EXIT_CODE
    terminated = transition(task, "completed", now)
    terminated["executionInfo"] = info
    # A task that never got a node shows `"nodeInfo": {}` once terminated (present and empty), as the
    # service answers; one that ran keeps the node it ran on.
    if "nodeInfo" not in terminated:
        terminated["nodeInfo"] = {}
    return terminated


def make_subtasks(task: Json, now: str) -> list[Json]:
    instances = int(task["multiInstanceSettings"].get("numberOfInstances", 1))
    return [
        mirror_subtask({"id": number, "startTime": now, "state": "running", "stateTransitionTime": now}, task, now)
        for number in range(1, instances)
    ]


def mirror_subtask(subtask: Json, primary: Json, now: str) -> Json:
    """Subtasks follow their primary task's run: running with it, completed with its exit code."""
    state = {"active": "preparing"}.get(primary["state"], primary["state"])
    mirrored = {
        "id": subtask["id"],
        "startTime": subtask["startTime"],
        "state": state,
        "stateTransitionTime": now if state != subtask["state"] else subtask["stateTransitionTime"],
        "nodeInfo": {**primary.get("nodeInfo", {}), "nodeId": f"{_EMULATED_NODE}_{subtask['id']}"},
    }
    info = primary["executionInfo"]
    if state == "completed":
        mirrored.update({"endTime": info.get("endTime", now), "result": info.get("result")})
        if "exitCode" in info:
            mirrored["exitCode"] = info["exitCode"]
    return mirrored


def seeded_task(spec: Mapping[str, Any], now: str) -> Json:
    """Build a task in any state from a seed spec (see Store.seed_tasks for the keys)."""
    task_id = spec.get("id")
    if not is_valid_id(task_id):
        raise ControlError(f"invalid task id {task_id!r}")
    state = spec.get("state", "active")
    if state not in TASK_STATES:
        raise ControlError(f"unknown task state {state!r}")
    created = _seed_time(spec.get("creation_time"), now)
    transitioned = _seed_time(spec.get("state_transition_time"), created)
    task = new_task(_seed_body(task_id, spec), created, transitioned)
    info = task["executionInfo"]
    info["retryCount"] = int(spec.get("retry_count", 0))
    if state == "active":
        return task
    info["startTime"] = transitioned
    if state == "completed":
        exit_code = int(spec.get("exit_code") or 0)
        info.update(endTime=transitioned, exitCode=exit_code, result="failure" if exit_code else "success")
        if exit_code:
            info["failureInfo"] = _FAILED_EXIT
    task.update(state=state, nodeInfo=_SEEDED_NODE)
    return task


def _seed_body(task_id: str, spec: Mapping[str, Any]) -> Json:
    """The Add Task body a seed spec stands for."""
    body: Json = {"id": task_id, "commandLine": spec.get("command_line", "/bin/sh -c 'echo hello'")}
    if spec.get("number_of_instances"):
        body["multiInstanceSettings"] = {
            "numberOfInstances": int(spec["number_of_instances"]),
            "coordinationCommandLine": "/bin/true",
        }
    if spec.get("max_task_retry_count") is not None:
        body["constraints"] = {"maxTaskRetryCount": int(spec["max_task_retry_count"])}
    return body


# The state a seeded job most plausibly came from, for its `previousState` (an active job has none:
# the service leaves previousState unset while a job is in its initial active state).
_SEEDED_PREDECESSOR = {
    "disabling": "active",
    "disabled": "disabling",
    "enabling": "disabled",
    "terminating": "active",
    "completed": "terminating",
    "deleting": "active",
}


def seeded_job(spec: Mapping[str, Any], now: str) -> Json:
    """Build a job in any state from a seed spec (see Store.seed_jobs for the keys)."""
    job_id = spec.get("id")
    if not is_valid_id(job_id):
        raise ControlError(f"invalid job id {job_id!r}")
    state = spec.get("state") or "active"
    if state not in JOB_STATES:
        raise ControlError(f"unknown job state {state!r}")
    transitioned = _optional_time(spec.get("state_transition_time"))
    # A job cannot change state before it exists: without an explicit creation time, a past
    # transition time also dates the creation.
    created = _seed_time(spec.get("creation_time"), min(now, transitioned) if transitioned else now)
    pool_id = spec.get("pool_id") or "emulator-pool"
    data = new_job({"id": job_id, "poolInfo": {"poolId": str(pool_id)}}, state, created, transitioned or created)
    previous = spec.get("previous_state", _SEEDED_PREDECESSOR.get(state))
    if previous is not None:
        if previous not in JOB_STATES:
            raise ControlError(f"unknown job state {previous!r}")
        data["previousState"] = previous
        data["previousStateTransitionTime"] = _seed_time(spec.get("previous_state_transition_time"), created)
    reason = spec.get("terminate_reason")
    if reason is not None or state == "completed":
        info = {**data["executionInfo"], "endTime": data["stateTransitionTime"]}
        if reason is not None:
            info["terminateReason"] = str(reason)
        data["executionInfo"] = info
    return data


def _optional_time(value: datetime | str | None) -> str | None:
    return None if value is None else _seed_time(value, "")


def _seed_time(value: datetime | str | None, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, datetime):
        return format_iso(value)
    if isinstance(value, str):
        return format_iso(parse_iso(value))
    raise ValueError(f"not a timestamp: {value!r}")
