"""Reading Batch answers and building Batch calls (shared/batch_client.py), without a network.

The bodies are shaped like the real service's (learn.microsoft.com/rest/api/batchservice/batch-status-and-error-codes):
``odata.metadata``, a ``message`` object whose value ends in "\\nRequestId:...\\nTime:...", ``values``.
"""

from __future__ import annotations

import json
import uuid
from email.utils import formatdate
from typing import Any

import pytest
from urllib3 import HTTPHeaderDict

from shared.batch_client import (
    MAX_MESSAGE_CHARS,
    BatchAnswer,
    BatchError,
    _answer,
    action_call,
    client_request_id,
    parse_error,
    parse_retry_after,
)
from shared.contract import Command

METADATA = (
    "https://alethiomics.uksouth.batch.azure.com/$metadata"
    "#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
)
SUFFIX = "\nRequestId:c4f5fc32-356d-47c2-a2c2-789081828db5\nTime:2023-03-09T11:47:41.9926741Z"


def batch_body(code: str, text: str, values: list[object] | None = None) -> bytes:
    body: dict[str, Any] = {"odata.metadata": METADATA, "code": code, "message": {"lang": "en-US", "value": text}}
    if values is not None:
        body["values"] = values
    return json.dumps(body).encode()


# ---------------------------------------------------------------- parse_error


def test_a_409_task_completed_body() -> None:
    error = parse_error(batch_body("TaskCompleted", "The specified task is already in a completed state." + SUFFIX))
    assert error == BatchError("TaskCompleted", "The specified task is already in a completed state.")


def test_a_429_too_many_requests_body() -> None:
    text = "Request failed as server encountered too many requests. Please try again." + SUFFIX
    error = parse_error(batch_body("TooManyRequests", text))
    assert error is not None
    assert error.code == "TooManyRequests"
    assert error.message == "Request failed as server encountered too many requests. Please try again."
    assert "RequestId" not in error.message


def test_a_401_body_with_values() -> None:
    detail = (
        "The access token has been obtained from wrong audience or resource 'https://batch.core.windows.net'. "
        "It should exactly match (including forward slash) with one of the allowed audiences "
        "'https://batch.core.windows.net/'"
    )
    raw = batch_body(
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly."
        + SUFFIX,
        [{"key": "AuthenticationErrorDetail", "value": detail}],
    )
    error = parse_error(raw)
    assert error is not None
    assert error.code == "AuthenticationFailed"
    assert error.message.startswith("Server failed to authenticate the request.")
    assert error.values == (("AuthenticationErrorDetail", detail),)
    assert error.as_dict() == {
        "code": "AuthenticationFailed",
        "message": error.message,
        "values": [{"key": "AuthenticationErrorDetail", "value": detail}],
    }


def test_values_are_read_as_text_and_odd_items_skipped() -> None:
    raw = batch_body("InvalidPropertyValue", "bad", [{"key": "PropertyName", "value": 7}, "junk", {"value": "v"}])
    error = parse_error(raw)
    assert error is not None
    assert error.values == (("PropertyName", "7"), ("", "v"))


def test_long_messages_and_values_are_clipped() -> None:
    raw = batch_body("InternalError", "x" * 1000 + SUFFIX, [{"key": "Detail", "value": "y" * 1000}])
    error = parse_error(raw)
    assert error is not None
    assert len(error.message) == MAX_MESSAGE_CHARS
    assert len(error.values[0][1]) == MAX_MESSAGE_CHARS


def test_a_message_without_the_object_form_gives_an_empty_message() -> None:
    raw = json.dumps({"code": "ServerBusy", "message": "plain text"}).encode()
    assert parse_error(raw) == BatchError("ServerBusy", "")


def test_a_body_without_values_has_none() -> None:
    error = parse_error(batch_body("JobNotFound", "The specified job does not exist." + SUFFIX))
    assert error == BatchError("JobNotFound", "The specified job does not exist.", ())


@pytest.mark.parametrize(
    "content",
    [
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        b"",
        b"Service Unavailable",
        b'{"code": ',
        b"[]",
        b'"TaskNotFound"',
        b'{"message": {"value": "no code"}}',
        b'{"code": 404}',
        b'{"error": {"code": "JobNotFound"}}',
    ],
)
def test_a_body_that_is_not_a_batch_error_gives_none(content: bytes) -> None:
    assert parse_error(content) is None


def test_a_body_that_is_not_text_gives_none() -> None:
    assert parse_error(b'{"code": "\xff\xfe"}') is None


# ---------------------------------------------------------------- _answer (one response -> BatchAnswer)


def headers(**values: str) -> HTTPHeaderDict:
    """Response headers as urllib3 hands them over (names looked up case-insensitively)."""
    return HTTPHeaderDict({name.replace("_", "-"): value for name, value in values.items()})


def test_a_2xx_json_body_is_read_and_headers_are_found_in_any_case() -> None:
    answer = _answer(
        200,
        headers(**{"Request-Id": "r-1", "CLIENT-REQUEST-ID": "c-1", "retry-after": "3"}),
        b'{"state": "active"}',
        7,
    )
    assert answer == BatchAnswer(200, None, "r-1", "c-1", 3.0, {"state": "active"}, 7)
    assert answer.ok and answer.code is None


@pytest.mark.parametrize("content", [b"", b"[]", b"not json", b'"text"', b"\xff"])
def test_a_2xx_without_a_json_object_has_no_body(content: bytes) -> None:
    answer = _answer(202, headers(), content, 0)
    assert (answer.status, answer.body, answer.error) == (202, None, None)


def test_a_non_2xx_reads_the_batch_error_and_never_a_body() -> None:
    raw = batch_body("ServerBusy", "The server is busy." + SUFFIX)
    answer = _answer(503, headers(**{"Retry-After": "10", "request-id": "r-2"}), raw, 12)
    assert answer == BatchAnswer(503, BatchError("ServerBusy", "The server is busy."), "r-2", None, 10.0, None, 12)
    assert not answer.ok and answer.code == "ServerBusy"


@pytest.mark.parametrize("status", [301, 307, 502])
def test_a_redirect_or_a_proxy_page_is_an_answer_without_an_error_body(status: int) -> None:
    page = b"<html><body><h1>Moved</h1></body></html>"
    answer = _answer(status, headers(Location="https://elsewhere.example/"), page, 1)
    assert (answer.status, answer.error, answer.body, answer.ok) == (status, None, None, False)


def test_the_repr_of_an_answer_leaves_the_body_out() -> None:
    answer = BatchAnswer(200, body={"value": [{"id": f"t{n}"} for n in range(1000)]})
    assert "t999" not in repr(answer)
    assert repr(answer).startswith("BatchAnswer(status=200, error=None,")


# ---------------------------------------------------------------- parse_retry_after


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("2", 2.0), ("120", 120.0), (" 30 ", 30.0), ("0.2", 0.2)])
def test_retry_after_in_seconds(raw: str, seconds: float) -> None:
    assert parse_retry_after(raw) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_445_412_420.0  # Wed, 21 Oct 2015 07:27:00 GMT
    assert formatdate(now, usegmt=True) == "Wed, 21 Oct 2015 07:27:00 GMT"
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0


def test_retry_after_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1_445_412_540.0) == 0.0


def test_retry_after_relative_to_the_real_clock() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    "raw", [None, "", "soon", "-5", "1e3", "inf", "nan", "Infinity", "0x10", "5 seconds", "1.", "٣"]
)
def test_garbage_retry_after_is_ignored(raw: str | None) -> None:
    assert parse_retry_after(raw) is None


@pytest.mark.parametrize("raw", ["99999999999", "9" * 5000, "2147483649", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_absurd_retry_after_is_capped_at_2_to_the_31_seconds(raw: str) -> None:
    assert parse_retry_after(raw, now=0.0) == 2.0**31


# ---------------------------------------------------------------- client_request_id


def test_client_request_id_is_a_deterministic_uuid_per_command() -> None:
    first = client_request_id("ops-7f3c")
    assert first == client_request_id("ops-7f3c")
    assert uuid.UUID(first).version == 5
    assert first != client_request_id("ops-7f3d")
    # Fixed across releases, so every attempt of a command is findable under one id in Batch's logs.
    assert first == "7c402f9d-3901-55e2-8e80-1b6b1b129890"


# ---------------------------------------------------------------- action_call


def command(action: str, job_id: str = "job-1", task_id: str | None = "task_1", **options: Any) -> Command:
    return Command(action=action, job_id=job_id, task_id=task_id, account="prod", command_id="c-1", **options)


@pytest.mark.parametrize(
    ("action", "method", "path"),
    [
        ("deleteTask", "DELETE", "/jobs/job-1/tasks/task_1"),
        ("terminateTask", "POST", "/jobs/job-1/tasks/task_1/terminate"),
        ("reactivateTask", "POST", "/jobs/job-1/tasks/task_1/reactivate"),
    ],
)
def test_task_actions_call_the_task(action: str, method: str, path: str) -> None:
    call = action_call(command(action))
    assert (call.method, call.path, dict(call.params), call.body) == (method, path, {}, None)


def test_terminate_job_calls_the_job() -> None:
    call = action_call(command("terminateJob", task_id=None))
    assert (call.method, call.path, dict(call.params), call.body) == ("POST", "/jobs/job-1/terminate", {}, None)


def test_terminate_job_carries_reason_and_force() -> None:
    call = action_call(command("terminateJob", task_id=None, reason="superseded", force=True))
    assert call.path == "/jobs/job-1/terminate"
    assert dict(call.params) == {"force": "true"}
    assert call.body == {"terminateReason": "superseded"}


@pytest.mark.parametrize(("force", "params"), [(False, {}), (True, {"force": "true"})])
def test_delete_job_deletes_the_job(force: bool, params: dict[str, str]) -> None:
    call = action_call(command("deleteJob", task_id=None, force=force))
    assert (call.method, call.path, dict(call.params), call.body) == ("DELETE", "/jobs/job-1", params, None)


def test_preconditions_and_dry_run_do_not_change_the_call() -> None:
    plain = action_call(command("deleteTask"))
    guarded = action_call(command("deleteTask", if_match="0x8D4125FD1A825A4", requested_by="me"))
    assert (plain.method, plain.path, plain.body) == (guarded.method, guarded.path, guarded.body)


def test_ids_at_the_limit_are_placed_verbatim() -> None:
    call = action_call(command("deleteTask", job_id="J" * 64, task_id="-_" * 32))
    assert call.path == f"/jobs/{'J' * 64}/tasks/{'-_' * 32}"


@pytest.mark.parametrize("bad", ["", "../jobs", "a/b", "a%2Fb", "a b", "a?b", "x" * 65, "jöb", "a\n"])
def test_invalid_ids_are_refused_before_they_reach_a_url(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid Batch id"):
        action_call(command("deleteTask", job_id=bad))
    with pytest.raises(ValueError, match="invalid Batch id"):
        action_call(command("terminateTask", task_id=bad))
    with pytest.raises(ValueError, match="invalid Batch id"):
        action_call(command("terminateJob", job_id=bad, task_id=None))
