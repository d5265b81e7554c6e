"""The Batch emulator and the identity endpoint in a child process, so their CPU is not the client's.

``python -m bench.emulator_process`` starts both on free loopback ports, prints one JSON line with their
addresses and serves until its stdin closes. ``RemoteEmulator`` runs it and seeds through the emulator's
admin HTTP API (``/_emulator/``), which calls the same fast bulk ``seed_tasks`` a Python test would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

ROOT = Path(__file__).resolve().parents[1]
SEED_CHUNK = 1000


def main() -> None:
    from emulators.batch import BatchEmulator  # noqa: PLC0415 - only the child process needs the servers
    from emulators.identity import IdentityEndpoint  # noqa: PLC0415

    identity = IdentityEndpoint(host="127.0.0.1", port=0).start()
    batch = BatchEmulator(host="127.0.0.1", port=0, jwks_url=identity.jwks_url).start()
    ready = {"batch": batch.url, "identity": identity.token_url, "secret": identity.header_secret}
    print(json.dumps(ready), flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin (or dies)
    finally:
        batch.stop()
        identity.stop()


class RemoteEmulator:
    """A Batch emulator plus identity endpoint in a subprocess, seeded over the admin API."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.batch_url = ""
        self.identity_url = ""
        self.identity_secret = ""
        self._admin = requests.Session()

    def start(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.emulator_process"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process exited before it was ready")
        ready = json.loads(line)
        self.batch_url, self.identity_url, self.identity_secret = ready["batch"], ready["identity"], ready["secret"]
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        self._admin.close()
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._admin.post(f"{self.batch_url}/_emulator/{path}", json=body, timeout=60)
        if response.status_code >= 300:
            raise RuntimeError(f"admin {path}: HTTP {response.status_code} {response.text[:200]}")
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        self._post("reset", {})

    def seed_job(self, job_id: str, **fields: Any) -> None:
        self._post("jobs", {"id": job_id, **fields})

    def seed_tasks(self, job_id: str, tasks: Iterable[Mapping[str, Any]]) -> int:
        """Bulk seed (camelCase fields of the admin API), in chunks of SEED_CHUNK."""
        specs = list(tasks)
        count = 0
        for start in range(0, len(specs), SEED_CHUNK):
            count += int(self._post(f"jobs/{job_id}/tasks", {"value": specs[start : start + SEED_CHUNK]})["count"])
        return count

    def request_count(self) -> int:
        response = self._admin.get(f"{self.batch_url}/_emulator/stats", timeout=10)
        return int(response.json()["requestCount"])


if __name__ == "__main__":
    main()
