"""The outcome event: one per decision, published to the outcome topic (docs/design.md, "Outcome events")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from shared.batch_client import BatchAnswer
from shared.messages import Outbound, id_base, json_body

TERMINAL_DECISIONS = frozenset({"succeeded", "alreadyDone", "deadLetter"})
EXPANDING = "expanding"  # a selector page whose expansion continues on the next page


class FanOut(NamedTuple):
    """What one page of a selector's expansion did, and the running totals (README, "Fleet operations")."""

    kind: str
    page: int
    listed: int
    matched: int
    selected: int
    enqueued: int
    total_listed: int
    total_matched: int
    total_selected: int
    total_enqueued: int
    limit: int
    remaining: int
    limit_reached: bool
    more: bool
    first_targets: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "page": self.page,
            "listed": self.listed,
            "matched": self.matched,
            "selected": self.selected,
            "enqueued": self.enqueued,
            "totalListed": self.total_listed,
            "totalMatched": self.total_matched,
            "totalSelected": self.total_selected,
            "totalEnqueued": self.total_enqueued,
            "limit": self.limit,
            "remaining": self.remaining,
            "limitReached": self.limit_reached,
            "more": self.more,
            "firstTargets": list(self.first_targets),
        }


class Outcome(NamedTuple):
    command_id: str
    action: str | None
    account: str | None
    job_id: str | None
    task_id: str | None
    decision: str
    attempt: int
    occurred_at: datetime
    answer: BatchAnswer | None = None
    dry_run: bool = False
    retry_at: datetime | None = None
    dead_letter_reason: str | None = None
    detail: str | None = None
    requested_by: str | None = None
    page: int | None = None  # a selector's page; None for a single-target command
    fan_out: FanOut | None = None
    generation: int = 0  # the redrive generation of the message decided (messages.REDRIVE_PROPERTY)

    @property
    def error_code(self) -> str | None:
        return self.answer.code if self.answer else None

    def event(self) -> dict[str, Any]:
        """The event body, exactly the fields of ``schemas/outcome.schema.json``."""
        answer = self.answer
        return {
            "commandId": self.command_id,
            "action": self.action,
            "account": self.account,
            "jobId": self.job_id,
            "taskId": self.task_id,
            "decision": self.decision,
            "attempt": self.attempt,
            "httpStatus": answer.status if answer else None,
            "batchError": answer.error.as_dict() if answer and answer.error else None,
            "batchRequestId": answer.request_id if answer else None,
            "clientRequestId": answer.client_request_id if answer else None,
            "durationMs": answer.duration_ms if answer else 0,
            "dryRun": self.dry_run,
            "retryAt": _iso(self.retry_at),
            "deadLetterReason": self.dead_letter_reason,
            "detail": self.detail,
            "requestedBy": self.requested_by,
            "occurredAt": _iso(self.occurred_at),
            "fanOut": self.fan_out.as_dict() if self.fan_out is not None else None,
        }

    @property
    def message_id(self) -> str:
        """The topic message id: a command's terminal outcome has one id whatever the attempt.

        So the topic's duplicate detection drops a second terminal outcome of the same command (a
        redelivery after a lost settlement, a retry copy that ran anyway, a producer's resend) while
        each attempt's ``retry`` progress event keeps its own id. A dry run has ids of its own, so it
        never hides the real run's outcome. A selector's pages add the page: ``<base>#p<page>`` for an
        ``expanding`` page, ``<base>#p<page>#<attempt>`` for a retry of that page's expansion. A redrive
        (generation n) adds ``#r<n>`` to the base, so its outcomes are published inside the window too. At
        most 100 + 7 + 5 + 8 + 4 characters (Service Bus allows 128).
        """
        base = id_base(self.command_id, self.dry_run, self.generation)
        if self.decision in TERMINAL_DECISIONS:
            return base
        if self.page is not None:
            return f"{base}#p{self.page}" + ("" if self.decision == EXPANDING else f"#{self.attempt}")
        return f"{base}#{self.attempt}"

    def message(self) -> Outbound:
        """The topic message, with application properties a subscription's SQL filter can use."""
        properties: dict[str, str | int | bool] = {
            "decision": self.decision,
            "action": self.action or "",
            "jobId": self.job_id or "",
            "taskId": self.task_id or "",
            "account": self.account or "",
            "errorCode": _printable(self.dead_letter_reason or self.error_code or ""),
            "dryRun": self.dry_run,
        }
        return Outbound(
            body=json_body(self.event()),
            message_id=self.message_id,
            subject=self.action or "invalid",
            application_properties=properties,
            correlation_id=self.command_id,
        )


def _printable(text: str) -> str:
    """Batch's error code is the service's text; escape what AMQP could not encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:128]


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
