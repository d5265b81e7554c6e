"""Injected service faults: error answers, added latency and dropped connections, per operation."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, replace

from emulators.batch.errors import ERROR_CATALOG

OPERATIONS = frozenset(
    {
        "getTask",
        "listTasks",
        "addTask",
        "addTaskCollection",
        "updateTask",
        "deleteTask",
        "terminateTask",
        "reactivateTask",
        "listSubtasks",
        "addJob",
        "getJob",
        "listJobs",
        "terminateJob",
        "deleteJob",
        "getJobTaskCounts",
    }
)
ANY_OPERATION = "*"
_DEFAULT_CODES = {429: "TooManyRequests", 500: "InternalError", 503: "ServerBusy"}


@dataclass(frozen=True)
class Fault:
    """What to do to a matching request. `count` None means no limit (used with `probability`)."""

    operation: str
    status: int | None = None
    code: str | None = None
    count: int | None = 1
    probability: float | None = None
    retry_after: float | None = None
    latency: float | None = None
    drop_connection: bool = False
    fault_id: int = 0

    def validate(self) -> None:
        if self.operation != ANY_OPERATION and self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}; expected one of {sorted(OPERATIONS)} or '*'")
        if self.status is None and not self.latency and not self.drop_connection:
            raise ValueError("a fault needs a status, a latency or drop_connection")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")

    @property
    def error_code(self) -> str:
        if self.code:
            return self.code
        if self.status in _DEFAULT_CODES:
            return _DEFAULT_CODES[self.status]
        matching = [code for code, (status, _) in ERROR_CATALOG.items() if status == self.status]
        return matching[0] if matching else "InternalError"


class FaultInjector:
    """Thread-safe list of active faults; the first matching fault that fires wins."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)
        self.fired = 0

    def add(self, fault: Fault) -> int:
        fault.validate()
        with self._lock:
            stored = replace(fault, fault_id=next(self._ids))
            self._faults.append(stored)
            return stored.fault_id

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Clear the faults and the count of those that fired."""
        with self._lock:
            self._faults.clear()
            self.fired = 0

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def draw(self, operation: str) -> Fault | None:
        """The fault to apply to this request, consuming one of its remaining uses."""
        if not self._faults:  # fast path: no lock when nothing is injected
            return None
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.operation not in (operation, ANY_OPERATION):
                    continue
                if fault.probability is not None and self._random.random() >= fault.probability:
                    continue
                if fault.count is not None:
                    remaining = fault.count - 1
                    if remaining:
                        self._faults[index] = replace(fault, count=remaining)
                    else:
                        del self._faults[index]
                self.fired += 1
                return fault
        return None
