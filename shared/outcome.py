"""The outcome event: one per decision, published to the outcome topic (docs/design.md, "Outcome events")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.batch_client import BatchAnswer
from shared.messages import Outbound, json_body

TERMINAL_DECISIONS = frozenset({"succeeded", "alreadyDone", "deadLetter"})


@dataclass(frozen=True)
class Outcome:
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
        }

    @property
    def message_id(self) -> str:
        """The topic message id: a command's terminal outcome has one id whatever the attempt.

        So the topic's duplicate detection drops a second terminal outcome of the same command (a
        redelivery after a lost settlement, a retry copy that ran anyway, a producer's resend) while
        each attempt's ``retry`` progress event keeps its own id. A dry run has ids of its own, so it
        never hides the real run's outcome. At most 100 + 7 + 4 characters (Service Bus allows 128).
        """
        base = f"{self.command_id}#dryRun" if self.dry_run else self.command_id
        return base if self.decision in TERMINAL_DECISIONS else f"{base}#{self.attempt}"

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
