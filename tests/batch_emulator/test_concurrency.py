"""Eight threads on shared jobs: optimistic updates lose nothing and every mutation gets a new ETag."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.identity import ManagedIdentityCredential

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import BATCH_SCOPE, RawApi

THREADS = 8
INCREMENTS = 15
TASKS_PER_THREAD = 6
JOBS = ("shared1", "shared2")


class Worker:
    """One thread's mix: counter increments with If-Match, and a task lifecycle of its own."""

    def __init__(self, base_url: str, token: str, index: int) -> None:
        self.api = RawApi(base_url, token)
        self.index = index
        self.etags: list[str] = []
        self.conflicts = 0

    def run(self) -> None:
        try:
            for round_number in range(INCREMENTS):
                for job in JOBS:
                    self.increment(job)
                if round_number < TASKS_PER_THREAD:
                    self.task_lifecycle(JOBS[round_number % 2], f"w{self.index}-t{round_number}", round_number)
        finally:
            self.api.close()

    def increment(self, job: str) -> None:
        """Read-modify-write of the counter task's maxTaskRetryCount, retried on 412."""
        while True:
            current = self.api.call("GET", f"/jobs/{job}/tasks/counter")
            assert current.status_code == 200, current.text
            value = current.json()["constraints"]["maxTaskRetryCount"]
            body = {"constraints": {"maxTaskRetryCount": value + 1}}
            update = self.api.call(
                "PUT", f"/jobs/{job}/tasks/counter", json=body, headers={"If-Match": current.headers["ETag"]}
            )
            if update.status_code == 412:
                self.conflicts += 1
                continue
            assert update.status_code == 200, update.text
            self.etags.append(update.headers["ETag"])
            return

    def task_lifecycle(self, job: str, task_id: str, step: int) -> None:
        """add -> terminate -> reactivate, and every third task deleted at the end."""
        path = f"/jobs/{job}/tasks"
        calls: list[tuple[str, str, dict[str, Any], int]] = [
            ("POST", path, {"json": {"id": task_id, "commandLine": "/bin/true"}}, 201),
            ("POST", f"{path}/{task_id}/terminate", {}, 204),
            ("POST", f"{path}/{task_id}/reactivate", {}, 204),
        ]
        for method, url, kwargs, expected in calls:
            response = self.api.call(method, url, **kwargs)
            assert response.status_code == expected, response.text
            self.etags.append(response.headers["ETag"])
        self.api.call("GET", path, params={"$filter": "state eq 'active'", "maxresults": "5"}).raise_for_status()
        if step % 3 == 0:
            assert self.api.call("DELETE", f"{path}/{task_id}").status_code == 200


def test_eight_threads_leave_consistent_state(
    emu: BatchEmulator, raw: RawApi, credential: ManagedIdentityCredential
) -> None:
    token = credential.get_token(BATCH_SCOPE).token
    for job in JOBS:
        emu.seed_job(job)
        emu.seed_task(job, "counter", max_task_retry_count=0)
    workers = [Worker(emu.url, token, index) for index in range(THREADS)]
    start = threading.Barrier(THREADS)

    def run(worker: Worker) -> None:
        start.wait(timeout=10)
        worker.run()

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(run, worker) for worker in workers]:
            future.result(timeout=60)

    for job in JOBS:
        counter = emu.get_task(job, "counter")
        assert counter is not None
        assert counter["constraints"]["maxTaskRetryCount"] == THREADS * INCREMENTS  # no lost update
    all_etags = [etag for worker in workers for etag in worker.etags]
    assert len(all_etags) == THREADS * (INCREMENTS * len(JOBS) + TASKS_PER_THREAD * 3)
    assert len(set(all_etags)) == len(all_etags)  # every mutation produced a new ETag
    listed = {
        task["id"]
        for job in JOBS
        for task in raw.call("GET", f"/jobs/{job}/tasks", params={"$select": "id"}).json()["value"]
    }
    expected = {f"w{w}-t{step}" for w in range(THREADS) for step in range(TASKS_PER_THREAD) if step % 3} | {"counter"}
    assert listed == expected
    for worker in range(THREADS):
        for step in (1, 2, 4, 5):
            task = emu.get_task(JOBS[step % 2], f"w{worker}-t{step}")
            assert task is not None and task["state"] == "active"
