"""Prove that every check can fail: feed it synthetic data with exactly one fault and see it, and only it, fire.

``python -m tests.chaos --self-check`` runs these scenarios; tests/unit/test_chaos_checks.py runs the
same ones under pytest in ``make test``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from shared.batch_client import client_request_id
from tests.chaos.checks import evaluate
from tests.chaos.model import (
    CHAOS_KEY,
    BatchCall,
    DeadLetterRecord,
    MalformedMessage,
    Observed,
    OutcomeRecord,
    Sent,
    ValidCommand,
)

JOBS: Final = {"cj-0000", "cx-000002"}
_sequence = itertools.count(1)


def outcome(
    command_id: str,
    decision: str,
    attempt: int = 1,
    *,
    message_id: str | None = None,
    dry_run: bool = False,
    reason: str | None = None,
    properties: dict[str, object] | None = None,
    **fields: object,
) -> OutcomeRecord:
    if message_id is None:
        base = f"{command_id}#dryRun" if dry_run else command_id
        message_id = base if decision != "retry" else f"{base}#{attempt}"
    event = {
        "commandId": command_id,
        "decision": decision,
        "attempt": attempt,
        "dryRun": dry_run,
        "deadLetterReason": reason,
        **fields,
    }
    props = {"decision": decision, "dryRun": dry_run} if properties is None else properties
    return OutcomeRecord(next(_sequence), message_id, dict(props), event)


def baseline() -> tuple[Sent, Observed]:
    """A run in which everything went right: two valid commands (one retried), one malformed message."""
    valid = [
        ValidCommand("cc-000000", "terminateTask", "cj-0000", "t000000"),
        ValidCommand("cc-000001", "deleteTask", "cj-0000", "t000001", dry_run=True),
        ValidCommand("cc-000002", "terminateJob", "cx-000002", None),
    ]
    malformed = MalformedMessage(
        key="fz-00000",
        category="unknown-fields",
        message_id="fz-00000",
        body_kind="data",
        body=b'{"action": "terminateTask", "jobId": "fuzz-00000", "taskId": "fuzzt00000", "x": 1}',
        properties={CHAOS_KEY: "fz-00000"},
        candidates=("fz-00000", "invalid:0123456789abcdef0123456789abcdef"),
        kept={"action": "terminateTask", "jobId": "fuzz-00000", "taskId": "fuzzt00000"},
    )
    sent = Sent(valid=valid, resent={"cc-000000"}, malformed=[malformed])
    observed = Observed(
        outcomes=[
            outcome("cc-000000", "retry", 1),
            outcome("cc-000000", "succeeded", 2),
            outcome("cc-000001", "succeeded", dry_run=True),
            outcome("cc-000002", "alreadyDone"),
            outcome(
                "fz-00000",
                "deadLetter",
                reason="InvalidCommand",
                action="terminateTask",
                jobId="fuzz-00000",
                taskId="fuzzt00000",
            ),
        ],
        dead_letters=[
            DeadLetterRecord(
                next(_sequence), "fz-00000", "InvalidCommand", "invalid command: unknown fields ['x']", "fz-00000"
            ),
        ],
        batch_calls=[
            BatchCall("POST", "/jobs/cj-0000/tasks/t000000/terminate", "cj-0000", client_request_id("cc-000000")),
            BatchCall("POST", "/jobs/cj-0000/tasks/t000000/terminate", "cj-0000", client_request_id("cc-000000")),
            BatchCall("GET", "/jobs/cj-0000/tasks/t000001", "cj-0000", client_request_id("cc-000001")),
            BatchCall("POST", "/jobs/cx-000002/terminate", "cx-000002", client_request_id("cc-000002")),
        ],
    )
    return sent, observed


Fault = Callable[[Sent, Observed], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    fails: frozenset[str]  # exactly the checks that must fail


def _drop_terminal(sent: Sent, observed: Observed) -> None:
    observed.outcomes = [o for o in observed.outcomes if o.command_id != "cc-000002"]


def _lose_malformed(sent: Sent, observed: Observed) -> None:
    observed.outcomes = [o for o in observed.outcomes if o.command_id != "fz-00000"]
    observed.dead_letters = []


def _double(sent: Sent, observed: Observed) -> None:
    # A second terminal the subscriber received as a message of its own (its own sequence number).
    observed.outcomes.append(outcome("cc-000000", "alreadyDone", 3))


def _poison(sent: Sent, observed: Observed) -> None:
    observed.dead_letters.append(
        DeadLetterRecord(next(_sequence), "cc-000002", "MaxDeliveryCountExceeded", "delivered 10 times", "cc-000002")
    )


def _stray_call(sent: Sent, observed: Observed) -> None:
    observed.batch_calls.append(
        BatchCall("POST", "/jobs/fuzz-00000/tasks/fuzzt00000/terminate", "fuzz-00000", client_request_id("fz-00000"))
    )


def _unknown_call(sent: Sent, observed: Observed) -> None:
    observed.batch_calls.append(BatchCall("GET", "/jobs", "", "00000000-0000-0000-0000-000000000000"))


def _wrong_reason(sent: Sent, observed: Observed) -> None:
    record = observed.dead_letters[0]
    observed.dead_letters[0] = replace(record, reason="ProcessingFailed")


def _unreadable(sent: Sent, observed: Observed) -> None:
    record = observed.dead_letters[0]
    observed.dead_letters[0] = replace(record, description="invalid\x00command\n")


def _no_outcome(sent: Sent, observed: Observed) -> None:
    observed.outcomes = [o for o in observed.outcomes if o.command_id != "fz-00000"]


def _attempt_suffix(sent: Sent, observed: Observed) -> None:
    observed.outcomes = [o for o in observed.outcomes if o.command_id != "cc-000002"]
    observed.outcomes.append(outcome("cc-000002", "alreadyDone", message_id="cc-000002#1"))


def _retry_id(sent: Sent, observed: Observed) -> None:
    observed.outcomes.append(outcome("cc-000002", "retry", 1, message_id="cc-000002"))


def _no_dry_run_property(sent: Sent, observed: Observed) -> None:
    observed.outcomes.append(outcome("cc-000002", "retry", 1, properties={"decision": "retry"}))


def _lost_fields(sent: Sent, observed: Observed) -> None:
    observed.outcomes = [o for o in observed.outcomes if o.command_id != "fz-00000"]
    observed.outcomes.append(outcome("fz-00000", "deadLetter", reason="InvalidCommand", action=None, jobId=None))


SCENARIOS: Final = (
    Scenario("nothing wrong", lambda s, o: None, frozenset()),
    Scenario("a valid command loses its outcome", _drop_terminal, frozenset({"lost"})),
    Scenario(
        "a malformed message vanishes",
        _lose_malformed,
        frozenset({"lost", "malformed -> DLQ InvalidCommand", "malformed -> outcome"}),
    ),
    Scenario("two terminal outcomes", _double, frozenset({"doubled"})),
    Scenario("a poison loop", _poison, frozenset({"poison loops"})),
    Scenario("a Batch call for a malformed message", _stray_call, frozenset({"stray Batch calls"})),
    Scenario("a Batch call nobody asked for", _unknown_call, frozenset({"stray Batch calls"})),
    Scenario(
        "malformed dead-lettered for another reason", _wrong_reason, frozenset({"malformed -> DLQ InvalidCommand"})
    ),
    Scenario("an unreadable dead-letter description", _unreadable, frozenset({"malformed -> DLQ InvalidCommand"})),
    Scenario("a malformed message without outcome", _no_outcome, frozenset({"malformed -> outcome"})),
    Scenario("a terminal id with the attempt", _attempt_suffix, frozenset({"terminal message_id = commandId"})),
    Scenario("a retry id without the attempt", _retry_id, frozenset({"retry message_id = commandId#attempt"})),
    Scenario("an outcome without dryRun", _no_dry_run_property, frozenset({"dryRun property"})),
    Scenario(
        "an invalid outcome drops parsed fields", _lost_fields, frozenset({"invalid outcome keeps parsed fields"})
    ),
)


def failing_checks(scenario: Scenario) -> frozenset[str]:
    sent, observed = baseline()
    scenario.fault(sent, observed)
    return frozenset(check.name for check in evaluate(sent, observed, set(JOBS)).failed)


def main() -> int:
    problems = 0
    for scenario in SCENARIOS:
        got = failing_checks(scenario)
        ok = got == scenario.fails
        problems += not ok
        shown = ", ".join(sorted(got)) or "none"
        print(
            f"{'ok  ' if ok else 'FAIL'}  {scenario.name:<45} failing: {shown}"
            + ("" if ok else f"   (expected: {', '.join(sorted(scenario.fails)) or 'none'})")
        )
    print(f"self-check: {'every check fails when it should' if not problems else f'{problems} scenario(s) wrong'}")
    return 1 if problems else 0
