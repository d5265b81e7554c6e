"""The decision policy, checked against the design's decision table (docs/design.md, "Decision policy").

The table below is an independent copy, transcribed by hand from the design's decision table as documented
in docs/design.md ("Decision policy") and the README, not derived from shared/policy.py: if the
code's table drifts from the design, these tests fail. A "—" cell in the design means the answer is
not expected for that action and falls through to the status rows (deadLetter for a 4xx).
"""

from __future__ import annotations

import json
from typing import Final

import pytest

from shared.config import ConfigError
from shared.policy import TRANSPORT_ERROR, Policy
from tests.unit.helpers import make_settings

SU: Final = "succeeded"
AD: Final = "alreadyDone"
RT: Final = "retry"
DL: Final = "deadLetter"
FALL: Final = "—"  # falls through to the status rows

# The design's column order.
ACTIONS: Final = ("deleteTask", "terminateTask", "reactivateTask", "terminateJob", "deleteJob")

# | expected success (200 / 204 / 204 / 202 / 202) | succeeded | succeeded | succeeded | succeeded | succeeded |
EXPECTED_SUCCESS: Final = {
    "deleteTask": 200,
    "terminateTask": 204,
    "reactivateTask": 204,
    "terminateJob": 202,
    "deleteJob": 202,
}

# Rows keyed by a BatchError code: (status the service sends with it, code, cells in ACTIONS order).
# deleteJob's column is issue #12's: 404 JobNotFound alreadyDone; 409 JobBeingTerminated retry (delete once it
# has completed); 409 JobBeingDeleted alreadyDone; 412 ConditionNotMet deadLetter; other 4xx deadLetter;
# 401/403/408/429/5xx as for the other actions.
CODE_ROWS: Final[tuple[tuple[int, str, tuple[str, str, str, str, str]], ...]] = (
    (404, "TaskNotFound", (AD, DL, DL, FALL, FALL)),
    (404, "JobNotFound", (AD, DL, DL, DL, AD)),
    (409, "TaskCompleted", (DL, AD, FALL, FALL, FALL)),
    (409, "TaskNotCompleted", (FALL, FALL, AD, FALL, FALL)),
    (409, "TaskSucceeded", (FALL, FALL, DL, FALL, FALL)),
    (409, "JobCompleted", (DL, AD, DL, AD, FALL)),
    (409, "JobBeingTerminated", (RT, AD, DL, AD, RT)),
    (409, "JobBeingDeleted", (AD, AD, DL, AD, AD)),
    (412, "ConditionNotMet", (DL, DL, DL, DL, DL)),
    (401, "AuthenticationFailed", (RT, RT, RT, RT, RT)),
    (401, "InvalidAuthenticationInfo", (RT, RT, RT, RT, RT)),
    (403, "InsufficientAccountPermissions", (RT, RT, RT, RT, RT)),
    (403, "AccountIsDisabled", (DL, DL, DL, DL, DL)),
    (503, "ServerBusy", (RT, RT, RT, RT, RT)),
    (500, "InternalError", (RT, RT, RT, RT, RT)),
    (500, "OperationTimedOut", (RT, RT, RT, RT, RT)),
    (429, "TooManyRequests", (RT, RT, RT, RT, RT)),
)
# | other 400, 404, 409, 413, 4xx | deadLetter everywhere
OTHER_4XX: Final = (400, 402, 403, 404, 405, 406, 409, 410, 411, 413, 414, 415, 416, 422, 428, 431, 451, 499)
# | 408, 429, 500, 502, 503, 504 | retry everywhere
RETRY_STATUSES: Final = (408, 429, 500, 502, 503, 504)
RETRY_CODES: Final = ("ServerBusy", "InternalError", "OperationTimedOut", "TooManyRequests")
AUTH_CODES: Final = ("AuthenticationFailed", "InvalidAuthenticationInfo")


def status_row(status: int) -> str:
    """What the design's status rows say for an answer no code row claims."""
    if status in RETRY_STATUSES or status == 401:
        return RT
    if 400 <= status < 500:
        return DL
    raise AssertionError(f"the design has no status row for {status}")


CODE_CASES: Final = [
    pytest.param(action, status, code, cell, id=f"{code}-{action}")
    for status, code, cells in CODE_ROWS
    for action, cell in zip(ACTIONS, cells, strict=True)
]


@pytest.mark.parametrize(("action", "status", "code", "cell"), CODE_CASES)
def test_every_code_row_for_every_action(action: str, status: int, code: str, cell: str) -> None:
    expected = status_row(status) if cell == FALL else cell
    assert Policy().decide(action, status, code).decision == expected


FALL_THROUGH_CASES: Final = [
    pytest.param(action, code, id=f"{code}-{action}")
    for _, code, cells in CODE_ROWS
    for action, cell in zip(ACTIONS, cells, strict=True)
    if cell == FALL
]


@pytest.mark.parametrize(("action", "code"), FALL_THROUGH_CASES)
def test_a_dash_cell_falls_through_to_the_status_rows(action: str, code: str) -> None:
    # The same unexpected code decides by its status: deadLetter for a 4xx, retry for a 503.
    policy = Policy()
    assert policy.decide(action, 409, code).decision == DL
    assert policy.decide(action, 404, code).decision == DL
    assert policy.decide(action, 503, code).decision == RT


@pytest.mark.parametrize("action", ACTIONS)
def test_expected_success_is_succeeded(action: str) -> None:
    verdict = Policy().decide(action, EXPECTED_SUCCESS[action], None)
    assert verdict.decision == SU
    assert verdict.max_attempts is None


@pytest.mark.parametrize("status", [200, 201, 202, 204])
@pytest.mark.parametrize("action", ACTIONS)
def test_any_2xx_is_succeeded_whatever_the_body_says(action: str, status: int) -> None:
    assert Policy().decide(action, status, None).decision == SU
    assert Policy().decide(action, status, "JobNotFound").decision == SU


@pytest.mark.parametrize("status", OTHER_4XX)
@pytest.mark.parametrize("action", ACTIONS)
def test_other_4xx_without_a_known_code_is_dead_letter(action: str, status: int) -> None:
    policy = Policy()
    assert policy.decide(action, status, None).decision == DL
    assert policy.decide(action, status, "SomethingNew").decision == DL
    assert policy.decide(action, status, "InvalidHeaderValue").decision == DL


@pytest.mark.parametrize("status", RETRY_STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_retry_statuses_retry_with_or_without_a_code(action: str, status: int) -> None:
    policy = Policy()
    assert policy.decide(action, status, None).decision == RT
    assert policy.decide(action, status, "SomethingNew").decision == RT


@pytest.mark.parametrize("code", RETRY_CODES)
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", [None, 400, 409, 500, 503])
def test_retry_codes_retry_whatever_the_status(action: str, code: str, status: int | None) -> None:
    assert Policy().decide(action, status, code).decision == RT


@pytest.mark.parametrize("action", ACTIONS)
def test_connection_error_timeout_unreadable_response_retry(action: str) -> None:
    policy = Policy()
    assert policy.decide(action, None, TRANSPORT_ERROR).decision == RT  # no HTTP answer at all
    assert policy.decide(action, 502, None).decision == RT  # a gateway's HTML page: no BatchError code
    assert policy.decide(action, 504, None).decision == RT


# ---------------------------------------------------------------- code first, status second


@pytest.mark.parametrize("action", ACTIONS)
def test_the_code_decides_before_the_status(action: str) -> None:
    policy = Policy()
    assert policy.decide(action, 400, "ServerBusy").decision == RT
    assert policy.decide(action, 503, "SomethingNew").decision == RT
    assert policy.decide(action, 409, "SomethingNew").decision == DL
    assert policy.decide(action, 500, "ConditionNotMet").decision == DL
    assert policy.decide(action, 500, "AccountIsDisabled").decision == DL
    assert policy.decide(action, 400, "InsufficientAccountPermissions").decision == RT


def test_a_code_row_wins_over_a_retry_status() -> None:
    # JobNotFound is alreadyDone for deleteTask even if it came with a 500.
    assert Policy().decide("deleteTask", 500, "JobNotFound").decision == AD
    assert Policy().decide("terminateTask", 503, "TaskCompleted").decision == AD


# ---------------------------------------------------------------- 401: at most 2 attempts


@pytest.mark.parametrize("code", [*AUTH_CODES, None, "SomethingNew"])
@pytest.mark.parametrize("action", ACTIONS)
def test_401_retries_for_a_token_refresh_at_most_twice(action: str, code: str | None) -> None:
    verdict = Policy().decide(action, 401, code)
    assert verdict.decision == RT
    assert verdict.max_attempts == 2


@pytest.mark.parametrize("code", AUTH_CODES)
def test_the_auth_codes_limit_attempts_whatever_the_status(code: str) -> None:
    assert Policy().decide("deleteTask", 400, code).max_attempts == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServerBusy"), (429, None), (None, TRANSPORT_ERROR), (403, "InsufficientAccountPermissions")],
)
def test_other_retries_use_the_global_attempt_limit(status: int | None, code: str | None) -> None:
    assert Policy().decide("terminateTask", status, code).max_attempts is None


# ---------------------------------------------------------------- overrides


def test_an_override_replaces_one_cell_only() -> None:
    policy = Policy({("deleteTask", "JobBeingTerminated"): AD})
    assert policy.decide("deleteTask", 409, "JobBeingTerminated").decision == AD
    assert policy.decide("terminateTask", 409, "JobBeingTerminated").decision == AD
    assert policy.decide("reactivateTask", 409, "JobBeingTerminated").decision == DL
    assert policy.decide("deleteTask", 409, "JobBeingDeleted").decision == AD
    assert Policy().decide("deleteTask", 409, "JobBeingTerminated").decision == RT


def test_an_override_can_name_a_code_the_table_does_not_know() -> None:
    policy = Policy({("reactivateTask", "TaskFilesCleanedup"): AD})
    assert policy.decide("reactivateTask", 409, "TaskFilesCleanedup").decision == AD
    assert policy.decide("deleteTask", 409, "TaskFilesCleanedup").decision == DL


def test_an_override_never_turns_a_success_into_something_else() -> None:
    policy = Policy({("deleteTask", "TaskNotFound"): DL})
    assert policy.decide("deleteTask", 200, "TaskNotFound").decision == SU
    assert policy.decide("deleteTask", 404, "TaskNotFound").decision == DL


def test_overrides_from_the_decision_overrides_setting() -> None:
    overrides = {"deleteTask:JobBeingTerminated": "alreadyDone", "terminateJob:ServerBusy": "deadLetter"}
    settings = make_settings(DECISION_OVERRIDES=json.dumps(overrides))
    assert settings.decision_overrides == {
        ("deleteTask", "JobBeingTerminated"): AD,
        ("terminateJob", "ServerBusy"): DL,
    }
    policy = Policy(settings.decision_overrides)
    assert policy.decide("deleteTask", 409, "JobBeingTerminated").decision == AD
    assert policy.decide("terminateJob", 503, "ServerBusy").decision == DL
    assert policy.decide("deleteTask", 503, "ServerBusy").decision == RT


def test_no_overrides_by_default() -> None:
    assert make_settings().decision_overrides == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", r"DECISION_OVERRIDES is not valid JSON"),
        ('["deleteTask:TaskNotFound"]', r"DECISION_OVERRIDES must be a JSON object"),
        ('{"deleteTask": "retry"}', r"key 'deleteTask' must be 'action:ErrorCode'"),
        ('{"deleteTask:": "retry"}', r"key 'deleteTask:' must be 'action:ErrorCode'"),
        ('{"purgeJob:JobNotFound": "retry"}', r"key 'purgeJob:JobNotFound' must be 'action:ErrorCode'"),
        ('{"deleteTask:JobNotFound": "ignore"}', r"'deleteTask:JobNotFound' -> 'ignore' must be one of"),
        ('{"deleteTask:JobNotFound": null}', r"must be one of \('succeeded', 'alreadyDone', 'retry', 'deadLetter'\)"),
    ],
)
def test_invalid_decision_overrides_are_refused_by_name(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=r"setting DECISION_OVERRIDES") as caught:
        make_settings(DECISION_OVERRIDES=raw)
    assert caught.match(expected)
