"""In-memory Batch account state: jobs, tasks and their state machines, behind one lock.

Resources are kept as their REST JSON. A stored dict is never changed after it is published: every
mutation stores a fresh copy, so readers may serialise what they got without holding the lock.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulators.batch.conditions import NO_CONDITIONS, Conditions
from emulators.batch.errors import BatchApiError, ControlError
from emulators.batch.lifecycle import (
    finish_run,
    make_subtasks,
    mirror_subtask,
    new_job,
    new_task,
    prepare_run,
    require_id,
    seeded_job,
    seeded_task,
    start_run,
    terminate_run,
    transition,
)
from emulators.batch.odata_filter import JOB_STATES, Predicate
from emulators.batch.timefmt import format_iso, parse_iso, utcnow

Json = dict[str, Any]

# Job states in which task changes are refused, and the conflict each one reports.
_JOB_BLOCKS_TASK_CHANGES = {
    "completed": "JobCompleted",
    "terminating": "JobBeingTerminated",
    "deleting": "JobBeingDeleted",
}
_BULK_THRESHOLD = 64
_JOB_BLOCKS_TASK_DELETE = {"terminating": "JobBeingTerminated", "deleting": "JobBeingDeleted"}


@dataclass
class JobRecord:
    data: Json
    tasks: dict[str, Json] = field(default_factory=dict)
    # Lower-cased task ids in sorted order: the paging order and the $skiptoken space.
    order: list[str] = field(default_factory=list)
    subtasks: dict[str, list[Json]] = field(default_factory=dict)
    # time.monotonic() at which a terminating/deleting job finishes that transition.
    transition_due: float | None = None


@dataclass(frozen=True)
class AddResult:
    """One entry of an Add Task Collection answer: the stored task, or why it was refused."""

    task_id: str
    task: Json | None = None
    error: BatchApiError | None = None


@dataclass(frozen=True)
class Located:
    """A task together with its job (whose stored id, not the caller's spelling, names URLs)."""

    job: Json
    task: Json


@dataclass(frozen=True)
class Page:
    items: list[Json]
    next_after: str | None
    parent: Json | None


class Store:
    """All jobs and tasks of one emulated Batch account."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._job_order: list[str] = []
        self._pending: set[str] = set()
        self._last_etag = 0
        self.terminate_delay = 0.0
        self.delete_delay = 0.0

    # ---- bookkeeping -------------------------------------------------------------------------

    def _new_etag(self) -> str:
        # Based on the clock like the service's, and strictly increasing so no two mutations share one.
        self._last_etag = max(self._last_etag + 1, time.time_ns() // 100)
        return f"0x8D{self._last_etag % 16**13:013X}"

    def _stamp(self, data: Json, now: str) -> Json:
        data["eTag"] = self._new_etag()
        data["lastModified"] = now
        return data

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._job_order.clear()
            self._pending.clear()
            self.terminate_delay = self.delete_delay = 0.0

    def _lookup(self, job_id: str) -> JobRecord | None:
        """The job as of now: a due terminate/delete finishes first (transitions are lazy)."""
        key = job_id.lower()
        if key in self._pending:
            self._finish_transition(key)
        return self._jobs.get(key)

    def _job(self, job_id: str) -> JobRecord:
        record = self._lookup(job_id)
        if record is None:
            raise BatchApiError("JobNotFound")
        return record

    def _task(self, job: JobRecord, task_id: str) -> Json:
        task = job.tasks.get(task_id.lower())
        if task is None:
            raise BatchApiError("TaskNotFound")
        return task

    def _finish_transition(self, key: str) -> None:
        record = self._jobs[key]
        if record.transition_due is None or time.monotonic() < record.transition_due:
            return
        self._pending.discard(key)
        record.transition_due = None
        if record.data["state"] == "deleting":
            self._remove_job(key)
        else:
            now = format_iso(utcnow())
            data = transition(record.data, "completed", now)
            data["executionInfo"] = {**data["executionInfo"], "endTime": now}
            record.data = self._stamp(data, now)

    def _finish_due_transitions(self) -> None:
        for key in list(self._pending):
            self._finish_transition(key)

    def _remove_job(self, key: str) -> None:
        del self._jobs[key]
        del self._job_order[bisect.bisect_left(self._job_order, key)]

    def _store_task(self, job: JobRecord, task: Json) -> Json:
        key = task["id"].lower()
        if key not in job.tasks:
            bisect.insort(job.order, key)
        job.tasks[key] = task
        return task

    # ---- jobs --------------------------------------------------------------------------------

    def add_job(self, body: Mapping[str, Any]) -> Json:
        job_id = require_id(body.get("id"))
        pool_info = body.get("poolInfo")
        if not isinstance(pool_info, dict):
            raise BatchApiError("MissingRequiredProperty", {"PropertyName": "poolInfo"})
        with self._lock:
            if self._lookup(job_id) is not None:
                raise BatchApiError("JobExists")
            return self._put_job(dict(body), "active", None, None)

    def _put_job(self, body: Json, state: str, created: str | None, transitioned: str | None) -> Json:
        now = format_iso(utcnow())
        data = new_job(body, state, created or now, transitioned or created or now)
        key = data["id"].lower()
        existing = self._jobs.get(key)
        if existing is None:
            bisect.insort(self._job_order, key)
            self._jobs[key] = JobRecord(self._stamp(data, now))
        else:
            existing.data = self._stamp(data, now)
            existing.transition_due = None
            self._pending.discard(key)
        return data

    def get_job(self, job_id: str, conditions: Conditions = NO_CONDITIONS) -> Json:
        with self._lock:
            data = self._job(job_id).data
            _check(conditions, data, is_read=True)
            return data

    def list_jobs(self, predicate: Predicate | None, after: str | None, limit: int) -> Page:
        with self._lock:
            self._finish_due_transitions()
            items, next_after = _page(self._job_order, lambda key: self._jobs[key].data, predicate, after, limit)
            return Page(items, next_after, None)

    def terminate_job(
        self, job_id: str, reason: str | None, conditions: Conditions = NO_CONDITIONS, force: bool = False
    ) -> Json:
        # `force` only matters for nodes still processing the termination; there are none here.
        del force
        with self._lock:
            job = self._job(job_id)
            _check(conditions, job.data, is_read=False)
            blocked = _JOB_BLOCKS_TASK_CHANGES.get(job.data["state"])
            if blocked:
                raise BatchApiError(blocked)
            now = format_iso(utcnow())
            data = transition(job.data, "terminating", now)
            data["executionInfo"] = {**data["executionInfo"], "terminateReason": reason or "UserTerminate"}
            job.data = self._stamp(data, now)
            self._terminate_running(job, now)
            self._schedule(job, self.terminate_delay)
            return job.data

    def delete_job(self, job_id: str, conditions: Conditions = NO_CONDITIONS, force: bool = False) -> None:
        del force  # as for terminate_job
        with self._lock:
            job = self._job(job_id)
            _check(conditions, job.data, is_read=False)
            if job.data["state"] == "deleting":
                raise BatchApiError("JobBeingDeleted")
            now = format_iso(utcnow())
            job.data = self._stamp(transition(job.data, "deleting", now), now)
            # While deleting, the service terminates the job's running tasks; then job and tasks go.
            self._terminate_running(job, now)
            self._schedule(job, self.delete_delay)

    def _terminate_running(self, job: JobRecord, now: str) -> None:
        for key, task in list(job.tasks.items()):
            if task["state"] in ("preparing", "running"):
                self._replace_task(job, key, terminate_run(task, now), now)

    def get_task_counts(self, job_id: str) -> Json:
        """Task Counts: tasks and their required slots per state; preparing counts as running."""
        with self._lock:
            tasks = list(self._job(job_id).tasks.values())
        names = ("active", "running", "completed", "succeeded", "failed")
        counts = dict.fromkeys(names, 0)
        slots = dict.fromkeys(names, 0)
        for task in tasks:
            state = task["state"]
            buckets = ["running" if state == "preparing" else state]
            if state == "completed":
                buckets.append("succeeded" if task["executionInfo"].get("result") == "success" else "failed")
            required = int(task.get("requiredSlots", 1))
            for bucket in buckets:
                counts[bucket] += 1
                slots[bucket] += required
        return {"taskCounts": counts, "taskSlotCounts": slots}

    def _schedule(self, job: JobRecord, delay: float) -> None:
        key = job.data["id"].lower()
        job.transition_due = time.monotonic() + delay
        self._pending.add(key)
        if delay <= 0:
            self._finish_transition(key)

    # ---- tasks -------------------------------------------------------------------------------

    def get_task(self, job_id: str, task_id: str, conditions: Conditions = NO_CONDITIONS) -> Located:
        with self._lock:
            job = self._job(job_id)
            task = self._task(job, task_id)
            _check(conditions, task, is_read=True)
            return Located(job.data, task)

    def list_tasks(self, job_id: str, predicate: Predicate | None, after: str | None, limit: int) -> Page:
        with self._lock:
            job = self._job(job_id)
            items, next_after = _page(job.order, job.tasks.__getitem__, predicate, after, limit)
            return Page(items, next_after, job.data)

    def list_subtasks(self, job_id: str, task_id: str) -> tuple[Json, list[Json]]:
        with self._lock:
            job = self._job(job_id)
            task = self._task(job, task_id)
            return task, list(job.subtasks.get(task["id"].lower(), []))

    def add_task(self, job_id: str, body: Mapping[str, Any]) -> Located:
        task_id = require_id(body.get("id"))
        if not isinstance(body.get("commandLine"), str):
            raise BatchApiError("MissingRequiredProperty", {"PropertyName": "commandLine"})
        with self._lock:
            job = self._job(job_id)
            _refuse_in(job, _JOB_BLOCKS_TASK_CHANGES)
            return Located(job.data, self._add_task_to(job, task_id, body))

    def _add_task_to(self, job: JobRecord, task_id: str, body: Mapping[str, Any]) -> Json:
        key = task_id.lower()
        if key in job.tasks:
            raise BatchApiError("TaskExists")
        for task_kind, code in (
            ("jobPreparationTask", "TaskIdSameAsJobPreparationTask"),
            ("jobReleaseTask", "TaskIdSameAsJobReleaseTask"),
        ):
            special = job.data.get(task_kind)
            if isinstance(special, dict) and str(special.get("id", task_kind.removesuffix("Task"))).lower() == key:
                raise BatchApiError(code)
        now = format_iso(utcnow())
        return self._store_task(job, self._stamp(new_task(body, now, now), now))

    def add_task_collection(self, job_id: str, bodies: list[Json]) -> tuple[Json, list[AddResult]]:
        """Add each task on its own merit; one task's failure is reported inline, not raised."""
        with self._lock:
            job = self._job(job_id)
            _refuse_in(job, _JOB_BLOCKS_TASK_CHANGES)
            return job.data, [self._try_add(job_id, body) for body in bodies]

    def _try_add(self, job_id: str, body: Json) -> AddResult:
        task_id = str(body.get("id", ""))
        try:
            return AddResult(task_id, task=self.add_task(job_id, body).task)
        except BatchApiError as error:
            return AddResult(task_id, error=error)

    def update_task(
        self, job_id: str, task_id: str, body: Mapping[str, Any], conditions: Conditions = NO_CONDITIONS
    ) -> Located:
        constraints = body.get("constraints") or {}
        if not isinstance(constraints, dict):
            raise BatchApiError("InvalidPropertyValue", {"PropertyName": "constraints"})
        retries = constraints.get("maxTaskRetryCount")
        if retries is not None and (not isinstance(retries, int) or retries < -1):
            raise BatchApiError("InvalidPropertyValue", {"PropertyName": "maxTaskRetryCount"})
        with self._lock:
            job, task = self._writable_task(job_id, task_id, conditions, _JOB_BLOCKS_TASK_CHANGES)
            if task["state"] == "completed":
                raise BatchApiError("TaskCompleted")
            now = format_iso(utcnow())
            updated = {**task, "constraints": {**task["constraints"], **constraints}}
            return Located(job.data, self._replace_task(job, task["id"].lower(), updated, now))

    def delete_task(self, job_id: str, task_id: str, conditions: Conditions = NO_CONDITIONS) -> None:
        with self._lock:
            job, task = self._writable_task(job_id, task_id, conditions, _JOB_BLOCKS_TASK_DELETE)
            key = task["id"].lower()
            del job.tasks[key]
            del job.order[bisect.bisect_left(job.order, key)]
            job.subtasks.pop(key, None)

    def terminate_task(self, job_id: str, task_id: str, conditions: Conditions = NO_CONDITIONS) -> Located:
        with self._lock:
            job, task = self._writable_task(job_id, task_id, conditions, _JOB_BLOCKS_TASK_CHANGES)
            if task["state"] == "completed":
                raise BatchApiError("TaskCompleted")
            now = format_iso(utcnow())
            return Located(job.data, self._replace_task(job, task["id"].lower(), terminate_run(task, now), now))

    def reactivate_task(self, job_id: str, task_id: str, conditions: Conditions = NO_CONDITIONS) -> Located:
        with self._lock:
            job, task = self._writable_task(job_id, task_id, conditions, _JOB_BLOCKS_TASK_CHANGES)
            if task["state"] != "completed":
                raise BatchApiError("TaskNotCompleted")
            if task["executionInfo"].get("result") == "success":
                raise BatchApiError("TaskSucceeded")
            now = format_iso(utcnow())
            reactivated = transition(task, "active", now)
            reactivated["executionInfo"] = {"retryCount": 0, "requeueCount": 0}
            reactivated.pop("nodeInfo", None)
            return Located(job.data, self._replace_task(job, task["id"].lower(), reactivated, now))

    def _writable_task(
        self, job_id: str, task_id: str, conditions: Conditions, blocked_states: Mapping[str, str]
    ) -> tuple[JobRecord, Json]:
        """Look up a task for a write: 404s first, then the precondition, then the job's state."""
        job = self._job(job_id)
        task = self._task(job, task_id)
        _check(conditions, task, is_read=False)
        _refuse_in(job, blocked_states)
        return job, task

    def _replace_task(self, job: JobRecord, key: str, task: Json, now: str) -> Json:
        stamped = self._stamp(task, now)
        job.tasks[key] = stamped
        if key in job.subtasks:
            job.subtasks[key] = [mirror_subtask(sub, stamped, now) for sub in job.subtasks[key]]
        return stamped

    # ---- test control ------------------------------------------------------------------------

    def seed_job(
        self,
        job_id: str,
        *,
        state: str = "active",
        pool_id: str = "emulator-pool",
        creation_time: datetime | str | None = None,
        state_transition_time: datetime | str | None = None,
        terminate_reason: str | None = None,
        previous_state: str | None = None,
        previous_state_transition_time: datetime | str | None = None,
    ) -> Json:
        spec: Json = {
            "id": job_id,
            "state": state,
            "pool_id": pool_id,
            "creation_time": creation_time,
            "state_transition_time": state_transition_time,
            "terminate_reason": terminate_reason,
            "previous_state_transition_time": previous_state_transition_time,
        }
        if previous_state is not None:  # absent, not None, lets the seed pick the plausible predecessor
            spec["previous_state"] = previous_state
        with self._lock:
            self.seed_jobs([spec])
            return self._jobs[job_id.lower()].data

    def seed_jobs(self, specs: Iterable[Mapping[str, Any]]) -> int:
        """Create or replace many jobs (each with optional `tasks`) under one lock; returns the job count.

        Every spec is validated before anything is stored, so a bad one changes nothing."""
        now = format_iso(utcnow())
        built = [
            (seeded_job(spec, now), [seeded_task(task, now) for task in spec.get("tasks") or ()]) for spec in specs
        ]
        with self._lock:
            fresh: list[str] = []
            for data, tasks in built:
                key = data["id"].lower()
                record = self._jobs.get(key)
                if record is None:
                    record = self._jobs[key] = JobRecord(self._stamp(data, now))
                    fresh.append(key)
                else:
                    record.data = self._stamp(data, now)
                    record.transition_due = None
                    self._pending.discard(key)
                if tasks:
                    self._put_tasks(record, tasks, now)
            _insert_sorted(self._job_order, fresh, self._jobs)
        return len(built)

    def seed_tasks(self, job_id: str, specs: Iterable[Mapping[str, Any]]) -> int:
        """Create or replace many tasks under one lock; returns how many were stored."""
        now = format_iso(utcnow())
        built = [seeded_task(spec, now) for spec in specs]
        with self._lock:
            self._put_tasks(self._job(job_id), built, now)
        return len(built)

    def _put_tasks(self, job: JobRecord, built: list[Json], now: str) -> None:
        fresh = [task["id"].lower() for task in built if task["id"].lower() not in job.tasks]
        for task in built:
            key = task["id"].lower()
            job.tasks[key] = self._stamp(task, now)
            job.subtasks.pop(key, None)
            if task.get("multiInstanceSettings") and task["state"] != "active":
                job.subtasks[key] = make_subtasks(task, now)
        _insert_sorted(job.order, list(dict.fromkeys(fresh)), job.tasks)

    def set_job_state(self, job_id: str, state: str, state_transition_time: datetime | None = None) -> Json:
        """Move a job to `state` as a state change: previousState and both transition times follow.

        A job moved to `terminating` or `deleting` this way stays there (no timed transition)."""
        if state not in JOB_STATES:
            raise ControlError(f"unknown job state {state!r}")
        with self._lock:
            job = self._job(job_id)
            if job.data["state"] == state:
                raise ControlError(f"job {job_id} is already {state}")
            now = format_iso(utcnow())
            when = format_iso(state_transition_time) if state_transition_time else now
            data = transition(job.data, state, when)
            if state == "completed":
                data["executionInfo"] = {**data["executionInfo"], "endTime": when}
            job.data = self._stamp(data, now)
            job.transition_due = None
            self._pending.discard(job.data["id"].lower())
            return job.data

    def prepare_task(self, job_id: str, task_id: str) -> Json:
        with self._lock:
            job = self._job(job_id)
            task = self._task(job, task_id)
            if task["state"] != "active":
                raise ControlError(f"task {task_id} is {task['state']}, not active")
            now = format_iso(utcnow())
            return self._replace_task(job, task["id"].lower(), prepare_run(task, job.data, now), now)

    def start_task(self, job_id: str, task_id: str) -> Json:
        with self._lock:
            job = self._job(job_id)
            task = self._task(job, task_id)
            if task["state"] not in ("active", "preparing"):
                raise ControlError(f"task {task_id} is {task['state']}, not active or preparing")
            now = format_iso(utcnow())
            running = start_run(task, job.data, now)
            key = task["id"].lower()
            if running.get("multiInstanceSettings"):
                job.subtasks[key] = make_subtasks(running, now)
            return self._replace_task(job, key, running, now)

    def complete_task(self, job_id: str, task_id: str, exit_code: int) -> Json:
        """Finish a task's run; a failed run with retries left goes back to active, like the service."""
        with self._lock:
            job = self._job(job_id)
            task = self._task(job, task_id)
            if task["state"] == "completed":
                raise ControlError(f"task {task_id} is already completed")
            now = format_iso(utcnow())
            if task["state"] != "running":
                task = start_run(task, job.data, now)
            return self._replace_task(job, task["id"].lower(), finish_run(task, exit_code, now), now)

    def set_transition_delays(self, terminate: float | None, delete: float | None) -> None:
        with self._lock:
            if terminate is not None:
                self.terminate_delay = max(0.0, terminate)
            if delete is not None:
                self.delete_delay = max(0.0, delete)


# ---- pure helpers: each returns a new dict and leaves its input untouched ---------------------


def _check(conditions: Conditions, data: Json, is_read: bool) -> None:
    if conditions.header is not None:
        conditions.check(data["eTag"], parse_iso(data["lastModified"]), is_read)


def _refuse_in(job: JobRecord, blocked_states: Mapping[str, str]) -> None:
    code = blocked_states.get(job.data["state"])
    if code:
        raise BatchApiError(code)


def _insert_sorted(order: list[str], fresh: list[str], everything: Mapping[str, Any]) -> None:
    """Add new keys to a sorted key list: one sort beats many sorted inserts for a bulk load, and a few
    inserts are cheaper than a sort."""
    if len(fresh) > _BULK_THRESHOLD:
        order[:] = sorted(everything)
    else:
        for key in fresh:
            bisect.insort(order, key)


def _page(
    order: list[str],
    lookup: Callable[[str], Json],
    predicate: Predicate | None,
    after: str | None,
    limit: int,
) -> tuple[list[Json], str | None]:
    """Up to `limit` matching items after key `after`, and the key to continue from (if any)."""
    start = bisect.bisect_right(order, after) if after is not None else 0
    items: list[Json] = []
    for index in range(start, len(order)):
        item = lookup(order[index])
        if predicate is None or predicate(item):
            items.append(item)
            if len(items) == limit:
                more = index + 1 < len(order)
                return items, order[index] if more else None
    return items, None
