"""Test-control API under /_emulator/: seeding, task runs, transition delays, faults, reset.

Every route calls the same BatchEmulator method a Python test would, so both stay equivalent.
Bodies use the REST API's camelCase names; no authentication (the emulator binds to loopback).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from emulators.batch.errors import BatchApiError, ControlError
from emulators.batch.timefmt import parse_iso

if TYPE_CHECKING:
    from emulators.batch.emulator import BatchEmulator

ADMIN_PREFIX = "/_emulator/"
Json = dict[str, Any]

# camelCase body field -> keyword of the Python control API.
_TASK_FIELDS = {
    "id": "id",
    "state": "state",
    "exitCode": "exit_code",
    "creationTime": "creation_time",
    "stateTransitionTime": "state_transition_time",
    "commandLine": "command_line",
    "maxTaskRetryCount": "max_task_retry_count",
    "retryCount": "retry_count",
    "numberOfInstances": "number_of_instances",
}
_JOB_FIELDS = {
    "state": "state",
    "poolId": "pool_id",
    "creationTime": "creation_time",
    "stateTransitionTime": "state_transition_time",
    "terminateReason": "terminate_reason",
    "previousState": "previous_state",
    "previousStateTransitionTime": "previous_state_transition_time",
}
_FAULT_FIELDS = {
    "operation": "operation",
    "status": "status",
    "code": "code",
    "count": "count",
    "probability": "probability",
    "retryAfter": "retry_after",
    "latency": "latency",
    "dropConnection": "drop_connection",
}


def _renamed(body: Json, names: dict[str, str]) -> Json:
    unknown = set(body) - set(names)
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    return {names[key]: value for key, value in body.items()}


Handler = Callable[[list[str], Json], tuple[int, Any]]


class AdminApi:
    def __init__(self, emulator: BatchEmulator) -> None:
        self.emulator = emulator
        # (method, path shape with ids as '*') -> handler(ids, body)
        self._routes: dict[tuple[str, tuple[str, ...]], Handler] = {
            ("POST", ("reset",)): self._reset,
            ("GET", ("stats",)): self._stats,
            ("PUT", ("transition-delays",)): self._delays,
            ("POST", ("faults",)): self._add_fault,
            ("GET", ("faults",)): self._list_faults,
            ("DELETE", ("faults",)): self._clear_faults,
            ("POST", ("jobs",)): self._seed_job,
            ("GET", ("jobs", "*")): self._get_job,
            ("POST", ("jobs", "*", "state")): self._set_job_state,
            ("GET", ("jobs", "*", "taskcounts")): self._task_counts,
            ("POST", ("jobs", "*", "tasks")): self._seed_tasks,
            ("GET", ("jobs", "*", "tasks", "*")): self._get_task,
            ("POST", ("jobs", "*", "tasks", "*", "prepare")): self._prepare_task,
            ("POST", ("jobs", "*", "tasks", "*", "start")): self._start_task,
            ("POST", ("jobs", "*", "tasks", "*", "complete")): self._complete_task,
        }

    def handle(self, method: str, path: str, raw_body: bytes) -> tuple[int, Any]:
        """Answer one admin request with (status, JSON payload)."""
        segments = [unquote(part) for part in path[len(ADMIN_PREFIX) :].strip("/").split("/")]
        shape = tuple("*" if index in (1, 3) else part for index, part in enumerate(segments))
        handler = self._routes.get((method, shape))
        if handler is None:
            return 404, {"error": "NotFound", "message": f"no admin route {method} {path}"}
        ids = [part for index, part in enumerate(segments) if index in (1, 3)]
        try:
            body = json.loads(raw_body) if raw_body.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            return handler(ids, body)
        except BatchApiError as error:
            return error.status, {"error": error.code, "message": error.message}
        except ControlError as error:
            return 409, {"error": "Conflict", "message": str(error)}
        except (ValueError, TypeError, KeyError) as error:
            return 400, {"error": "BadRequest", "message": str(error)}

    def _reset(self, ids: list[str], body: Json) -> tuple[int, Any]:
        self.emulator.reset()
        return 200, {}

    def _stats(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return 200, {"requestCount": self.emulator.request_count, "faultsFired": self.emulator.faults.fired}

    def _delays(self, ids: list[str], body: Json) -> tuple[int, Any]:
        self.emulator.set_job_transition_delay(terminate=body.get("terminate"), delete=body.get("delete"))
        store = self.emulator.store
        return 200, {"terminate": store.terminate_delay, "delete": store.delete_delay}

    def _add_fault(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return 201, {"id": self.emulator.inject_fault(**_renamed(body, _FAULT_FIELDS))}

    def _list_faults(self, ids: list[str], body: Json) -> tuple[int, Any]:
        faults = self.emulator.faults.active()
        listed = [
            {"id": fault.fault_id} | {camel: getattr(fault, snake) for camel, snake in _FAULT_FIELDS.items()}
            for fault in faults
        ]
        return 200, {"value": listed}

    def _clear_faults(self, ids: list[str], body: Json) -> tuple[int, Any]:
        self.emulator.clear_faults()
        return 200, {}

    def _seed_job(self, ids: list[str], body: Json) -> tuple[int, Any]:
        """One job (answered with its JSON), or `{"value": [jobs]}` (answered with the count). A job
        may carry `tasks`, a list of task seeds."""
        if "value" in body:
            jobs = body["value"]
            if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
                raise ValueError("'value' must be a list of job objects")
            return 201, {"count": self.emulator.seed_jobs([_job_spec(job) for job in jobs])}
        spec = _job_spec(body)
        job_id = spec.pop("id")
        tasks = spec.pop("tasks", None)
        seeded = self.emulator.seed_job(job_id, **spec)
        if tasks:
            self.emulator.seed_tasks(job_id, tasks)
        return 201, seeded

    def _set_job_state(self, ids: list[str], body: Json) -> tuple[int, Any]:
        fields = _renamed(body, {"state": "state", "stateTransitionTime": "state_transition_time"})
        if not isinstance(fields.get("state"), str):
            raise ValueError("'state' is required")
        when = fields.get("state_transition_time")
        moment = parse_iso(when) if isinstance(when, str) else None
        if when is not None and moment is None:
            raise ValueError("'stateTransitionTime' must be an ISO 8601 string")
        return 200, self.emulator.set_job_state(ids[0], fields["state"], state_transition_time=moment)

    def _task_counts(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return _found(self.emulator.get_task_counts(ids[0]))

    def _get_job(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return _found(self.emulator.get_job(ids[0]))

    def _seed_tasks(self, ids: list[str], body: Json) -> tuple[int, Any]:
        specs = body.get("value", [body])
        count = self.emulator.seed_tasks(ids[0], [_renamed(spec, _TASK_FIELDS) for spec in specs])
        return 201, {"count": count}

    def _get_task(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return _found(self.emulator.get_task(ids[0], ids[1]))

    def _prepare_task(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return 200, self.emulator.prepare_task(ids[0], ids[1])

    def _start_task(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return 200, self.emulator.start_task(ids[0], ids[1])

    def _complete_task(self, ids: list[str], body: Json) -> tuple[int, Any]:
        return 200, self.emulator.complete_task(ids[0], ids[1], exit_code=int(body.get("exitCode", 0)))


def _job_spec(body: Json) -> Json:
    """A camelCase job seed (optionally with `tasks`) as the keywords of `BatchEmulator.seed_jobs`."""
    fields = dict(body)
    job_id = fields.pop("id", None)
    if not isinstance(job_id, str):
        raise ValueError("'id' is required")
    tasks = fields.pop("tasks", None)
    spec = {"id": job_id, **_renamed(fields, _JOB_FIELDS)}
    if tasks is not None:
        if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
            raise ValueError("'tasks' must be a list of task objects")
        spec["tasks"] = [_renamed(task, _TASK_FIELDS) for task in tasks]
    return spec


def _found(resource: Json | None) -> tuple[int, Any]:
    return (200, resource) if resource is not None else (404, {"error": "NotFound"})
