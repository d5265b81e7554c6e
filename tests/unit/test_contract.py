"""The command contract (docs/design.md, "Command contract"): shared/contract.py and schemas/command.schema.json."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from shared.contract import FIELDS, MAX_BODY_BYTES, Command, InvalidCommand, parse_command
from tests.unit.helpers import SchemaValidator

ACCOUNTS: Final = ("prod", "dev")
DEFAULT: Final = "prod"
MESSAGE_ID: Final = "msg-0001"
TASK_ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask")
ALL_ACTIONS: Final = (*TASK_ACTIONS, "terminateJob", "deleteJob")
HYPOTHESIS: Final = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALIDATOR: Final = SchemaValidator(schemas.COMMAND)


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def parse(data: dict[str, Any] | bytes, message_id: str | None = MESSAGE_ID) -> Command:
    raw = data if isinstance(data, bytes) else body(data)
    return parse_command(raw, message_id, ACCOUNTS, DEFAULT)


def problems(data: dict[str, Any] | bytes, message_id: str | None = MESSAGE_ID) -> list[str]:
    """The problems parse_command reports; fails the test when it accepts the message."""
    with pytest.raises(InvalidCommand) as caught:
        parse(data, message_id)
    assert caught.value.problems, "InvalidCommand without problems"
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


def only_problem(data: dict[str, Any] | bytes, pattern: str, message_id: str | None = MESSAGE_ID) -> None:
    found = problems(data, message_id)
    assert len(found) == 1, found
    assert re.search(pattern, found[0]), found[0]


def task(**fields: Any) -> dict[str, Any]:
    return {"action": "terminateTask", "jobId": "job-1", "taskId": "task_1", **fields}


def job(**fields: Any) -> dict[str, Any]:
    return {"action": "terminateJob", "jobId": "job-1", **fields}


def without(data: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != name}


# ---------------------------------------------------------------- valid commands


@pytest.mark.parametrize("action", TASK_ACTIONS)
def test_a_task_action_needs_only_action_job_and_task(action: str) -> None:
    command = parse({"action": action, "jobId": "job-1", "taskId": "task_1"})
    assert command == Command(action=action, job_id="job-1", task_id="task_1", account=DEFAULT, command_id=MESSAGE_ID)


def test_terminate_job_needs_only_action_and_job() -> None:
    command = parse({"action": "terminateJob", "jobId": "job-1"})
    assert command == Command(
        action="terminateJob", job_id="job-1", task_id=None, account=DEFAULT, command_id=MESSAGE_ID
    )


def test_every_optional_field_is_carried_into_the_command() -> None:
    command = parse(
        job(
            account="dev",
            reason="superseded by job-2",
            force=True,
            ifMatch="0x8D4125FD1A825A4",
            dryRun=True,
            commandId="ops-7f3c",
            requestedBy="oncall@contoso",
        )
    )
    assert command == Command(
        action="terminateJob",
        job_id="job-1",
        task_id=None,
        account="dev",
        command_id="ops-7f3c",
        reason="superseded by job-2",
        force=True,
        if_match="0x8D4125FD1A825A4",
        dry_run=True,
        requested_by="oncall@contoso",
    )


def test_false_booleans_are_accepted() -> None:
    command = parse(job(force=False, dryRun=False))
    assert command.force is False
    assert command.dry_run is False


# ---------------------------------------------------------------- action


def test_action_is_required() -> None:
    only_problem(without(task(), "action"), r"^action is required")


def test_an_unknown_action_is_refused() -> None:
    only_problem(task(action="purgeJob"), r"action 'purgeJob' is unknown")


@pytest.mark.parametrize("value", [None, 1, True, ["deleteTask"], {"a": 1}])
def test_action_must_be_a_string(value: object) -> None:
    only_problem(task(action=value), r"^action must be a string")


def test_action_is_case_sensitive() -> None:
    only_problem(task(action="TerminateTask"), r"is unknown")


# ---------------------------------------------------------------- IDs

GOOD_IDS: Final = ["a", "A", "0", "-", "_", "job-1_A", "x" * 64, "Z9-_" * 16]
BAD_IDS: Final = [
    "",
    "x" * 65,
    "job 1",
    "job/1",
    "job.1",
    "../etc",
    "job%2F1",
    "jöb",
    "job\n",
    "\njob",
    "job\t1",
    "job?x=1",
    "job#1",
    "ｊｏｂ",  # noqa: RUF001 - fullwidth letters are exactly the point
]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_good_ids_are_accepted_for_job_and_task(value: str) -> None:
    command = parse(task(jobId=value, taskId=value))
    assert (command.job_id, command.task_id) == (value, value)


@pytest.mark.parametrize("value", BAD_IDS)
@pytest.mark.parametrize("name", ["jobId", "taskId"])
def test_bad_ids_are_refused(name: str, value: str) -> None:
    only_problem(task(**{name: value}), rf"^{name} .* is invalid: use 1-64 letters, digits, '-' or '_'")


def test_the_id_length_limit_is_64() -> None:
    assert parse(task(jobId="j" * 64)).job_id == "j" * 64
    only_problem(task(jobId="j" * 65), r"^jobId ")


@pytest.mark.parametrize("value", [None, 7, True, ["job-1"], {"id": "job-1"}])
@pytest.mark.parametrize("name", ["jobId", "taskId"])
def test_ids_must_be_strings(name: str, value: object) -> None:
    only_problem(task(**{name: value}), rf"^{name} must be a string")


def test_job_id_is_required() -> None:
    only_problem(without(task(), "jobId"), r"^jobId is required")
    only_problem(without(job(), "jobId"), r"^jobId is required")


@pytest.mark.parametrize("action", TASK_ACTIONS)
def test_task_id_is_required_for_task_actions(action: str) -> None:
    only_problem({"action": action, "jobId": "job-1"}, rf"^taskId is required for {action}")


def test_task_id_is_forbidden_for_terminate_job() -> None:
    only_problem(job(taskId="task_1"), r"^taskId must not be given for terminateJob")


# ---------------------------------------------------------------- account


def test_account_defaults_to_the_default_account() -> None:
    assert parse(task()).account == DEFAULT


def test_a_configured_account_is_used() -> None:
    assert parse(task(account="dev")).account == "dev"


@pytest.mark.parametrize("value", ["staging", "", "PROD", " prod"])
def test_an_account_that_is_not_configured_is_refused(value: str) -> None:
    only_problem(task(account=value), r"^account .* is not configured; known accounts: \['dev', 'prod'\]")


@pytest.mark.parametrize("value", [None, 1, ["prod"]])
def test_account_must_be_a_string(value: object) -> None:
    only_problem(task(account=value), r"^account must be a string")


# ---------------------------------------------------------------- reason and force


@pytest.mark.parametrize("action", TASK_ACTIONS)
def test_reason_applies_to_terminate_job_only(action: str) -> None:
    only_problem(task(action=action, reason="why"), r"^reason applies to terminateJob only")


def test_delete_job_takes_force_but_no_reason() -> None:
    assert parse(job(action="deleteJob", force=True)).force is True
    only_problem(job(action="deleteJob", reason="why"), r"^reason applies to terminateJob only")


@pytest.mark.parametrize("action", TASK_ACTIONS)
@pytest.mark.parametrize("value", [True, False])
def test_force_applies_to_job_actions_only(action: str, value: bool) -> None:
    only_problem(task(action=action, force=value), r"^force applies to terminateJob and deleteJob only")


@pytest.mark.parametrize("length", [1, 2, 63, 64])
def test_reason_of_1_to_64_characters_is_accepted(length: int) -> None:
    assert parse(job(reason="r" * length)).reason == "r" * length


@pytest.mark.parametrize("length", [0, 65, 300])
def test_reason_outside_1_to_64_characters_is_refused(length: int) -> None:
    only_problem(job(reason="r" * length), r"^reason must be 1-64 characters")


def test_reason_length_counts_characters_not_bytes() -> None:
    assert parse(job(reason="é" * 64)).reason == "é" * 64


@pytest.mark.parametrize("value", [None, 5, True])
def test_reason_must_be_a_string(value: object) -> None:
    only_problem(job(reason=value), r"^reason must be a string")


@pytest.mark.parametrize("value", [None, "true", 1, 0, [True]])
def test_force_must_be_a_boolean(value: object) -> None:
    only_problem(job(force=value), r"^force must be true or false")


# ---------------------------------------------------------------- preconditions


@pytest.mark.parametrize("value", ["0x8D4125FD1A825A4", '"0x8D4125FD1A825A4"', 'W/"abc"', "!" * 128])
def test_if_match_takes_an_etag(value: str) -> None:
    assert parse(task(ifMatch=value)).if_match == value


@pytest.mark.parametrize("value", ["", "0x8D 4125", "0x8D\n", "é", "!" * 129, "tab\there"])
def test_if_match_refuses_what_is_not_an_etag(value: str) -> None:
    only_problem(task(ifMatch=value), r"^ifMatch .* is invalid")


@pytest.mark.parametrize("value", [None, 1, True])
def test_if_match_must_be_a_string(value: object) -> None:
    only_problem(task(ifMatch=value), r"^ifMatch must be a string")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("Sun, 06 Nov 1994 10:49:37 +0200", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("1994-11-06T08:49:37Z", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("1994-11-06T08:49:37+00:00", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("1994-11-06T03:49:37.250-05:00", datetime(1994, 11, 6, 8, 49, 37, 250000, tzinfo=UTC)),
    ],
)
def test_if_unmodified_since_takes_rfc_1123_or_iso_8601_with_offset(text: str, expected: datetime) -> None:
    since = parse(task(ifUnmodifiedSince=text)).if_unmodified_since
    assert since == expected
    assert since is not None
    assert since.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "1994-11-06T08:49:37",  # no offset: ambiguous
        "1994-11-06",
        "Sun, 06 Nov 1994 08:49:37 -0000",  # RFC 5322: -0000 means "zone unknown"
        "1994-13-06T08:49:37Z",
        "1899-12-31T23:59:59Z",  # an HTTP date cannot carry it
        "9999-12-31T23:59:59-01:00",  # past the year 9999 in UTC
    ],
)
def test_if_unmodified_since_refuses_other_text(text: str) -> None:
    only_problem(task(ifUnmodifiedSince=text), r"^ifUnmodifiedSince must be an RFC 1123 date .* or ISO 8601")


@pytest.mark.parametrize("value", [None, 784111777, True])
def test_if_unmodified_since_must_be_a_string(value: object) -> None:
    only_problem(task(ifUnmodifiedSince=value), r"^ifUnmodifiedSince must be a string")


def test_at_most_one_precondition() -> None:
    only_problem(
        task(ifMatch="0x8D4125FD1A825A4", ifUnmodifiedSince="Sun, 06 Nov 1994 08:49:37 GMT"),
        r"^give at most one of ifMatch and ifUnmodifiedSince",
    )


# ---------------------------------------------------------------- dryRun, commandId, requestedBy


@pytest.mark.parametrize("value", [None, "true", 1])
def test_dry_run_must_be_a_boolean(value: object) -> None:
    only_problem(task(dryRun=value), r"^dryRun must be true or false")


def test_command_id_defaults_to_the_message_id() -> None:
    assert parse(task(), message_id="sb-message-42").command_id == "sb-message-42"


def test_an_explicit_command_id_wins_over_the_message_id() -> None:
    assert parse(task(commandId="ops-7f3c"), message_id="sb-message-42").command_id == "ops-7f3c"


def test_an_explicit_command_id_needs_no_message_id() -> None:
    assert parse(task(commandId="ops-7f3c"), message_id=None).command_id == "ops-7f3c"


@pytest.mark.parametrize("message_id", [None, "", "has space", "x" * 101, "ünïcode"])
def test_without_command_id_the_message_id_must_be_usable(message_id: str | None) -> None:
    only_problem(task(), r"^commandId is missing and the message_id cannot stand in for it", message_id=message_id)


@pytest.mark.parametrize(
    "value", ["a", "x" * 100, "!~", "ops:7f3c/2026#x", "".join(chr(c) for c in range(0x21, 0x7F))[:100]]
)
def test_command_id_of_1_to_100_printable_ascii_is_accepted(value: str) -> None:
    assert parse(task(commandId=value)).command_id == value


@pytest.mark.parametrize("value", ["", "x" * 101, "has space", "tab\t", "line\n", "é", "\x7f"])
def test_other_command_ids_are_refused(value: str) -> None:
    only_problem(task(commandId=value), r"^commandId .* is invalid: use 1-100 printable ASCII characters")


@pytest.mark.parametrize("value", [None, 42, True])
def test_command_id_must_be_a_string(value: object) -> None:
    only_problem(task(commandId=value), r"^commandId must be a string")


@pytest.mark.parametrize("value", ["", "a", "oncall@contoso", "é" * 256, "x" * 256])
def test_requested_by_is_free_text_up_to_256_characters(value: str) -> None:
    assert parse(task(requestedBy=value)).requested_by == value


def test_requested_by_longer_than_256_characters_is_refused() -> None:
    only_problem(task(requestedBy="x" * 257), r"^requestedBy must be at most 256 characters")


@pytest.mark.parametrize("value", [None, 1, ["me"]])
def test_requested_by_must_be_a_string(value: object) -> None:
    only_problem(task(requestedBy=value), r"^requestedBy must be a string")


# ---------------------------------------------------------------- unknown fields, all problems at once


def test_unknown_fields_are_refused_by_name() -> None:
    found = problems(task(taskid="typo", priority=5))
    assert len(found) == 1
    assert "unknown fields ['priority', 'taskid']" in found[0]
    assert "allowed fields are" in found[0]


def test_every_broken_rule_is_reported_at_once() -> None:
    found = problems(
        {
            "action": "terminateTask",
            "jobId": "bad id",
            "account": "nowhere",
            "reason": "only for jobs",
            "force": "yes",
            "ifMatch": "a b",
            "ifUnmodifiedSince": "soon",
            "dryRun": "no",
            "commandId": "",
            "requestedBy": "r" * 300,
            "colour": "blue",
        }
    )
    expected = [
        r"^unknown fields \['colour'\]",
        r"^jobId 'bad id' is invalid",
        r"^taskId is required for terminateTask",
        r"^account 'nowhere' is not configured",
        r"^reason applies to terminateJob only",
        r"^force applies to terminateJob and deleteJob only",
        r"^force must be true or false",
        r"^ifMatch 'a b' is invalid",
        r"^ifUnmodifiedSince must be an RFC 1123 date",
        r"^give at most one of ifMatch and ifUnmodifiedSince",
        r"^dryRun must be true or false",
        r"^commandId '' is invalid",
        r"^requestedBy must be at most 256 characters",
    ]
    assert len(found) == len(expected), found
    for pattern in expected:
        assert any(re.search(pattern, problem) for problem in found), (pattern, found)


def test_an_empty_object_reports_the_required_fields() -> None:
    found = problems({})
    assert any(p.startswith("action is required") for p in found)
    assert any(p.startswith("jobId is required") for p in found)


# ---------------------------------------------------------------- the body itself


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"action": "\xe9"}', b"\xc3"])
def test_a_body_that_is_not_utf8_is_refused(raw: bytes) -> None:
    only_problem(raw, r"^body is not UTF-8 text")


@pytest.mark.parametrize("raw", [b"", b"{", b"action=deleteTask", b"{'action': 'deleteTask'}", b'{"a":1}}'])
def test_a_body_that_is_not_json_is_refused(raw: bytes) -> None:
    only_problem(raw, r"^body is not valid JSON \(.* at position \d+\)")


@pytest.mark.parametrize(("raw", "kind"), [(b"[]", "list"), (b'"x"', "str"), (b"1", "int"), (b"null", "NoneType")])
def test_a_body_that_is_not_an_object_is_refused(raw: bytes, kind: str) -> None:
    only_problem(raw, rf"^body must be a JSON object, not {kind}")


def test_a_deeply_nested_body_is_invalid_not_a_crash() -> None:
    only_problem(b"[" * 50_000, r"^body nests JSON too deeply")


def test_the_body_may_be_64_kib_but_not_more() -> None:
    compact = body(task())
    at_limit = compact + b" " * (MAX_BODY_BYTES - len(compact))
    assert len(at_limit) == MAX_BODY_BYTES
    assert parse(at_limit).task_id == "task_1"
    only_problem(at_limit + b" ", rf"^body is {MAX_BODY_BYTES + 1} bytes; a command is at most {MAX_BODY_BYTES} bytes")


def test_a_utf8_body_with_non_ascii_text_is_read() -> None:
    raw = '{"action":"terminateJob","jobId":"j","requestedBy":"Zoë Ünal"}'.encode()
    assert parse(raw).requested_by == "Zoë Ünal"


# ---------------------------------------------------------------- to_json


def test_to_json_round_trips_through_parse_command() -> None:
    command = Command(
        action="terminateJob",
        job_id="job-1",
        task_id=None,
        account="dev",
        command_id="ops-7f3c",
        reason="superseded",
        force=True,
        if_unmodified_since=datetime(1994, 11, 6, 10, 49, 37, tzinfo=timezone(timedelta(hours=2))),
        dry_run=True,
        requested_by="oncall@contoso",
    )
    raw = command.to_json()
    assert parse(raw, message_id=None) == command
    assert json.loads(raw)["ifUnmodifiedSince"] == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert VALIDATOR.is_valid(json.loads(raw))


def test_to_json_leaves_out_what_is_unset_and_keeps_command_id() -> None:
    command = parse(task(), message_id="sb-1")
    assert json.loads(command.to_json()) == {
        "action": "terminateTask",
        "jobId": "job-1",
        "taskId": "task_1",
        "account": DEFAULT,
        "commandId": "sb-1",
    }


# ---------------------------------------------------------------- property tests

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
command_ids = st.from_regex(r"[\x21-\x7e]{1,100}", fullmatch=True)
etags = st.from_regex(r"[\x21-\x7e]{1,128}", fullmatch=True)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(9998, 12, 31)),
    offsets,
)
http_dates = moments.map(lambda m: format_datetime(m.astimezone(UTC), usegmt=True))
iso_dates = moments.map(lambda m: m.isoformat())
dates = st.one_of(http_dates, iso_dates)


@st.composite
def valid_commands(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(ALL_ACTIONS))
    data: dict[str, Any] = {"action": action, "jobId": draw(ids)}
    if action in TASK_ACTIONS:
        data["taskId"] = draw(ids)
    optional: dict[str, st.SearchStrategy[Any]] = {
        "account": st.sampled_from(ACCOUNTS),
        "dryRun": st.booleans(),
        "commandId": command_ids,
        "requestedBy": st.text(max_size=256),
    }
    if action == "terminateJob":
        optional["reason"] = st.text(min_size=1, max_size=64)
    if action in ("terminateJob", "deleteJob"):
        optional["force"] = st.booleans()
    for name, strategy in optional.items():
        if draw(st.booleans()):
            data[name] = draw(strategy)
    precondition = draw(st.sampled_from(["none", "ifMatch", "ifUnmodifiedSince"]))
    if precondition == "ifMatch":
        data["ifMatch"] = draw(etags)
    elif precondition == "ifUnmodifiedSince":
        data["ifUnmodifiedSince"] = draw(dates)
    return data


def _whole_seconds(command: Command) -> Command:
    since = command.if_unmodified_since
    return command._replace(if_unmodified_since=since.replace(microsecond=0) if since else None)


@HYPOTHESIS
@given(valid_commands())
def test_any_valid_command_parses_and_round_trips(data: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(data)
    command = parse(data)
    assert command.action == data["action"]
    assert command.job_id == data["jobId"]
    assert command.task_id == data.get("taskId")
    assert command.account == data.get("account", DEFAULT)
    assert command.command_id == data.get("commandId", MESSAGE_ID)
    assert command.reason == data.get("reason")
    assert command.force == data.get("force", False)
    assert command.if_match == data.get("ifMatch")
    assert command.dry_run == data.get("dryRun", False)
    assert command.requested_by == data.get("requestedBy")
    assert (command.if_unmodified_since is None) == ("ifUnmodifiedSince" not in data)

    again = parse(command.to_json(), message_id=None)
    # The body carries ifUnmodifiedSince as an HTTP date, which has whole seconds (as the header does).
    assert again == _whole_seconds(command)
    assert again.to_json() == command.to_json()
    assert VALIDATOR.is_valid(json.loads(command.to_json()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from([*sorted(FIELDS), "extra"])


def _accepts_or_refuses(raw: bytes, message_id: str | None) -> None:
    try:
        command = parse_command(raw, message_id, ACCOUNTS, DEFAULT)
    except InvalidCommand as exc:
        assert exc.problems
        assert all(isinstance(problem, str) and problem for problem in exc.problems)
    else:
        assert isinstance(command, Command)


@HYPOTHESIS
@given(st.binary(max_size=300), st.none() | st.text(max_size=20))
def test_arbitrary_bytes_raise_nothing_but_invalid_command(raw: bytes, message_id: str | None) -> None:
    _accepts_or_refuses(raw, message_id)


@HYPOTHESIS
@given(json_values | st.dictionaries(field_names, json_values, max_size=8), st.none() | st.text(max_size=20))
def test_arbitrary_json_raises_nothing_but_invalid_command(value: object, message_id: str | None) -> None:
    _accepts_or_refuses(json.dumps(value).encode(), message_id)


# Values that sit on or just across a rule's edge, for every field.
tricky_text = st.one_of(
    st.sampled_from(["", " ", "\n", "a\n", "\na", "x" * 64, "x" * 65, "x" * 100, "x" * 101, "x" * 128, "x" * 129]),
    st.sampled_from(["x" * 256, "x" * 257, "é", "job-1", "job 1", "a/b", "\x7f", "~", "0x8D4125FD1A825A4"]),
    st.text(st.characters(codec="ascii"), max_size=70),
    st.text(max_size=12),
)
wrong_types: st.SearchStrategy[object] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.lists(st.integers(), max_size=2), st.just({})
)
EDITS: Final = ("drop", "set", "nudge", "nudge", "nudge", "wrong type", "add", "unknown", "both preconditions")
NUDGEABLE: Final[dict[str, st.SearchStrategy[str]]] = {
    "jobId": ids | st.just("j" * 64),
    "taskId": ids | st.just("t" * 64),
    "commandId": command_ids | st.just("c" * 100),
    "ifMatch": etags | st.just("e" * 128),
    "reason": st.text(min_size=62, max_size=64),
    "requestedBy": st.text(min_size=250, max_size=256),
}
MUTABLE: Final = ("action", "jobId", "taskId", "reason", "force", "ifMatch", "dryRun", "commandId", "requestedBy")


@st.composite
def near_valid_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A valid command with a few edits that may or may not break a rule."""
    data = draw(valid_commands())
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 2, 3]))):  # mostly one edit, so one rule decides
        edit = draw(st.sampled_from(EDITS))
        if edit == "drop":
            data.pop(draw(st.sampled_from(sorted(data))), None)
        elif edit == "set":
            name = draw(st.sampled_from(MUTABLE))
            data[name] = draw(st.sampled_from(ALL_ACTIONS)) if name == "action" else draw(tricky_text)
        elif edit == "nudge":  # a valid value, then one character more: often across the edge, sometimes not
            name, valid = draw(st.sampled_from(list(NUDGEABLE.items())))
            if name == "reason":  # only terminateJob takes a reason
                data["action"] = "terminateJob"
                data.pop("taskId", None)
            data[name] = draw(valid) + draw(st.sampled_from(["\n", "\n", " ", "é", "\x7f", "!", "-", "x"]))
        elif edit == "wrong type":
            name = draw(st.sampled_from([*MUTABLE, "account", "ifUnmodifiedSince"]))
            data[name] = draw(wrong_types)
        elif edit == "add":
            name = draw(st.sampled_from(["taskId", "reason", "force", "account", "ifUnmodifiedSince", "dryRun"]))
            values = {
                "taskId": ids,
                "reason": st.text(max_size=70),
                "force": st.booleans(),
                "account": st.sampled_from(ACCOUNTS),  # whether an alias is configured is a run-time check
                "ifUnmodifiedSince": dates,  # the date syntax is a run-time check
                "dryRun": st.booleans(),
            }
            data[name] = draw(values[name])
        elif edit == "unknown":
            data[draw(st.sampled_from(["taskid", "Action", "priority", "", "dry_run"]))] = draw(json_values)
        else:
            data["ifMatch"] = draw(etags)
            data["ifUnmodifiedSince"] = draw(dates)
    return data


def _code_accepts(data: dict[str, Any]) -> bool:
    try:
        parse(data)
    except InvalidCommand:
        return False
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_commands(), near_valid_commands()))
def test_the_schema_and_the_code_accept_and_refuse_the_same_commands(data: dict[str, Any]) -> None:
    schema_errors = VALIDATOR.errors(data)
    assert (not schema_errors) == _code_accepts(data), (schema_errors, data)


@pytest.mark.parametrize(
    "data",
    [
        task(jobId="job\n"),
        task(taskId="x" * 65),
        task(commandId="line\n"),
        task(ifMatch="etag\n"),
        job(reason=""),
        job(taskId="t"),
        task(force=False),
        task(ifMatch="e", ifUnmodifiedSince="Sun, 06 Nov 1994 08:49:37 GMT"),
        task(account=None),
        without(task(), "taskId"),
        without(task(), "action"),
        without(job(), "jobId"),
        task(extra=1),
        task(action="deleteJob"),
        task(jobId=""),
        task(commandId=""),
        task(commandId="x" * 101),
        task(commandId="a b"),
        task(ifMatch="x" * 129),
        job(reason="r" * 65),
        job(reason=None),
        job(force=1),
        task(dryRun="true"),
        task(requestedBy="x" * 257),
    ],
)
def test_the_schema_refuses_what_the_code_refuses_at_the_edges(data: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(data)
    assert not _code_accepts(data)


@pytest.mark.parametrize(
    "data",
    [
        task(jobId="j" * 64, taskId="t" * 64),
        task(commandId="c" * 100),
        task(ifMatch="!" * 128),
        task(requestedBy="x" * 256),
        task(requestedBy=""),
        job(reason="r"),
        job(reason="é" * 64),
        job(force=False, dryRun=False),
        task(account="dev"),
    ],
)
def test_the_schema_accepts_what_the_code_accepts_at_the_edges(data: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(data)
    assert _code_accepts(data)


def test_the_schema_is_valid_draft_2020_12() -> None:
    schema = VALIDATOR.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert "alias" in schema["properties"]["account"]["description"]
    assert set(schema["properties"]) == {
        "action",
        "jobId",
        "taskId",
        "account",
        "reason",
        "force",
        "ifMatch",
        "ifUnmodifiedSince",
        "dryRun",
        "commandId",
        "requestedBy",
        "select",
        "jobSelect",
        "limit",
        "continuation",
    }
