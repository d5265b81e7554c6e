"""The Batch emulator with a request log: every API request's method, path and client-request-id.

The emulator's admin API only counts requests (``GET /_emulator/stats``); the checks need to know
which command each request was made for. The product sends ``client-request-id`` = uuid5(commandId)
on every call, so logging that header is enough to attribute each call.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import SplitResult, unquote

from emulators.batch import BatchEmulator
from emulators.batch.server import BatchHandler
from tests.chaos.model import BatchCall


class RecordingBatchEmulator(BatchEmulator):
    def __init__(self, port: int, jwks_url: str, fault_seed: int | None) -> None:
        super().__init__(port=port, jwks_url=jwks_url, fault_seed=fault_seed)
        self.calls: list[BatchCall] = []
        self._log_lock = threading.Lock()

    def record(self, method: str, path: str, client_request_id: str) -> None:
        segments = [unquote(part) for part in path.strip("/").split("/")]
        job_id = segments[1] if len(segments) > 1 and segments[0] == "jobs" else ""
        with self._log_lock:
            self.calls.append(BatchCall(method, path, job_id, client_request_id))

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BatchHandler):
            owner = emulator

            def _api_request(self, method: str, parts: SplitResult, body: bytes) -> None:
                emulator.record(method, parts.path, self.headers.get("client-request-id") or "")
                super()._api_request(method, parts, body)

        return Handler
