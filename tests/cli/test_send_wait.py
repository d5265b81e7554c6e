"""``send --wait`` through the whole local system: its exit code is the terminal outcome's decision.

The local host runs as in tests/e2e: Batch emulator, identity endpoint, Service Bus peer and the
functions, with no outcome printer, so the tool is the only reader of ``all-outcomes``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.__main__ import main
from cli.outcomes import OutcomeBrowser, read_outcome
from emulators.batch import BatchEmulator
from emulators.servicebus import ServiceBusPeer
from local.__main__ import main as local_main
from local.host import LocalHost, Ports
from tests.cli.conftest import Run, Tool

pytestmark = pytest.mark.slow

FAST_RETRIES = {"RETRY_BASE_DELAY_SECONDS": "0.5", "RETRY_MAX_DELAY_SECONDS": "1.5", "BATCH_READ_TIMEOUT_SECONDS": "1"}


@pytest.fixture(scope="module")
def host() -> Iterator[LocalHost]:
    with LocalHost(ports=Ports(0, 0, 0, 0), seed=False, print_outcomes=False, overrides=FAST_RETRIES) as running:
        yield running


@pytest.fixture(scope="module")
def batch(host: LocalHost) -> BatchEmulator:
    assert host.batch is not None
    host.batch.seed_job("wait-job")
    for task, state, exit_code in (
        ("running-1", "running", None),
        ("running-2", "running", None),
        ("running-3", "running", None),
        ("running-4", "running", None),
        ("done-1", "completed", 0),
        ("succeeded-1", "completed", 0),
    ):
        host.batch.seed_task("wait-job", task, state=state, exit_code=exit_code)
    return host.batch


@pytest.fixture
def send(host: LocalHost, batch: BatchEmulator, capsys: pytest.CaptureFixture[str]) -> Iterator[Tool]:
    def run(*argv: str) -> Run:
        code = main(
            ["send", *argv, "--wait", "--timeout", "30", "--connection-string", host.env["ServiceBusConnection"]]
        )
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    yield run
    batch.clear_faults()


def test_succeeded_exits_0(send: Tool, batch: BatchEmulator) -> None:
    run = send("terminateTask", "--job", "wait-job", "--task", "running-1", "--command-id", "wait-ok")
    assert run.code == 0, run.err
    sent, outcome = run.out.splitlines()
    assert sent.startswith('sent {"action":"terminateTask"')
    assert outcome.split()[1:4] == ["succeeded", "terminateTask", "wait-job/running-1"]
    assert outcome.endswith("commandId=wait-ok")
    task = batch.get_task("wait-job", "running-1")
    assert task is not None and task["state"] == "completed"


def test_already_done_exits_0(send: Tool) -> None:
    run = send("terminateTask", "--job", "wait-job", "--task", "done-1", "--command-id", "wait-done")
    assert run.code == 0, run.err
    assert " alreadyDone " in run.out


def test_dead_letter_exits_2(send: Tool) -> None:
    run = send("reactivateTask", "--job", "wait-job", "--task", "succeeded-1", "--command-id", "wait-dl")
    assert run.code == 2, run.err
    assert " deadLetter " in run.out and "TaskSucceeded" in run.out


def test_json_prints_the_outcome_event_and_a_dry_run_changes_nothing(send: Tool, batch: BatchEmulator) -> None:
    run = send(
        "deleteTask", "--job", "wait-job", "--task", "running-2", "--dry-run", "--command-id", "wait-dry", "--json"
    )
    assert run.code == 0, run.err
    event = json.loads(run.out)
    assert (event["commandId"], event["decision"], event["dryRun"]) == ("wait-dry", "succeeded", True)
    assert run.err.startswith("sent ")  # with --json, stdout holds only the outcome
    assert batch.get_task("wait-job", "running-2") is not None


def test_a_retried_command_ends_with_its_terminal_outcome(send: Tool, batch: BatchEmulator) -> None:
    batch.inject_fault("terminateTask", status=503, code="ServerBusy", count=1)
    run = send("terminateTask", "--job", "wait-job", "--task", "running-3", "--command-id", "wait-retry")
    assert run.code == 0, run.err
    assert " succeeded " in run.out and "attempt=2" in run.out  # the retry event may arrive after it


def test_an_invalid_raw_body_is_dead_lettered_and_exits_2(send: Tool, tmp_path: Path) -> None:
    body = tmp_path / "bad.json"
    body.write_bytes(b'{"action": "terminateTask", "jobId": "wait-job", "commandId": "wait-raw"}')
    run = send("--raw", str(body))
    assert run.code == 2, run.err
    assert "InvalidCommand" in run.out and "taskId is required" in run.out


def test_local_send_is_the_same_tool(host: LocalHost, batch: BatchEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    batch.seed_task("wait-job", "running-local", state="running")
    code = local_main(
        ["send", "terminateTask", "--job", "wait-job", "--task", "running-local", "--command-id", "wait-local",
         "--servicebus-port", str(host.servicebus_port), "--wait", "--timeout", "30"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert " succeeded " in out and "commandId=wait-local" in out


def test_no_terminal_outcome_in_time_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with ServiceBusPeer(port=0) as peer:  # a queue nobody processes
        code = main(
            [
                "send",
                "terminateJob",
                "--job",
                "j",
                "--wait",
                "--timeout",
                "1",
                "--connection-string",
                peer.connection_string,
            ]
        )
    err = capsys.readouterr().err
    assert code == 3
    assert "timeout: no terminal outcome for commandId" in err


def test_a_browsing_outcome_printer_leaves_the_outcome_to_send_wait(host: LocalHost, send: Tool) -> None:
    """What `make run` prints with OutcomeBrowser: both it and `send --wait` see the outcome."""
    printed: list[str] = []
    printer = OutcomeBrowser(
        host.env["ServiceBusConnection"], "batch-outcomes", lambda m: printed.append(read_outcome(m).command_id)
    )
    printer.start()
    try:
        run = send("terminateTask", "--job", "wait-job", "--task", "running-4", "--command-id", "wait-printed")
        assert run.code == 0, run.err
        deadline = time.monotonic() + 10
        while "wait-printed" not in printed and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        printer.stop()
    assert printed.count("wait-printed") == 1
