"""The line ``make run`` prints for each outcome event (local/host.py)."""

from __future__ import annotations

from local.host import _outcome_line


def test_an_invalid_message_line_names_the_command_and_what_is_wrong() -> None:
    event = {
        "commandId": "invalid:0123abcd",
        "action": "terminateTask",
        "jobId": None,
        "taskId": None,
        "decision": "deadLetter",
        "attempt": 1,
        "httpStatus": None,
        "deadLetterReason": "InvalidCommand",
        "detail": "jobId is required",
    }
    line = _outcome_line(event)
    assert line.startswith("outcome  deadLetter  terminateTask")
    assert "InvalidCommand commandId=invalid:0123abcd - jobId is required" in line


def test_a_batch_answer_line_keeps_its_short_form() -> None:
    event = {
        "decision": "succeeded",
        "action": "deleteTask",
        "jobId": "j",
        "taskId": "t",
        "attempt": 1,
        "httpStatus": 200,
    }
    assert _outcome_line(event).split() == ["outcome", "succeeded", "deleteTask", "j/t", "attempt=1", "http=200"]


def test_a_selector_page_line_says_how_far_the_expansion_got() -> None:
    event = {
        "decision": "expanding",
        "action": "deleteTask",
        "jobId": None,
        "dryRun": True,
        "fanOut": {"kind": "jobsThenTasks", "page": 2, "listed": 100, "selected": 7, "enqueued": 0,
                   "totalSelected": 12, "limitReached": True},
    }  # fmt: skip
    assert _outcome_line(event).split() == [
        "fanout", "expanding", "deleteTask", "jobsThenTasks", "page=2", "listed=100", "selected=7", "enqueued=0",
        "total=12", "limitReached", "(dry", "run)",
    ]  # fmt: skip
