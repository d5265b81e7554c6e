"""Benchmark 1: client cost per command against the Batch emulator (in a separate process).

For each action, three clients make the same HTTP calls one after another on one thread:

* ``product``  - ``shared.batch_client.BatchClient.execute``, built by ``shared.runtime.Runtime``
  with the real ``ManagedIdentityCredential`` against the local identity endpoint;
* ``sdk``      - ``azure.batch.BatchClient`` 15.x with the same credential;
* ``requests`` - a bare ``requests.Session`` loop with the same headers and a cached bearer token.

Each run seeds fresh targets (so every call does the real state change), then times each client on
its own targets: commands per second (wall) and client CPU per command (``time.process_time`` of this
process; the emulator's CPU is in the child process). The clients' order rotates from run to run; ratios
are taken per run, then the median (with the range over the runs).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Final

import requests
from azure.batch import BatchClient as SdkClient
from azure.batch.models._models import BatchJobTerminateOptions  # 15.1 exports it only privately
from azure.core.credentials import TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from bench.emulator_process import RemoteEmulator
from bench.report import put_median
from shared.batch_client import BATCH_SCOPE, BatchClient
from shared.contract import Command
from shared.runtime import Runtime

ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask", "terminateJob")
CLIENTS: Final = ("product", "sdk", "requests")
API_VERSION: Final = "2025-06-01"
ACCOUNT: Final = "local"
WARMUP: Final = 5
# azure-batch 15.1 cannot send Terminate Job without options, so every client sends the same reason body.
REASON: Final = "bench"
# The state each action needs to do real work (not answer a conflict).
TASK_SEED: Final[dict[str, dict[str, Any]]] = {
    "terminateTask": {"state": "running"},
    "deleteTask": {"state": "completed", "exitCode": 0},
    "reactivateTask": {"state": "completed", "exitCode": 1},
}

Call = Callable[[str, str], None]  # (job id, task id or "") -> perform the action once


class AllowLoopbackHttp(SansIOHTTPPolicy[Any, Any]):
    """azure-core refuses bearer tokens over plain http; the emulator listens on loopback http."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False


def product_environment(batch_url: str) -> dict[str, str]:
    """App settings pointing the product at the emulator (as tests/support.py product_env does)."""
    return {
        "BATCH_ACCOUNTS": f'{{"{ACCOUNT}": "{batch_url}"}}',
        "BATCH_ALLOW_HTTP_LOOPBACK": "true",
        "ServiceBusConnection": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v",
        "AZURE_CLIENT_ID": "bench-identity",
        "BATCH_API_VERSION": API_VERSION,
    }


@contextmanager
def identity_environment_vars(token_url: str, secret: str) -> Iterator[None]:
    """ManagedIdentityCredential reads the endpoint from the process environment."""
    saved = {name: os.environ.get(name) for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    os.environ.update({"IDENTITY_ENDPOINT": token_url, "IDENTITY_HEADER": secret})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _product_call(client: BatchClient, action: str) -> Call:
    def call(job: str, task: str) -> None:
        reason = REASON if action == "terminateJob" else None
        command = Command(action, job, task or None, ACCOUNT, f"bench-{job}-{task}", reason=reason)
        answer = client.execute(command)
        if not answer.ok:
            raise RuntimeError(f"product {action}: HTTP {answer.status} {answer.code}")

    return call


def _sdk_call(client: Any, action: str) -> Call:
    if action in TASK_SEED:
        method: Call = {
            "terminateTask": client.terminate_task,
            "deleteTask": client.delete_task,
            "reactivateTask": client.reactivate_task,
        }[action]
        return method
    # begin_terminate_job wraps the same POST in an LRO poller that then polls Get Job; the internal
    # operation is the one HTTP call the other clients make.
    options = BatchJobTerminateOptions(termination_reason=REASON)
    return lambda job, task: client._terminate_job_internal(job, options)


def _bare_call(session: requests.Session, base: str, token: str, action: str) -> Call:
    static = {"Authorization": f"Bearer {token}", "return-client-request-id": "true", "Accept": "application/json"}
    method, suffix = {
        "terminateTask": ("POST", "/terminate"),
        "deleteTask": ("DELETE", ""),
        "reactivateTask": ("POST", "/reactivate"),
        "terminateJob": ("POST", "/terminate"),
    }[action]

    body = json.dumps({"terminateReason": REASON}) if action == "terminateJob" else None
    if body is not None:
        static["Content-Type"] = "application/json; odata=minimalmetadata"

    def call(job: str, task: str) -> None:
        path = f"/jobs/{job}/tasks/{task}{suffix}" if task else f"/jobs/{job}{suffix}"
        headers = {**static, "ocp-date": formatdate(usegmt=True), "client-request-id": str(uuid.uuid4())}
        url = f"{base}{path}?api-version={API_VERSION}"
        response = session.request(method, url, data=body, headers=headers, timeout=30)
        if response.status_code >= 300:
            raise RuntimeError(f"requests {action}: HTTP {response.status_code}")

    return call


@dataclass(frozen=True)
class Measurement:
    per_second: float
    cpu_us: float


def _seed(emulator: RemoteEmulator, action: str, client: str, run: int, count: int) -> list[tuple[str, str]]:
    """Fresh targets for one client's run of one action."""
    if action == "terminateJob":
        jobs = [f"tj-{client}-{run}-{i}" for i in range(count)]
        for job in jobs:
            emulator.seed_job(job)
        return [(job, "") for job in jobs]
    job = f"{action}-{client}-{run}"
    emulator.seed_job(job)
    emulator.seed_tasks(job, [{"id": f"t{i}", **TASK_SEED[action]} for i in range(count)])
    return [(job, f"t{i}") for i in range(count)]


def _timed(call: Call, targets: list[tuple[str, str]]) -> Measurement:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for job, task in targets:
        call(job, task)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Measurement(len(targets) / wall, cpu / len(targets) * 1e6)


def run(calls: int = 300, runs: int = 3) -> dict[str, Any]:
    """Median commands/s and CPU µs per command, per action and client, and the per-run ratios."""
    with RemoteEmulator() as emulator, identity_environment_vars(emulator.identity_url, emulator.identity_secret):
        runtime = Runtime(product_environment(emulator.batch_url))
        product = runtime.batch.get()
        credential: TokenCredential = runtime.credential.get()
        sdk = SdkClient(emulator.batch_url, credential, per_call_policies=[AllowLoopbackHttp()])
        session = requests.Session()
        token = credential.get_token(BATCH_SCOPE).token
        makers: dict[str, Callable[[str], Call]] = {
            "product": lambda action: _product_call(product, action),
            "sdk": lambda action: _sdk_call(sdk, action),
            "requests": lambda action: _bare_call(session, emulator.batch_url, token, action),
        }
        results: dict[str, Any] = {}
        for action in ACTIONS:
            samples: dict[str, list[Measurement]] = {client: [] for client in CLIENTS}
            for number in range(runs):
                emulator.reset()
                order = CLIENTS[number % len(CLIENTS) :] + CLIENTS[: number % len(CLIENTS)]  # rotate who goes first
                for client in order:
                    call = makers[client](action)
                    warm = _seed(emulator, action, client, -1 - number, WARMUP)
                    _timed(call, warm)  # token, connection, first-call caches
                    targets = _seed(emulator, action, client, number, calls)
                    samples[client].append(_timed(call, targets))
            results[action] = _summarise(samples)
        session.close()
        sdk.close()
        return {"calls_per_run": calls, "runs": runs, "actions": results}


def _summarise(samples: dict[str, list[Measurement]]) -> dict[str, Any]:
    def ratios(numerator: str, denominator: str, pick: Callable[[Measurement], float]) -> list[float]:
        return [pick(a) / pick(b) for a, b in zip(samples[numerator], samples[denominator], strict=True)]

    summary: dict[str, Any] = {}
    for client, measurements in samples.items():
        figures: dict[str, Any] = {}
        put_median(figures, "per_second", [m.per_second for m in measurements])
        put_median(figures, "cpu_us_per_command", [m.cpu_us for m in measurements])
        summary[client] = figures
    put_median(summary, "throughput_vs_sdk", ratios("product", "sdk", lambda m: m.per_second))
    put_median(summary, "throughput_vs_requests", ratios("product", "requests", lambda m: m.per_second))
    put_median(summary, "cpu_vs_sdk", ratios("product", "sdk", lambda m: m.cpu_us))
    put_median(summary, "cpu_vs_requests", ratios("product", "requests", lambda m: m.cpu_us))
    return summary
