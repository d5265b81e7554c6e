"""The Service Bus peer as a process of its own, so it can be stopped gracefully or killed mid-run.

It persists to a SQLite file, and every restart reuses the same file and port, so what it had
acknowledged is still there (docs/servicebus-peer.md, "Persistence").
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
READY = "connection string:"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PeerProcess:
    def __init__(self, port: int, db_path: Path, log_path: Path) -> None:
        self.port = port
        self.db_path = db_path
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self.downtime = 0.0  # seconds the peer was not listening, over all restarts
        self._log: IO[str] | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        )

    def start(self, timeout: float = 30) -> None:
        self._log = self.log_path.open("a")
        self._log.write(f"--- start {self.starts + 1}\n")
        self._log.flush()
        command = [sys.executable, "-m", "emulators.servicebus", "--port", str(self.port), "--db", str(self.db_path)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            if line.startswith(READY):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the Service Bus peer did not start in time")
        else:
            raise RuntimeError(f"the Service Bus peer exited with {self.process.wait()}; see {self.log_path}")
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()
        self.starts += 1

    def _drain(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for _ in stream:
                pass

    def stop(self, hard: bool = False) -> None:
        """SIGTERM (a clean stop) or SIGKILL (a crash); returns once the process is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, hard: bool) -> float:
        """Stop (gracefully or by SIGKILL) and start again on the same port and database."""
        down = time.monotonic()
        self.stop(hard)
        self.start()
        took = time.monotonic() - down
        self.downtime += took
        return took

    def log_errors(self) -> list[str]:
        """Error lines the peer logged, minus proton's harmless 'Couldn't send: BrokenPipeError'."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if (" ERROR " in line or "Traceback" in line) and "BrokenPipeError" not in line]
