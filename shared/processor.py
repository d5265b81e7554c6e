"""Process one command message: call Batch, decide, schedule a retry, publish the outcome, settle.

The order is call Batch -> decide -> (schedule retry copy) -> publish outcome -> settle (docs/design.md,
"Guarantees"). If anything after the Batch call fails the message is abandoned, so Service Bus delivers
it again; the policy turns the repeat into ``alreadyDone`` and the topic's duplicate detection drops its
second terminal outcome, whose message id depends on the commandId only.

A selector command (``select`` / ``jobSelect``) is expanded one listing page per message by
``shared/fanout.py``; its order is list one page -> enqueue the targets the previous page chose -> enqueue
the continuation -> publish the ``fanOut`` outcome -> settle, and any failure after the listing abandons the
message the same way (docs/design.md, "Fleet operations").

``process`` never raises: an unreadable message is an ``InvalidCommand`` dead-letter, a defect of our
own while deciding is handled like an unreadable Batch answer (retried, then ``RetriesExhausted``), and
a failure to publish, enqueue or schedule abandons the message.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol

from shared import dry_run
from shared.backoff import retry_delay
from shared.batch_client import BatchAnswer, BatchError
from shared.config import Settings
from shared.contract import Command, InvalidCommand, Parsed, Selection, page_message_id, parse_message
from shared.fanout import Expander, Lister, PagePlan
from shared.messages import ATTEMPT_PROPERTY, COMMAND_ID_PROPERTY, REDRIVE_PROPERTY, Outbound, Received, id_base
from shared.outcome import Outcome
from shared.policy import TRANSPORT_ERROR, Policy, Verdict
from shared.telemetry import METRICS, TraceContext, activate, carry

MAX_DESCRIPTION_BYTES = 1024
log = logging.getLogger("batch_lifecycle")
THROTTLING_CODES = frozenset({"ServerBusy", "TooManyRequests"})


class _Delivery(NamedTuple):
    """What every message sent for the delivery being processed inherits from it (one per invocation)."""

    generation: int = 0
    trace: TraceContext | None = None

    def properties(self) -> dict[str, str | int | bool]:
        extra: dict[str, str | int | bool] = dict(carry(self.trace))
        if self.generation:
            extra[REDRIVE_PROPERTY] = self.generation
        return extra


# The worker runs each invocation on one thread; a context variable keeps concurrent deliveries apart.
_DELIVERY: ContextVar[_Delivery] = ContextVar("delivery", default=_Delivery())  # noqa: B039 - frozen


class BatchApi(dry_run.StateReader, Lister, Protocol):
    def execute(self, command: Command) -> BatchAnswer: ...


class Bus(Protocol):
    """Where outcomes, retry copies and a selector's commands go (the real one is Service Bus)."""

    def publish(self, message: Outbound) -> None: ...

    def schedule(self, message: Outbound) -> None: ...

    def enqueue(self, messages: Iterable[Outbound]) -> int: ...


class Settlement(NamedTuple):
    kind: Literal["complete", "deadletter", "abandon"]
    reason: str | None = None
    description: str | None = None


class Result(NamedTuple):
    settlement: Settlement
    outcome: Outcome
    log_fields: dict[str, Any]


class Processor:
    def __init__(
        self,
        settings: Settings,
        batch: BatchApi,
        bus: Bus,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._batch = batch
        self._bus = bus
        self._policy = Policy(settings.decision_overrides)
        self._clock = clock
        self._rng = rng or random.Random()
        self._expander = Expander(settings.fleet, batch, self._policy, clock)

    def process(self, received: Received) -> Result:
        started = time.perf_counter()
        token = _DELIVERY.set(_Delivery(received.generation, received.trace))
        try:
            with activate(received.trace):
                result = self._handle(received)
        except Exception as exc:  # the last guard: a defect of ours must not loop the message
            log.exception("processing failed unexpectedly; the message is dead-lettered ProcessingFailed")
            result = self._unfinished(received, exc)
        finally:
            _DELIVERY.reset(token)
        if received.trace is not None:
            result.log_fields["traceId"] = received.trace.trace_id
        result.log_fields["totalMs"] = round((time.perf_counter() - started) * 1000)
        log.info("%s", json.dumps({"event": "commandProcessed", **result.log_fields}))
        return result

    def _handle(self, received: Received) -> Result:
        # The attempt property is ours, but a producer can set it too: never trust it beyond the range.
        attempt = min(max(received.attempt, 1), self._settings.max_attempts)
        try:
            command = self._parse(received)
        except InvalidCommand as exc:
            return self._invalid(received, attempt, exc)
        if isinstance(command, Selection):
            return self._select(command, attempt)
        try:
            return self._run(command, attempt)
        except Exception as exc:  # a defect in deciding: handled like an unreadable answer, so retried
            log.exception("deciding %s failed; treated as a transient failure", command.command_id)
            answer = BatchAnswer(
                status=None, error=BatchError(TRANSPORT_ERROR, f"internal error: {type(exc).__name__}")
            )
            return self._retry(command, attempt, answer, self._policy.decide(command.action, None, TRANSPORT_ERROR))

    def _unfinished(self, received: Received, exc: Exception) -> Result:
        """Dead-letter ``ProcessingFailed``, with an outcome event if one can still be published."""
        description = f"the function failed on this message ({type(exc).__name__}); redrive it after a fix"
        outcome = Outcome(
            command_id=received.message_id or received.fingerprint,
            action=None,
            account=None,
            job_id=None,
            task_id=None,
            decision="deadLetter",
            attempt=1,
            occurred_at=self._clock(),
            dead_letter_reason="ProcessingFailed",
            detail=description,
        )
        settlement = Settlement("deadletter", "ProcessingFailed", description)
        try:  # the outcome may still go out; the dead-letter does not depend on it
            self._bus.publish(outcome.message())
        except Exception as publish_failure:
            log.warning("no outcome for %s (%s)", outcome.command_id, type(publish_failure).__name__)
        return Result(settlement, outcome, {"commandId": outcome.command_id, "settlement": "deadletter"})

    def _parse(self, received: Received) -> Command | Selection:
        if received.body is None or received.problems:
            raise InvalidCommand(list(received.problems))
        try:
            return parse_message(
                received.body,
                received.message_id,
                self._settings.accounts,
                self._settings.default_account,
                self._settings.fleet,
            )
        except InvalidCommand:
            raise
        except Exception as exc:  # whatever the parser did not foresee is still the sender's malformed input
            raise InvalidCommand([f"body cannot be read as a command ({type(exc).__name__})"]) from None

    def _invalid(self, received: Received, attempt: int, exc: InvalidCommand) -> Result:
        parsed: Parsed = exc.parsed
        problems = str(exc)
        outcome = Outcome(
            command_id=parsed.command_id or received.message_id or received.fingerprint,
            action=parsed.action,
            account=parsed.account,
            job_id=parsed.job_id,
            task_id=parsed.task_id,
            decision="deadLetter",
            attempt=attempt,
            occurred_at=self._clock(),
            dry_run=parsed.dry_run,
            dead_letter_reason="InvalidCommand",
            detail=_clip(problems),
            requested_by=parsed.requested_by,
        )
        settlement = Settlement("deadletter", "InvalidCommand", _clip(f"invalid command: {problems}"))
        return self._finish(outcome, settlement, None)

    def _run(self, command: Command, attempt: int) -> Result:
        if command.dry_run:
            answer, status, code = dry_run.inspect(self._batch, command)
            verdict = self._policy.decide(command.action, status, code)
            read_failed = not answer.ok and verdict.decision == "retry"
            if not read_failed:
                return self._report_dry_run(command, attempt, answer, verdict)
        else:
            answer = self._batch.execute(command)
            verdict = self._policy.decide(command.action, answer.status, answer.code)
        if verdict.decision == "retry":
            return self._retry(command, attempt, answer, verdict)
        if verdict.decision == "deadLetter":
            return self._dead_letter(command, attempt, answer, _reason(answer), _describe(command, answer))
        outcome = self._outcome(command, attempt, answer, verdict.decision)
        return self._finish(outcome, Settlement("complete"), None)

    # --- selector commands (shared/fanout.py) ------------------------------------------------------------

    def _select(self, selection: Selection, attempt: int) -> Result:
        try:
            plan = self._expander.plan(selection)
        except Exception as exc:  # a defect in expanding: handled like an unreadable answer, so retried
            log.exception("expanding %s failed; treated as a transient failure", selection.command_id)
            answer = BatchAnswer(
                status=None, error=BatchError(TRANSPORT_ERROR, f"internal error: {type(exc).__name__}")
            )
            verdict = self._policy.decide_listing(None, TRANSPORT_ERROR)
            detail = f"{selection.action} selector page {selection.page}: internal error ({type(exc).__name__})"
            failed = PagePlan("retry", self._expander.stalled(selection), answer, verdict, detail=detail)
            return self._select_retry(selection, attempt, failed)
        if plan.decision == "retry":
            return self._select_retry(selection, attempt, plan)
        outcome = self._selection_outcome(selection, attempt, plan, plan.decision, reason=plan.reason)
        if plan.decision == "deadLetter":
            description = _clip(plan.detail or "selector failed")
            settlement = Settlement("deadletter", plan.reason, description)
            return self._finish(outcome, settlement, None, plan.children)
        return self._finish(outcome, Settlement("complete"), None, plan.children, plan.continuation)

    def _select_retry(self, selection: Selection, attempt: int, plan: PagePlan) -> Result:
        """A listing that failed transiently: a retry copy of this page, or a dead-letter when out of attempts."""
        assert plan.verdict is not None and plan.answer is not None  # a failed listing always has both
        answer, verdict, detail, children = plan.answer, plan.verdict, plan.detail or "", plan.children
        reason = None
        if verdict.max_attempts is not None and attempt >= verdict.max_attempts:
            reason = _reason(answer)
        elif attempt >= self._settings.max_attempts:
            reason, detail = "RetriesExhausted", f"gave up after {attempt} attempts; last answer: {detail}"
        if reason is not None:
            outcome = self._selection_outcome(selection, attempt, plan, "deadLetter", reason=reason, detail=detail)
            return self._finish(outcome, Settlement("deadletter", reason, _clip(detail)), None, children)
        delay = retry_delay(attempt, self._settings.base_delay, self._settings.max_delay, answer.retry_after, self._rng)
        retry_at = self._clock() + timedelta(seconds=delay)
        copy = Outbound(
            body=selection.to_json(),
            message_id=page_message_id(
                selection.command_id, selection.dry_run, selection.page, attempt + 1, _DELIVERY.get().generation
            ),
            subject=selection.action,
            application_properties={ATTEMPT_PROPERTY: attempt + 1, COMMAND_ID_PROPERTY: selection.command_id},
            correlation_id=selection.command_id,
            scheduled_enqueue_time=retry_at,
        )
        outcome = self._selection_outcome(selection, attempt, plan, "retry", retry_at=retry_at, detail=detail)
        return self._finish(outcome, Settlement("complete"), copy, children)

    def _selection_outcome(
        self,
        selection: Selection,
        attempt: int,
        plan: PagePlan,
        decision: str,
        *,
        retry_at: datetime | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> Outcome:
        text = detail if detail is not None else plan.detail
        return Outcome(
            command_id=selection.command_id,
            action=selection.action,
            account=selection.account,
            job_id=selection.job_id,
            task_id=None,
            decision=decision,
            attempt=attempt,
            occurred_at=self._clock(),
            answer=plan.answer,
            dry_run=selection.dry_run,
            retry_at=retry_at,
            dead_letter_reason=reason if decision == "deadLetter" else None,
            detail=_clip(text) if text is not None else None,
            requested_by=selection.requested_by,
            page=selection.page,
            fan_out=plan.fan_out,
        )

    def _report_dry_run(self, command: Command, attempt: int, answer: BatchAnswer, verdict: Verdict) -> Result:
        detail = f"dry run: the real call would be decided {verdict.decision} ({verdict.rule})"
        outcome = self._outcome(command, attempt, answer, verdict.decision, detail=detail)
        return self._finish(outcome, Settlement("complete"), None)

    def _retry(self, command: Command, attempt: int, answer: BatchAnswer, verdict: Verdict) -> Result:
        if verdict.max_attempts is not None and attempt >= verdict.max_attempts:
            return self._dead_letter(command, attempt, answer, _reason(answer), _describe(command, answer))
        if attempt >= self._settings.max_attempts:
            description = f"gave up after {attempt} attempts; last answer: {_describe(command, answer)}"
            return self._dead_letter(command, attempt, answer, "RetriesExhausted", description)
        delay = retry_delay(attempt, self._settings.base_delay, self._settings.max_delay, answer.retry_after, self._rng)
        retry_at = self._clock() + timedelta(seconds=delay)
        # Its own id per attempt (a dry run's and a redrive's apart from the original run's), so the queue's
        # duplicate detection drops only a second copy of the same attempt.
        base = id_base(command.command_id, command.dry_run, _DELIVERY.get().generation)
        copy = Outbound(
            body=command.to_json(),
            message_id=f"{base}#{attempt + 1}",
            subject=command.action,
            application_properties={ATTEMPT_PROPERTY: attempt + 1, COMMAND_ID_PROPERTY: command.command_id},
            correlation_id=command.command_id,
            scheduled_enqueue_time=retry_at,
        )
        outcome = self._outcome(command, attempt, answer, "retry", retry_at=retry_at)
        return self._finish(outcome, Settlement("complete"), copy)

    def _dead_letter(
        self, command: Command, attempt: int, answer: BatchAnswer, reason: str, description: str
    ) -> Result:
        outcome = self._outcome(command, attempt, answer, "deadLetter", reason=reason, detail=_clip(description))
        return self._finish(outcome, Settlement("deadletter", reason, _clip(description)), None)

    def _outcome(
        self,
        command: Command,
        attempt: int,
        answer: BatchAnswer,
        decision: str,
        *,
        retry_at: datetime | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> Outcome:
        return Outcome(
            command_id=command.command_id,
            action=command.action,
            account=command.account,
            job_id=command.job_id,
            task_id=command.task_id,
            decision=decision,
            attempt=attempt,
            occurred_at=self._clock(),
            answer=answer,
            dry_run=command.dry_run,
            retry_at=retry_at,
            dead_letter_reason=reason,
            detail=detail,
            requested_by=command.requested_by,
        )

    def _finish(
        self,
        outcome: Outcome,
        settlement: Settlement,
        retry_copy: Outbound | None,
        children: Sequence[Outbound] = (),
        continuation: Outbound | None = None,
    ) -> Result:
        delivery = _DELIVERY.get()
        if delivery.generation:  # only a redriven delivery (_replace on 3.11 also parks a tuple in the free list)
            outcome = outcome._replace(generation=delivery.generation)
        fields = _log_fields(outcome, settlement)
        inherit = delivery.properties()
        try:
            if children:
                self._bus.enqueue([_inheriting(child, inherit) for child in children])
            if continuation is not None:
                self._bus.enqueue([_inheriting(continuation, inherit)])
            if retry_copy is not None:
                self._bus.schedule(_inheriting(retry_copy, inherit))
            self._bus.publish(_inheriting(outcome.message(), inherit))
        except Exception as exc:  # any failure here must turn into a redelivery
            fields.update(settlement="abandon", abandonCause=type(exc).__name__)
            return Result(
                Settlement("abandon", description=f"{type(exc).__name__} after the Batch call"), outcome, fields
            )
        _measure(outcome, len(children))
        return Result(settlement, outcome, fields)


def _inheriting(message: Outbound, extra: dict[str, str | int | bool]) -> Outbound:
    """``message`` with the delivery's trace context (and redrive generation) among its properties."""
    if not extra:
        return message
    return message._replace(application_properties={**message.application_properties, **extra})


def _measure(outcome: Outcome, targets: int) -> None:
    """Metrics of a decision that was published (an abandoned one is counted when it is redelivered)."""
    action = outcome.action or "invalid"
    METRICS.decision(action, outcome.decision, outcome.dead_letter_reason or outcome.error_code)
    answer = outcome.answer
    if answer is not None and (answer.status is not None or answer.duration_ms):
        METRICS.batch_call(action, answer.status, answer.duration_ms, account=outcome.account)
        if answer.status == 429 or answer.code in THROTTLING_CODES:
            METRICS.throttled(action, account=outcome.account)
    if outcome.fan_out is not None:
        METRICS.fan_out(action, targets)


# The outcome fields worth a log line; the line adds the error code and the settlement.
_LOGGED_FIELDS = (
    "commandId",
    "action",
    "account",
    "jobId",
    "taskId",
    "attempt",
    "dryRun",
    "decision",
    "httpStatus",
    "batchRequestId",
    "clientRequestId",
    "durationMs",
    "deadLetterReason",
    "requestedBy",
)


def _log_fields(outcome: Outcome, settlement: Settlement) -> dict[str, Any]:
    event = outcome.event()
    fields = {name: event[name] for name in _LOGGED_FIELDS}
    fields.update(errorCode=outcome.error_code, settlement=settlement.kind)
    if outcome.fan_out is not None:
        fan_out = outcome.fan_out
        fields["fanOut"] = {
            "page": fan_out.page,
            "listed": fan_out.listed,
            "selected": fan_out.selected,
            "enqueued": fan_out.enqueued,
            "totalSelected": fan_out.total_selected,
            "limitReached": fan_out.limit_reached,
            "more": fan_out.more,
        }
    return fields


def _reason(answer: BatchAnswer) -> str:
    if answer.code == "ConditionNotMet":
        return "PreconditionFailed"
    return answer.code or f"HttpStatus{answer.status}"


def _describe(command: Command, answer: BatchAnswer) -> str:
    target = f"job {command.job_id}" + (f" task {command.task_id}" if command.task_id else "")
    status = f"HTTP {answer.status}" if answer.status is not None else "no HTTP answer"
    error = f" {answer.error.code}: {answer.error.message}" if answer.error else ""
    return f"{command.action} on {target} in account {command.account}: Batch gave {status}{error}"


def _clip(text: str) -> str:
    """At most 1 KiB of UTF-8; text that cannot be encoded (a lone surrogate) is escaped, not refused."""
    encoded = text.encode("utf-8", "backslashreplace")
    if len(encoded) <= MAX_DESCRIPTION_BYTES:
        return encoded.decode("utf-8")
    return encoded[: MAX_DESCRIPTION_BYTES - 3].decode("utf-8", "ignore") + "..."
