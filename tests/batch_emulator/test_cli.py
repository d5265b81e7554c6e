"""`python -m emulators.identity` and `python -m emulators.batch` as separate processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from tests.batch_emulator.helpers import make_client, point_credential_at

REPO_ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"http://127\.0\.0\.1:\d+")


@contextmanager
def serve(module: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `python -m module`, wait (bounded) for its ready line and yield the URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(timeout=20)
    try:
        assert lines and "ready" in lines[0], f"{module} did not report ready: {lines}"
        match = URL.search(lines[0])
        assert match is not None
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_processes_work_together(monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        serve("emulators.identity", env={"IDENTITY_HEADER": "cli-secret"}) as identity_url,
        serve("emulators.batch", "--identity-url", identity_url) as batch_url,
    ):
        point_credential_at(monkeypatch, f"{identity_url}/msi/token", "cli-secret")
        client = make_client(batch_url, ManagedIdentityCredential())
        assert list(client.list_jobs()) == []


def test_accept_any_token_flag() -> None:
    with serve("emulators.batch", "--accept-any-token") as batch_url:
        response = requests.get(f"{batch_url}/jobs", params={"api-version": "2025-06-01"}, timeout=5)
        assert response.status_code == 200 and response.json()["value"] == []
