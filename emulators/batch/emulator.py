"""`BatchEmulator`: the server plus the Python control API that tests and demos drive it with."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from emulators._http import BackgroundHttpServer
from emulators.batch.admin import AdminApi
from emulators.batch.auth import DEFAULT_JWKS_URL, TokenVerifier
from emulators.batch.errors import BatchApiError
from emulators.batch.faults import Fault, FaultInjector
from emulators.batch.server import BatchHandler
from emulators.batch.store import Store
from emulators.batch.views import job_url, project, task_url

DEFAULT_PORT = 8091
Json = dict[str, Any]


class BatchEmulator(BackgroundHttpServer):
    """A local Azure Batch account (jobs and tasks) over HTTP, with test controls.

    `jwks_url` is where token signing keys come from (by default the identity endpoint started with
    default flags); `accept_any_token=True` skips token checks altogether.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        jwks_url: str | None = DEFAULT_JWKS_URL,
        accept_any_token: bool = False,
        fault_seed: int | None = None,
    ) -> None:
        super().__init__(host, port)
        self.store = Store()
        self.faults = FaultInjector(fault_seed)
        self.verifier = TokenVerifier(jwks_url, accept_any_token)
        self.admin = AdminApi(self)
        self._count_lock = threading.Lock()
        self._request_count = 0

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BatchHandler):
            owner = emulator

        return Handler

    # ---- observation -------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Batch API requests received (admin calls excluded)."""
        return self._request_count

    def count_request(self) -> None:
        with self._count_lock:
            self._request_count += 1

    def get_job(self, job_id: str) -> Json | None:
        """The job's REST representation, or None when it does not exist."""
        try:
            job = self.store.get_job(job_id)
        except BatchApiError:
            return None
        return copy.deepcopy(project(job, job_url(self.url, job["id"]), None))

    def get_task(self, job_id: str, task_id: str) -> Json | None:
        """The task's REST representation, or None when it (or its job) does not exist."""
        try:
            found = self.store.get_task(job_id, task_id)
        except BatchApiError:
            return None
        url = task_url(self.url, found.job["id"], found.task["id"])
        return copy.deepcopy(project(found.task, url, None))

    # ---- seeding and task runs ---------------------------------------------------------------

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
        """Create (or replace) a job in any state. Seeded `terminating`/`deleting` states persist.

        A job seeded in a state other than `active` gets a `previousState` (the state it most plausibly
        came from, unless given) dated at its creation (unless given)."""
        self.store.seed_job(
            job_id,
            state=state,
            pool_id=pool_id,
            creation_time=creation_time,
            state_transition_time=state_transition_time,
            terminate_reason=terminate_reason,
            previous_state=previous_state,
            previous_state_transition_time=previous_state_transition_time,
        )
        return self._job_view(job_id)

    def seed_jobs(self, jobs: Iterable[Mapping[str, Any]]) -> int:
        """Bulk seed: each mapping has `id` plus any keyword of `seed_job`, and optionally `tasks` (task
        mappings as for `seed_tasks`). One lock for the whole batch; returns the number of jobs."""
        return self.store.seed_jobs(jobs)

    def set_job_state(self, job_id: str, state: str, *, state_transition_time: datetime | None = None) -> Json:
        """Change an existing job's state (as of `state_transition_time`, default now). The old state and
        its time become `previousState` / `previousStateTransitionTime`. No timed transition follows."""
        self.store.set_job_state(job_id, state, state_transition_time)
        return self._job_view(job_id)

    def get_task_counts(self, job_id: str) -> Json | None:
        """The job's Get Task Counts body (`taskCounts`, `taskSlotCounts`), or None without such a job."""
        try:
            return self.store.get_task_counts(job_id)
        except BatchApiError:
            return None

    def seed_task(
        self,
        job_id: str,
        task_id: str,
        *,
        state: str = "active",
        exit_code: int | None = None,
        state_transition_time: datetime | None = None,
        creation_time: datetime | None = None,
        command_line: str | None = None,
        max_task_retry_count: int | None = None,
        retry_count: int = 0,
        number_of_instances: int | None = None,
    ) -> Json:
        """Create (or replace) a task in any state; `completed` with exit code 0 (or none) succeeded."""
        spec: Json = {
            "id": task_id,
            "state": state,
            "exit_code": exit_code,
            "state_transition_time": state_transition_time,
            "creation_time": creation_time,
            "max_task_retry_count": max_task_retry_count,
            "retry_count": retry_count,
            "number_of_instances": number_of_instances,
        }
        if command_line is not None:
            spec["command_line"] = command_line
        self.store.seed_tasks(job_id, [spec])
        return self._task_view(job_id, task_id)

    def seed_tasks(self, job_id: str, tasks: Iterable[Mapping[str, Any]]) -> int:
        """Bulk seed: each mapping has `id` plus any keyword of `seed_task`. Returns the count."""
        return self.store.seed_tasks(job_id, tasks)

    def prepare_task(self, job_id: str, task_id: str) -> Json:
        """Move an active task to preparing (a node is getting ready to run it)."""
        self.store.prepare_task(job_id, task_id)
        return self._task_view(job_id, task_id)

    def start_task(self, job_id: str, task_id: str) -> Json:
        """Move an active or preparing task to running (a node runs it)."""
        self.store.start_task(job_id, task_id)
        return self._task_view(job_id, task_id)

    def complete_task(self, job_id: str, task_id: str, exit_code: int = 0) -> Json:
        """End the task's current run; non-zero exit codes retry while retries remain."""
        self.store.complete_task(job_id, task_id, exit_code)
        return self._task_view(job_id, task_id)

    def set_job_transition_delay(self, terminate: float | None = None, delete: float | None = None) -> None:
        """Seconds a job spends in `terminating` / `deleting` after Terminate / Delete Job."""
        self.store.set_transition_delays(terminate, delete)

    # ---- faults and reset --------------------------------------------------------------------

    def inject_fault(
        self,
        operation: str = "*",
        *,
        status: int | None = None,
        code: str | None = None,
        count: int | None = None,
        probability: float | None = None,
        retry_after: float | None = None,
        latency: float | None = None,
        drop_connection: bool = False,
    ) -> int:
        """Make matching requests fail; fires `count` times (default once, or unbounded with a
        `probability`). Returns the fault's id."""
        if count is None and probability is None:
            count = 1
        fault = Fault(operation, status, code, count, probability, retry_after, latency, drop_connection)
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        """Forget all jobs, tasks, faults and delays, and zero the request counter."""
        self.store.reset()
        self.faults.reset()
        with self._count_lock:
            self._request_count = 0

    def _job_view(self, job_id: str) -> Json:
        view = self.get_job(job_id)
        assert view is not None, "the job was just written"
        return view

    def _task_view(self, job_id: str, task_id: str) -> Json:
        view = self.get_task(job_id, task_id)
        assert view is not None, "the task was just written"
        return view
