"""The decision policy: one table mapping every Batch answer to a decision, per action.

Decide on the BatchError ``code`` first and the HTTP status second, never on message text.
A ``None`` cell means the answer is not expected for that action; it then falls through to the
status rows, which dead-letter it like any other unexpected client error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

Decision = Literal["succeeded", "alreadyDone", "retry", "deadLetter"]

ACTIONS: Final = ("deleteTask", "terminateTask", "reactivateTask", "terminateJob", "deleteJob")
TRANSPORT_ERROR: Final = "TransportError"  # pseudo-code: connection error, timeout, unreadable answer


class Rule(NamedTuple):
    answer: str  # how the README names the row
    cells: tuple[Decision | None, ...]  # one per action, in ACTIONS order
    codes: frozenset[str] = frozenset()
    statuses: frozenset[int] = frozenset()
    max_attempts: int | None = None  # a retry row that gives up sooner than the global limit

    def decision_for(self, action: str) -> Decision | None:
        return self.cells[ACTIONS.index(action)]


def _all(decision: Decision) -> tuple[Decision, ...]:
    return (decision,) * len(ACTIONS)


def _rule(
    answer: str,
    cells: tuple[Decision | None, ...],
    codes: tuple[str, ...] = (),
    statuses: tuple[int, ...] = (),
    max_attempts: int | None = None,
) -> Rule:
    return Rule(answer, cells, frozenset(codes), frozenset(statuses), max_attempts)


_RETRY_STATUSES: Final = (408, 429, 500, 502, 503, 504)
_RETRY_CODES: Final = ("ServerBusy", "InternalError", "OperationTimedOut", "TooManyRequests", TRANSPORT_ERROR)

#                        deleteTask      terminateTask   reactivateTask  terminateJob   deleteJob
TABLE: Final[tuple[Rule, ...]] = (
    _rule("404 TaskNotFound", ("alreadyDone", "deadLetter", "deadLetter", None, None), codes=("TaskNotFound",)),
    _rule(
        "404 JobNotFound",
        ("alreadyDone", "deadLetter", "deadLetter", "deadLetter", "alreadyDone"),
        codes=("JobNotFound",),
    ),
    _rule("409 TaskCompleted", ("deadLetter", "alreadyDone", None, None, None), codes=("TaskCompleted",)),
    _rule("409 TaskNotCompleted", (None, None, "alreadyDone", None, None), codes=("TaskNotCompleted",)),
    _rule("409 TaskSucceeded", (None, None, "deadLetter", None, None), codes=("TaskSucceeded",)),
    _rule(
        "409 JobCompleted",
        ("deadLetter", "alreadyDone", "deadLetter", "alreadyDone", None),
        codes=("JobCompleted",),
    ),
    # deleteJob of a terminating job: delete once the termination has completed.
    _rule(
        "409 JobBeingTerminated",
        ("retry", "alreadyDone", "deadLetter", "alreadyDone", "retry"),
        codes=("JobBeingTerminated",),
    ),
    _rule(
        "409 JobBeingDeleted",
        ("alreadyDone", "alreadyDone", "deadLetter", "alreadyDone", "alreadyDone"),
        codes=("JobBeingDeleted",),
    ),
    _rule("412 ConditionNotMet", _all("deadLetter"), codes=("ConditionNotMet",)),
    _rule(
        "401 AuthenticationFailed / InvalidAuthenticationInfo (token refresh; 2 attempts)",
        _all("retry"),
        codes=("AuthenticationFailed", "InvalidAuthenticationInfo"),
        statuses=(401,),
        max_attempts=2,
    ),
    _rule(
        "403 InsufficientAccountPermissions (role assignments take minutes to apply)",
        _all("retry"),
        codes=("InsufficientAccountPermissions",),
    ),
    _rule("403 AccountIsDisabled", _all("deadLetter"), codes=("AccountIsDisabled",)),
    _rule(
        "408, 429, 500, 502, 503, 504; ServerBusy, InternalError, OperationTimedOut, TooManyRequests; "
        "connection error, timeout, unreadable response",
        _all("retry"),
        codes=_RETRY_CODES,
        statuses=_RETRY_STATUSES,
    ),
    _rule("other 4xx (400, 403, 404, 409, 413 ...)", _all("deadLetter"), statuses=tuple(range(400, 500))),
)

SUCCESS_STATUS: Final[Mapping[str, int]] = {
    "deleteTask": 200,
    "terminateTask": 204,
    "reactivateTask": 204,
    "terminateJob": 202,
    "deleteJob": 202,
}


class Verdict(NamedTuple):
    decision: Decision
    rule: str  # the table row (or override) that decided
    max_attempts: int | None = None


class Policy(NamedTuple):
    overrides: Mapping[tuple[str, str], str] = MappingProxyType({})

    def decide_listing(self, status: int | None, code: str | None) -> Verdict:
        """A selector's listing (List Jobs / List Tasks / Get Task Counts) that did not answer 2xx.

        ``JobNotFound`` means the job whose tasks were to be listed is gone: nothing is left to select
        (``alreadyDone``). Otherwise the rows every action shares decide (auth, throttling, server errors,
        other 4xx); ``DECISION_OVERRIDES`` apply to actions, not to listings.
        """
        if code == "JobNotFound":
            return Verdict("alreadyDone", "404 JobNotFound (nothing left to select)")
        for rule in _rules_for(code, status):
            if len(set(rule.cells)) == 1 and rule.cells[0] is not None:
                return Verdict(rule.cells[0], rule.answer, rule.max_attempts)
        return Verdict("deadLetter", "unexpected answer")

    def decide(self, action: str, status: int | None, code: str | None) -> Verdict:
        """Map one Batch answer (HTTP status and BatchError code, if any) to a verdict."""
        if status is not None and 200 <= status < 300:
            return Verdict("succeeded", f"{SUCCESS_STATUS[action]} success")
        override = self.overrides.get((action, code)) if code else None
        if override is not None:
            return Verdict(override, f"override {action}:{code}")  # type: ignore[arg-type]  # validated by config
        for rule in _rules_for(code, status):
            decision = rule.decision_for(action)
            if decision is not None:
                return Verdict(decision, rule.answer, rule.max_attempts)
        # Anything the table does not list (3xx, 501, ...) promises no cure by repeating it.
        return Verdict("deadLetter", "unexpected answer")


def _rules_for(code: str | None, status: int | None) -> list[Rule]:
    by_code = [rule for rule in TABLE if code is not None and code in rule.codes]
    by_status = [rule for rule in TABLE if status is not None and status in rule.statuses]
    return by_code + by_status


def markdown_table() -> str:
    """The table as the README prints it (a test keeps the README equal to this)."""
    header = "| Batch answer | " + " | ".join(ACTIONS) + " |"
    lines = [header, "|---" * (len(ACTIONS) + 1) + "|"]
    success = " | ".join(f"succeeded ({SUCCESS_STATUS[a]})" for a in ACTIONS)
    lines.append(f"| 2xx success | {success} |")
    for rule in TABLE:
        cells = []
        for cell in rule.cells:
            text: str = cell or "—"
            if cell == "retry" and rule.max_attempts:
                text = f"retry, then deadLetter after {rule.max_attempts} attempts"
            cells.append(text)
        lines.append(f"| {rule.answer} | " + " | ".join(cells) + " |")
    lines.append("| anything else (3xx, 501 ...) | " + " | ".join("deadLetter" for _ in ACTIONS) + " |")
    return "\n".join(lines)
