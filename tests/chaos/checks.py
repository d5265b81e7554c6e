"""The chaos run's checks: pure functions from what was sent and what was observed to findings.

Nothing here talks to a socket, so ``selfcheck.py`` (and tests/unit/test_chaos_checks.py) can feed each
check synthetic data with exactly one fault in it and prove the check notices.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from shared.batch_client import client_request_id
from tests.chaos.model import (
    FUZZ_PREFIX,
    TERMINAL,
    BatchCall,
    DeadLetterRecord,
    MalformedMessage,
    Observed,
    OutcomeRecord,
    Sent,
)

INVALID_REASON: Final = "InvalidCommand"
POISON_REASON: Final = "MaxDeliveryCountExceeded"
MAX_DESCRIPTION_BYTES: Final = 1024
# Dead-letter reasons a valid command may get from the injected faults alone (401 twice, 8 failures).
FAULT_REASONS: Final = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo", "RetriesExhausted"})


@dataclass
class CheckResult:
    name: str
    meaning: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class Tally:
    """The figures the summary prints, plus every check's result."""

    valid_sent: int = 0
    resent: int = 0
    malformed_sent: int = 0
    unsendable: int = 0
    outcome_messages: int = 0
    terminal_outcomes: int = 0
    retry_outcomes: int = 0
    valid_decisions: Counter[str] = field(default_factory=Counter)
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    malformed_by_category: Counter[str] = field(default_factory=Counter)
    batch_calls: int = 0
    batch_calls_valid: int = 0
    batch_calls_invalid_input: int = 0
    batch_calls_unattributed: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    notes: list[CheckResult] = field(default_factory=list)  # reported, but do not fail the run

    @property
    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.passed]

    def check(self, name: str) -> CheckResult:
        for result in self.checks + self.notes:
            if result.name == name:
                return result
        raise KeyError(name)


# --- indexes -------------------------------------------------------------------------------------


def terminals_by_command(outcomes: Iterable[OutcomeRecord]) -> dict[str, list[OutcomeRecord]]:
    """Distinct terminal topic messages per commandId (one subscriber's view)."""
    found: dict[str, list[OutcomeRecord]] = defaultdict(list)
    for record in outcomes:
        if record.decision in TERMINAL:
            found[record.command_id].append(record)
    return found


def candidate_index(
    malformed: Iterable[MalformedMessage], dead_letters: Iterable[DeadLetterRecord] = ()
) -> dict[str, str]:
    """commandId -> malformed key, keeping only candidates that name exactly one message.

    Besides what the suite predicted, the message_id each malformed message carries in the
    dead-letter queue counts: the SDK may have given it one (e.g. for an empty message_id).
    """
    owners: dict[str, set[str]] = defaultdict(set)
    keys = set()
    for message in malformed:
        keys.add(message.key)
        for candidate in message.candidates:
            owners[candidate].add(message.key)
    for record in dead_letters:
        if record.chaos_key in keys:
            owners[record.message_id].add(record.chaos_key)
    return {candidate: next(iter(found)) for candidate, found in owners.items() if len(found) == 1}


def outcomes_by_malformed(sent: Sent, observed: Observed) -> dict[str, list[OutcomeRecord]]:
    index = candidate_index(sent.malformed, observed.dead_letters)
    outcomes = observed.outcomes
    found: dict[str, list[OutcomeRecord]] = defaultdict(list)
    for record in outcomes:
        key = index.get(record.command_id)
        if key is not None:
            found[key].append(record)
    return found


def dead_letters_by_key(dead_letters: Iterable[DeadLetterRecord]) -> dict[str, list[DeadLetterRecord]]:
    found: dict[str, list[DeadLetterRecord]] = defaultdict(list)
    for record in dead_letters:
        if record.chaos_key is not None:
            found[record.chaos_key].append(record)
    return found


def readable(description: str | None) -> bool:
    """A dead-letter description a person can read: non-empty, printable, at most 1 KB."""
    if description is None or not description.strip() or not description.isprintable():
        return False
    return len(description.encode("utf-8", "surrogatepass")) <= MAX_DESCRIPTION_BYTES


def _short(value: object, width: int = 90) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# --- the checks ----------------------------------------------------------------------------------


def check_lost(sent: Sent, observed: Observed) -> CheckResult:
    """A valid command without a terminal outcome; a malformed message with neither outcome nor dead-letter."""
    result = CheckResult("lost", "a command ended with no terminal outcome (and, if malformed, no dead-letter)")
    terminals = terminals_by_command(observed.outcomes)
    for command in sent.valid:
        if not terminals.get(command.command_id):
            decisions = [r.decision for r in observed.outcomes if r.command_id == command.command_id]
            result.problems.append(
                f"{command.command_id} ({command.action} {command.job_id}/{command.task_id}) "
                f"outcomes seen: {decisions or 'none'}"
            )
    by_malformed = outcomes_by_malformed(sent, observed)
    letters = dead_letters_by_key(observed.dead_letters)
    for message in sent.malformed:
        terminal = [r for r in by_malformed.get(message.key, []) if r.decision in TERMINAL]
        if not terminal and not letters.get(message.key):
            result.problems.append(
                f"malformed {message.key} [{message.category}] message_id={_short(message.message_id)}"
            )
    return result


def check_doubled(sent: Sent, observed: Observed) -> CheckResult:
    """More than one terminal outcome (succeeded / alreadyDone / deadLetter) for one commandId."""
    result = CheckResult("doubled", "one commandId got more than one terminal outcome from the topic")
    terminals = terminals_by_command(observed.outcomes)
    for command in sent.valid:
        records = terminals.get(command.command_id, [])
        if len(records) > 1:
            shown = ", ".join(f"{r.decision}@{r.event.get('attempt')} id={r.message_id}" for r in records)
            resent = " (resent)" if command.command_id in sent.resent else ""
            result.problems.append(f"{command.command_id}{resent}: {len(records)} terminals: {shown}")
    for key, records in outcomes_by_malformed(sent, observed).items():
        terminal = [r for r in records if r.decision in TERMINAL]
        if len(terminal) > 1:
            result.problems.append(f"malformed {key}: {len(terminal)} terminals: {[r.message_id for r in terminal]}")
    return result


def check_poison(observed: Observed) -> CheckResult:
    """A message Service Bus dead-lettered itself because it was delivered too often."""
    result = CheckResult(
        "poison loops", f"dead-lettered by Service Bus with {POISON_REASON} (the function kept failing)"
    )
    for record in observed.dead_letters:
        if record.reason == POISON_REASON:
            result.problems.append(
                f"message_id={_short(record.message_id, 60)} chaosKey={record.chaos_key} commandId={record.command_id}"
            )
    return result


def attribute_calls(sent: Sent, calls: Iterable[BatchCall], seeded_jobs: set[str]) -> tuple[int, list[str], list[str]]:
    """(calls for valid commands, calls for invalid input, calls nobody asked for), by client-request-id.

    The client sends client-request-id = uuid5(commandId) on every call, so a call maps back to the
    command that made it; a call on a job no valid command names (or any ``fuzz`` job) is invalid input too.
    """
    valid_ids = {client_request_id(command.command_id) for command in sent.valid}
    malformed_ids: dict[str, str] = {}
    for message in sent.malformed + sent.unsendable:
        for candidate in message.candidates:
            malformed_ids[client_request_id(candidate)] = message.key
    ok = 0
    invalid: list[str] = []
    unknown: list[str] = []
    for call in calls:
        where = f"{call.method} {call.path} client-request-id={call.client_request_id}"
        if call.client_request_id in malformed_ids:
            invalid.append(f"{where} <- malformed {malformed_ids[call.client_request_id]}")
        elif call.job_id.startswith(FUZZ_PREFIX):
            invalid.append(f"{where} <- a fuzz job")
        elif call.client_request_id in valid_ids and call.job_id in seeded_jobs:
            ok += 1
        else:
            unknown.append(where)
    return ok, invalid, unknown


def check_stray_calls(sent: Sent, observed: Observed, seeded_jobs: set[str]) -> CheckResult:
    result = CheckResult("stray Batch calls", "Batch requests made for malformed input, or for no command sent")
    _, invalid, unknown = attribute_calls(sent, observed.batch_calls, seeded_jobs)
    result.problems.extend(invalid + unknown)
    return result


def check_malformed_dead_lettered(sent: Sent, observed: Observed) -> CheckResult:
    result = CheckResult(
        "malformed -> DLQ InvalidCommand",
        "each malformed message is dead-lettered InvalidCommand with a readable description (<= 1 KB, printable)",
    )
    letters = dead_letters_by_key(observed.dead_letters)
    for message in sent.malformed:
        found = letters.get(message.key, [])
        label = f"{message.key} [{message.category}] message_id={_short(message.message_id, 50)}"
        if not found:
            result.problems.append(f"{label}: not in the dead-letter queue")
            continue
        record = found[0]
        if record.reason != INVALID_REASON:
            result.problems.append(f"{label}: reason {record.reason!r}: {_short(record.description, 120)}")
        elif not readable(record.description):
            result.problems.append(f"{label}: unreadable description {_short(record.description, 120)}")
    return result


def check_malformed_outcome(sent: Sent, observed: Observed) -> CheckResult:
    result = CheckResult(
        "malformed -> outcome",
        "each malformed message has a deadLetter outcome (reason InvalidCommand) a subscriber can match to it",
    )
    by_malformed = outcomes_by_malformed(sent, observed)
    for message in sent.malformed:
        records = [r for r in by_malformed.get(message.key, []) if r.decision in TERMINAL]
        label = f"{message.key} [{message.category}] message_id={_short(message.message_id, 50)}"
        if not records:
            result.problems.append(f"{label}: no outcome")
        elif any(r.event.get("deadLetterReason") != INVALID_REASON for r in records):
            result.problems.append(f"{label}: outcome {[r.event.get('deadLetterReason') for r in records]}")
    return result


def outcome_id_base(record: OutcomeRecord) -> str:
    """A dry run's outcomes have ids of their own (``<commandId>#dryRun``), so they never hide the real run's."""
    return f"{record.command_id}#dryRun" if record.event.get("dryRun") is True else record.command_id


def check_terminal_message_id(observed: Observed) -> CheckResult:
    result = CheckResult(
        "terminal message_id = commandId",
        "a terminal outcome's topic message_id is the commandId (+ '#dryRun' for a dry run), no attempt suffix",
    )
    for record in observed.outcomes:
        if record.decision in TERMINAL and record.message_id != outcome_id_base(record):
            result.problems.append(f"{record.decision} outcome of {record.command_id}: message_id {record.message_id}")
    return result


def check_retry_message_id(observed: Observed) -> CheckResult:
    result = CheckResult(
        "retry message_id = commandId#attempt", "a retry outcome's topic message_id is <commandId>#<attempt>"
    )
    for record in observed.outcomes:
        if record.decision == "retry":
            expected = f"{outcome_id_base(record)}#{record.event.get('attempt')}"
            if record.message_id != expected:
                result.problems.append(
                    f"retry outcome of {record.command_id}: message_id {record.message_id} != {expected}"
                )
    return result


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        return {"true": True, "false": False}.get(text.lower())
    return None


def check_dry_run_property(observed: Observed) -> CheckResult:
    result = CheckResult(
        "dryRun property", "every outcome carries the application property dryRun, equal to the event's"
    )
    for record in observed.outcomes:
        if "dryRun" not in record.properties:
            result.problems.append(f"{record.decision} outcome {record.message_id}: no dryRun property")
        elif _as_bool(record.properties["dryRun"]) != bool(record.event.get("dryRun")):
            shown = f"property dryRun={record.properties['dryRun']!r}, event {record.event.get('dryRun')!r}"
            result.problems.append(f"{record.message_id}: {shown}")
    return result


def check_invalid_keeps_fields(sent: Sent, observed: Observed) -> CheckResult:
    result = CheckResult(
        "invalid outcome keeps parsed fields",
        "an invalid message's outcome carries the action / jobId / taskId that obeyed their rules",
    )
    by_malformed = outcomes_by_malformed(sent, observed)
    for message in sent.malformed:
        if not message.kept:
            continue
        for record in by_malformed.get(message.key, []):
            lost = {name: value for name, value in message.kept.items() if record.event.get(name) != value}
            if lost:
                shown = {name: record.event.get(name) for name in lost}
                result.problems.append(f"{message.key} [{message.category}]: expected {lost}, outcome has {shown}")
                break
    return result


def note_unexpected_decisions(sent: Sent, observed: Observed) -> CheckResult:
    """Valid commands dead-lettered for a reason the injected faults do not explain (a policy question)."""
    result = CheckResult(
        "unexpected dead-letters of valid commands",
        f"valid command dead-lettered for a reason other than {sorted(FAULT_REASONS)}",
    )
    terminals = terminals_by_command(observed.outcomes)
    for command in sent.valid:
        for record in terminals.get(command.command_id, []):
            reason = record.event.get("deadLetterReason")
            if record.decision == "deadLetter" and reason not in FAULT_REASONS:
                result.problems.append(
                    f"{command.command_id} {command.action}: {reason}: {_short(record.event.get('detail'), 140)}"
                )
    return result


AUTH_CODES: Final = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo"})


def note_first_401_dead_letters(sent: Sent, observed: Observed) -> CheckResult:
    """A 401 is retried once (token refresh) - unless an earlier failure of another kind used that attempt up."""
    result = CheckResult(
        "401 dead-lettered without a second 401",
        "valid command dead-lettered AuthenticationFailed though its previous attempt failed differently",
    )
    valid = {command.command_id for command in sent.valid}
    retries: dict[tuple[str, object], OutcomeRecord] = {
        (r.command_id, r.event.get("attempt")): r for r in observed.outcomes if r.decision == "retry"
    }
    for record in observed.outcomes:
        reason = record.event.get("deadLetterReason")
        if record.command_id not in valid or record.decision != "deadLetter" or reason not in AUTH_CODES:
            continue
        attempt = record.event.get("attempt")
        if not isinstance(attempt, int):
            continue
        previous = retries.get((record.command_id, attempt - 1))
        code = (previous.event.get("batchError") or {}).get("code") if previous else None
        if previous is not None and code not in AUTH_CODES:
            status = previous.event.get("httpStatus")
            result.problems.append(
                f"{record.command_id}: 401 at attempt {attempt}; attempt {attempt - 1} got {status} {code}"
            )
    return result


def note_unattributed_outcomes(sent: Sent, observed: Observed) -> CheckResult:
    result = CheckResult("unattributed outcomes", "outcome events whose commandId names no message the suite sent")
    valid = {command.command_id for command in sent.valid}
    index = candidate_index(sent.malformed + sent.unsendable, observed.dead_letters)
    for record in observed.outcomes:
        if record.command_id not in valid and record.command_id not in index:
            result.problems.append(f"{record.decision} {record.message_id}: commandId {_short(record.command_id, 60)}")
    return result


# --- all of it -----------------------------------------------------------------------------------

CHECKS: Final[tuple[Callable[[Sent, Observed, set[str]], CheckResult], ...]] = (
    lambda s, o, j: check_lost(s, o),
    lambda s, o, j: check_doubled(s, o),
    lambda s, o, j: check_poison(o),
    check_stray_calls,
    lambda s, o, j: check_malformed_dead_lettered(s, o),
    lambda s, o, j: check_malformed_outcome(s, o),
    lambda s, o, j: check_terminal_message_id(o),
    lambda s, o, j: check_retry_message_id(o),
    lambda s, o, j: check_dry_run_property(o),
    lambda s, o, j: check_invalid_keeps_fields(s, o),
)


def evaluate(sent: Sent, observed: Observed, seeded_jobs: set[str]) -> Tally:
    tally = Tally(
        valid_sent=len(sent.valid),
        resent=len(sent.resent),
        malformed_sent=len(sent.malformed),
        unsendable=len(sent.unsendable),
        outcome_messages=len(observed.outcomes),
        terminal_outcomes=sum(1 for r in observed.outcomes if r.decision in TERMINAL),
        retry_outcomes=sum(1 for r in observed.outcomes if r.decision == "retry"),
        batch_calls=len(observed.batch_calls),
    )
    valid_ids = {command.command_id for command in sent.valid}
    for record in observed.outcomes:
        if record.decision in TERMINAL and record.command_id in valid_ids:
            tally.valid_decisions[record.decision] += 1
    tally.dead_letters_by_reason.update(str(r.reason) for r in observed.dead_letters)
    tally.malformed_by_category.update(m.category for m in sent.malformed)
    ok, invalid, unknown = attribute_calls(sent, observed.batch_calls, seeded_jobs)
    tally.batch_calls_valid, tally.batch_calls_invalid_input, tally.batch_calls_unattributed = (
        ok,
        len(invalid),
        len(unknown),
    )
    tally.checks = [check(sent, observed, seeded_jobs) for check in CHECKS]
    tally.notes = [
        note_unexpected_decisions(sent, observed),
        note_first_401_dead_letters(sent, observed),
        note_unattributed_outcomes(sent, observed),
    ]
    return tally
