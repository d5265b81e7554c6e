"""Fire timer-triggered functions on their NCRONTAB schedule (UTC), and on demand."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import azure.functions as func
from azure.functions.timer import TimerRequest
from croniter import croniter

from local.functions import IndexedFunction, resolve

log = logging.getLogger("local.timer")


class TimerScheduler:
    def __init__(self, functions: dict[str, IndexedFunction], env: dict[str, str]) -> None:
        self._timers = {name: f for name, f in functions.items() if f.kind == "timerTrigger"}
        # NCRONTAB has six fields, seconds first; croniter reads that with second_at_beginning.
        self._schedules = {name: resolve(f.trigger["schedule"], env) for name, f in self._timers.items()}
        self._running = {name: threading.Lock() for name in self._timers}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(name,), name=f"timer:{name}", daemon=True)
            for name in self._timers
        ]

    @property
    def schedules(self) -> dict[str, str]:
        return dict(self._schedules)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def fire(self, name: str, wait: bool = False) -> None:
        """Run a timer function now (in the background unless ``wait``); KeyError if unknown."""
        if name not in self._timers:
            raise KeyError(f"no timer function named {name!r}; timers: {sorted(self._timers)}")
        if wait:
            self._invoke(name)
        else:
            threading.Thread(target=self._invoke, args=(name,), name=f"timer:{name}:now", daemon=True).start()

    def _loop(self, name: str) -> None:
        schedule = croniter(self._schedules[name], datetime.now(UTC), second_at_beginning=True)
        while not self._stop.is_set():
            due: datetime = schedule.get_next(datetime)
            if self._stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
                return
            self._invoke(name)

    def _invoke(self, name: str) -> None:
        # Like the host's singleton lock: a timer never overlaps itself.
        if not self._running[name].acquire(blocking=False):
            log.warning("timer %s is still running; this occurrence is skipped", name)
            return
        try:
            function = self._timers[name]
            request: func.TimerRequest = TimerRequest(past_due=False)
            function.call(**{function.trigger["name"]: request})
        except Exception:
            log.exception("timer function %s raised", name)
        finally:
            self._running[name].release()
