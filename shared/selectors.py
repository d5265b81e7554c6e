"""The selector grammar: which tasks or jobs a fleet command acts on (README, "Fleet operations").

A selector is a JSON object of optional fields, all ANDed. A *task selector* picks tasks of one job, a *job
selector* picks jobs of an account. Each field becomes part of the listing's server-side ``$filter`` where
Batch can filter on it, and every listed item is checked again here against every field, so a server that
ignored part of a filter can never make a selector act on a task or job it does not describe. Fields Batch
cannot filter on (``allTasksComplete``, ``noTasks``) are decided from Get Task Counts.

The scope guard (``FLEET_SCOPE_PREFIXES``) is applied the same way: in the job listing's filter and again
on every job. Nothing here touches the network or the settings; ``shared/contract.py`` parses selectors
into these types and ``shared/fanout.py`` expands them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

TASK_STATES: Final = ("active", "preparing", "running", "completed")
JOB_STATES: Final = ("active", "disabled", "terminating", "completed", "deleting")
RESULTS: Final = ("success", "failure")
TASK_FIELDS: Final = ("state", "result", "exitCodes", "idPrefix", "olderThan")
JOB_FIELDS: Final = ("idPrefix", "state", "olderThan", "allTasksComplete", "noTasks")
MAX_EXIT_CODES: Final = 20
EXIT_CODE_RANGE: Final = (-(2**31), 2**31 - 1)
MAX_OLDER_THAN: Final = timedelta(days=3650)
# A prefix of a Batch id: may be empty (the explicit "everything": {"idPrefix": ""}).
PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{0,64}")
PREFIX_HINT: Final = "use 0-64 letters, digits, '-' or '_'"
# ISO 8601 durations in fixed units only: weeks, or days and a time part. Years and months have no fixed
# length, so they are refused rather than guessed.
_DURATION: Final = re.compile(
    r"P(?:(?P<weeks>[0-9]{1,4})W|(?:(?P<days>[0-9]{1,5})D)?"
    r"(?:T(?:(?P<hours>[0-9]{1,6})H)?(?:(?P<minutes>[0-9]{1,7})M)?(?:(?P<seconds>[0-9]{1,9}(?:\.[0-9]{1,6})?)S)?)?)"
)
DURATION_HINT: Final = "use an ISO 8601 duration in weeks, days, hours, minutes or seconds, e.g. PT1H, P7D, P2DT12H"


def whole_number(value: object) -> int | None:
    """A JSON integer: an int, or a float with no fraction (JSON, and JSON Schema, do not tell 5 from 5.0)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration (``PT1H``, ``P7D``, ``P1W``, ``P1DT2H30M``); None when it is not one we accept."""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    parts = {name: float(value) for name, value in match.groupdict().items() if value is not None}
    if not parts:
        return None
    delta = timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )
    return delta if delta <= MAX_OLDER_THAN else None


class OlderThan(NamedTuple):
    """``olderThan``: the text as given (kept for round trips) and its length."""

    text: str
    delta: timedelta

    def cutoff(self, as_of: datetime) -> datetime:
        """Items whose stateTransitionTime is before this moment qualify; whole seconds, as a filter literal."""
        return _cutoff(self.delta, as_of)


@functools.lru_cache(maxsize=16)
def _cutoff(delta: timedelta, as_of: datetime) -> datetime:
    # A page checks every listed item against the same moment: computed once, not once per item.
    return (as_of.astimezone(UTC) - delta).replace(microsecond=0)


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def odata_datetime(moment: datetime) -> str:
    return "datetime'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def parse_time(value: object) -> datetime | None:
    """A Batch timestamp (ISO 8601 with an offset); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _older(item: Mapping[str, Any], older_than: OlderThan | None, as_of: datetime) -> bool:
    return older_than is None or _before(item, older_than.cutoff(as_of))


def _before(item: Mapping[str, Any], cutoff: datetime) -> bool:
    moment = parse_time(item.get("stateTransitionTime"))
    return moment is not None and moment < cutoff


# ------------------------------------------------------------------------------------------------ scope


class Scope(NamedTuple):
    """``FLEET_SCOPE_PREFIXES``: the job-id prefixes selectors and policies may act on.

    No prefixes means no job is in scope (selectors are refused); ``everything`` is the explicit ``*``.
    Prefixes compare case-sensitively, so the guard never widens what the setting says.
    """

    prefixes: tuple[str, ...] = ()
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not self.everything and not self.prefixes

    def contains(self, job_id: str) -> bool:
        return self.everything or any(job_id.startswith(prefix) for prefix in self.prefixes)

    def admits_prefix(self, prefix: str) -> bool:
        """Whether some job whose id starts with ``prefix`` could be in scope."""
        return self.everything or any(prefix.startswith(p) or p.startswith(prefix) for p in self.prefixes)

    def odata(self) -> str | None:
        """The scope as a filter clause; None for every job."""
        if self.everything or not self.prefixes:
            return None
        clauses = [f"startswith(id,{odata_string(prefix)})" for prefix in self.prefixes]
        return clauses[0] if len(clauses) == 1 else "(" + " or ".join(clauses) + ")"

    def describe(self) -> str:
        return "every job (*)" if self.everything else ", ".join(repr(p) for p in self.prefixes) or "no job"


# ------------------------------------------------------------------------------------------------ tasks


# The listings' $select: the properties matches() reads, nothing more.
TASK_SELECT: Final = "id,state,stateTransitionTime,executionInfo"
JOB_SELECT: Final = "id,state,stateTransitionTime"


class TaskSelector(NamedTuple):
    """Tasks of one job: state, result, exit codes, id prefix, time in the current state."""

    state: str | None = None
    result: str | None = None
    exit_codes: tuple[int, ...] | None = None
    id_prefix: str | None = None
    older_than: OlderThan | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.state is not None:
            body["state"] = self.state
        if self.result is not None:
            body["result"] = self.result
        if self.exit_codes is not None:
            body["exitCodes"] = list(self.exit_codes)
        if self.id_prefix is not None:
            body["idPrefix"] = self.id_prefix
        if self.older_than is not None:
            body["olderThan"] = self.older_than.text
        return body

    def odata_filter(self, as_of: datetime) -> str | None:
        clauses = []
        if self.id_prefix:
            clauses.append(f"startswith(id,{odata_string(self.id_prefix)})")
        if self.state is not None:
            clauses.append(f"state eq {odata_string(self.state)}")
        if self.result is not None:
            clauses.append(f"executionInfo/result eq {odata_string(self.result)}")
        if self.exit_codes:
            codes = [f"executionInfo/exitCode eq {code}" for code in self.exit_codes]
            clauses.append(codes[0] if len(codes) == 1 else "(" + " or ".join(codes) + ")")
        if self.older_than is not None:
            clauses.append(f"stateTransitionTime lt {odata_datetime(self.older_than.cutoff(as_of))}")
        return " and ".join(clauses) or None

    def matches(self, task: Mapping[str, Any], as_of: datetime) -> bool:
        """Every field, checked on our side against one listed task."""
        return self.matcher(as_of)(task)

    def matcher(self, as_of: datetime) -> Callable[[Mapping[str, Any]], bool]:
        """``matches`` for every task of one page: the cutoff and the fields read once, not once per task."""
        wanted_state, result, exit_codes, prefix = self.state, self.result, self.exit_codes, self.id_prefix
        cutoff = self.older_than.cutoff(as_of) if self.older_than is not None else None
        needs_info = result is not None or exit_codes is not None

        def match(task: Mapping[str, Any]) -> bool:
            state = task.get("state")
            if wanted_state is not None and state != wanted_state:
                return False
            if needs_info:
                found = task.get("executionInfo")
                info: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
                if result is not None and (state != "completed" or info.get("result") != result):
                    return False
                if exit_codes is not None:
                    code = info.get("exitCode")
                    if state != "completed" or isinstance(code, bool) or code not in exit_codes:
                        return False
            if prefix:
                task_id = task.get("id")
                if not (isinstance(task_id, str) and task_id.startswith(prefix)):
                    return False
            return cutoff is None or _before(task, cutoff)

        return match

    def upper_bound(self, counts: Mapping[str, int]) -> int:
        """The most tasks of a job this selector can match, from the job's Get Task Counts.

        Preparing tasks are counted as running; ``succeeded`` / ``failed`` split the completed ones by result.
        (The service says its counts may lag; a selector then acts on fewer tasks this run, never more.)
        """
        active, running, completed = counts.get("active", 0), counts.get("running", 0), counts.get("completed", 0)
        bounds = [active + running + completed]
        if self.state is not None:
            bounds.append({"active": active, "preparing": running, "running": running}.get(self.state, completed))
        if self.result is not None:
            bounds.append(counts.get("succeeded" if self.result == "success" else "failed", 0))
        if self.exit_codes is not None:
            # A non-zero exit code is a failure; exit code 0 is usually a success, not always (a file upload
            # can fail after it), so a list with 0 is bounded by all completed tasks.
            bounds.append(completed if 0 in self.exit_codes else counts.get("failed", 0))
        return max(min(bounds), 0)


# ------------------------------------------------------------------------------------------------ jobs


class JobSelector(NamedTuple):
    """Jobs of an account: id prefix, state, time in the current state, and two task-count conditions."""

    id_prefix: str | None = None
    state: str | None = None
    older_than: OlderThan | None = None
    all_tasks_complete: bool = False
    no_tasks: bool = False

    @property
    def needs_counts(self) -> bool:
        return self.all_tasks_complete or self.no_tasks

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.id_prefix is not None:
            body["idPrefix"] = self.id_prefix
        if self.state is not None:
            body["state"] = self.state
        if self.older_than is not None:
            body["olderThan"] = self.older_than.text
        if self.all_tasks_complete:
            body["allTasksComplete"] = True
        if self.no_tasks:
            body["noTasks"] = True
        return body

    def odata_filter(self, scope: Scope, as_of: datetime) -> str | None:
        clauses = []
        in_scope = scope.odata()
        if in_scope is not None:
            clauses.append(in_scope)
        if self.id_prefix:
            clauses.append(f"startswith(id,{odata_string(self.id_prefix)})")
        if self.state is not None:
            clauses.append(f"state eq {odata_string(self.state)}")
        if self.older_than is not None:
            clauses.append(f"stateTransitionTime lt {odata_datetime(self.older_than.cutoff(as_of))}")
        return " and ".join(clauses) or None

    def matches(self, job: Mapping[str, Any], scope: Scope, as_of: datetime) -> bool:
        """Every field but the task counts, and the scope, checked on our side against one listed job."""
        job_id = job.get("id")
        if not isinstance(job_id, str) or not scope.contains(job_id):
            return False
        if self.id_prefix and not job_id.startswith(self.id_prefix):
            return False
        if self.state is not None and job.get("state") != self.state:
            return False
        return _older(job, self.older_than, as_of)

    def matches_counts(self, counts: Mapping[str, int]) -> bool:
        """``allTasksComplete``: tasks exist and none is active, preparing or running; ``noTasks``: no task."""
        active, running, completed = counts.get("active", 0), counts.get("running", 0), counts.get("completed", 0)
        if self.all_tasks_complete and not (completed > 0 and active == 0 and running == 0):
            return False
        return not (self.no_tasks and active + running + completed != 0)


# ------------------------------------------------------------------------------------------------ parsing


class _Fields:
    """Reads one selector object, collecting every broken rule as ``<path>.<field> ...``."""

    def __init__(self, value: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self.value = value
        self.path = path
        self.problems = problems

    def problem(self, name: str, text: str) -> None:
        self.problems.append(f"{self.path}.{name} {text}")

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        if name not in self.value:
            return None
        raw = self.value[name]
        if not isinstance(raw, str) or raw not in options:
            self.problem(name, f"{_shown(raw)} is invalid: use one of {list(options)}")
            return None
        return raw

    def prefix(self) -> str | None:
        if "idPrefix" not in self.value:
            return None
        raw = self.value["idPrefix"]
        if not isinstance(raw, str) or not PREFIX_PATTERN.fullmatch(raw):
            self.problem("idPrefix", f"{_shown(raw)} is invalid: {PREFIX_HINT}")
            return None
        return raw

    def older_than(self) -> OlderThan | None:
        if "olderThan" not in self.value:
            return None
        raw = self.value["olderThan"]
        delta = parse_duration(raw) if isinstance(raw, str) else None
        if delta is None:
            self.problem("olderThan", f"{_shown(raw)} is invalid: {DURATION_HINT} (at most 3650 days)")
            return None
        return OlderThan(raw, delta)

    def only_true(self, name: str) -> bool:
        if name not in self.value:
            return False
        if self.value[name] is not True:
            self.problem(name, f"must be true when given ({_shown(self.value[name])} is not); leave it out otherwise")
            return False
        return True

    def exit_codes(self) -> tuple[int, ...] | None:
        if "exitCodes" not in self.value:
            return None
        raw = self.value["exitCodes"]
        low, high = EXIT_CODE_RANGE
        codes = [whole_number(code) for code in raw] if isinstance(raw, list) else []
        if (
            not isinstance(raw, list)
            or not 1 <= len(raw) <= MAX_EXIT_CODES
            or not all(code is not None and low <= code <= high for code in codes)
        ):
            self.problem("exitCodes", f"must be a list of 1-{MAX_EXIT_CODES} whole numbers (32-bit exit codes)")
            return None
        return tuple(dict.fromkeys(code for code in codes if code is not None))


def _shown(value: object) -> str:
    if isinstance(value, str):
        return repr(value[:40])
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _object(value: object, path: str, allowed: tuple[str, ...], problems: list[str]) -> _Fields | None:
    if not isinstance(value, dict):
        problems.append(f"{path} must be a JSON object of selector fields {list(allowed)}")
        return None
    unknown = sorted(str(name) for name in value if name not in allowed)
    if unknown:
        problems.append(f"{path} has unknown fields {unknown}; allowed fields are {list(allowed)}")
    if not value:
        problems.append(
            f'{path} is empty; a selector must say what it selects (use {{"idPrefix": ""}} to select everything)'
        )
    return _Fields(value, path, problems)


def parse_task_selector(value: object, path: str, problems: list[str]) -> TaskSelector | None:
    """A task selector from JSON; every broken rule is appended to ``problems`` (None when any)."""
    before = len(problems)
    fields = _object(value, path, TASK_FIELDS, problems)
    if fields is None:
        return None
    selector = TaskSelector(
        state=fields.choice("state", TASK_STATES),
        result=fields.choice("result", RESULTS),
        exit_codes=fields.exit_codes(),
        id_prefix=fields.prefix(),
        older_than=fields.older_than(),
    )
    state = selector.state
    for name in ("result", "exitCodes"):
        if name in fields.value and state is not None and state != "completed":
            fields.problem(name, f"applies to completed tasks only; it cannot match tasks in state {_shown(state)}")
    return selector if len(problems) == before else None


def parse_job_selector(value: object, path: str, problems: list[str]) -> JobSelector | None:
    """A job selector from JSON; every broken rule is appended to ``problems`` (None when any)."""
    before = len(problems)
    fields = _object(value, path, JOB_FIELDS, problems)
    if fields is None:
        return None
    selector = JobSelector(
        id_prefix=fields.prefix(),
        state=fields.choice("state", JOB_STATES),
        older_than=fields.older_than(),
        all_tasks_complete=fields.only_true("allTasksComplete"),
        no_tasks=fields.only_true("noTasks"),
    )
    if selector.all_tasks_complete and selector.no_tasks:
        problems.append(f"{path}: allTasksComplete and noTasks contradict each other (a job cannot match both)")
    return selector if len(problems) == before else None
