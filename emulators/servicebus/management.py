"""Request/response operations on an entity's ``$management`` node."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from proton import UNDESCRIBED, Array, Data, timestamp

from .broker import BadRequest, Broker, BrokerError, Target

_PREFIX = "com.microsoft:"


@dataclass(frozen=True)
class Reply:
    status: int
    description: str
    body: Any = None
    condition: str | None = None


Operation = Callable[[Broker, Target, Mapping[str, Any]], Reply]


def _ok(body: Any = None) -> Reply:
    return Reply(200, "OK", body)


def _array(element_type: int, values: Sequence[Any]) -> Array:
    return Array(cast(Any, UNDESCRIBED), element_type, *values)


def _tokens(body: Mapping[str, Any]) -> list[Any]:
    tokens = list(body["lock-tokens"])
    if not tokens or any(t is None for t in tokens):
        raise BadRequest("lock-tokens must name at least one lock and contain no nulls.")
    return tokens


def _schedule(broker: Broker, target: Target, body: Mapping[str, Any]) -> Reply:
    payloads = [bytes(item["message"]) for item in body["messages"]]
    return _ok({"sequence-numbers": _array(Data.LONG, broker.send(target, payloads))})


def _cancel(broker: Broker, target: Target, body: Mapping[str, Any]) -> Reply:
    broker.cancel_scheduled(target, [int(s) for s in body["sequence-numbers"]])
    return _ok()


def _renew(broker: Broker, target: Target, body: Mapping[str, Any]) -> Reply:
    expirations = broker.renew(target, _tokens(body))
    return _ok({"expirations": _array(Data.TIMESTAMP, [timestamp(int(t * 1000)) for t in expirations])})


def _peek(broker: Broker, target: Target, body: Mapping[str, Any]) -> Reply:
    messages = broker.peek(target, int(body["from-sequence-number"]), int(body["message-count"]))
    if not messages:
        return Reply(204, "No messages")
    return _ok({"messages": [{"message": m} for m in messages]})


def _receive_deferred(broker: Broker, target: Target, body: Mapping[str, Any]) -> Reply:
    peek_lock = int(body.get("receiver-settle-mode", 1)) == 1
    deliveries = broker.receive_deferred(target, [int(s) for s in body["sequence-numbers"]], peek_lock)
    items = [
        {"lock-token": d.lock_token, "message": d.payload} if d.lock_token else {"message": d.payload}
        for d in deliveries
    ]
    return _ok({"messages": items})


def _update_disposition(broker: Broker, target: Target, body: Mapping[str, Any]) -> Reply:
    status = str(body["disposition-status"])
    for token in _tokens(body):
        if status == "completed":
            broker.complete(target, token)
        elif status == "abandoned":
            broker.abandon(target, token)
        elif status == "defered":  # sic: the SDK's spelling
            broker.defer(target, token)
        elif status == "suspended":
            broker.dead_letter(target, token, body.get("deadletter-reason"), body.get("deadletter-description"))
        else:
            raise BadRequest(f"Unknown disposition-status '{status}'.")
    return _ok()


_OPERATIONS: dict[str, Operation] = {
    "schedule-message": _schedule,
    "cancel-scheduled-message": _cancel,
    "renew-lock": _renew,
    "peek-message": _peek,
    "receive-by-sequence-number": _receive_deferred,
    "update-disposition": _update_disposition,
}


def handle(broker: Broker, target: Target, operation: str, body: Any) -> Reply:
    """Run one management request; every failure becomes a non-2xx reply the SDK maps to an exception."""
    op = _OPERATIONS.get(operation.removeprefix(_PREFIX))
    if op is None:
        return Reply(501, f"Operation '{operation}' is not supported by this peer.", condition="amqp:not-implemented")
    try:
        if not isinstance(body, Mapping):
            raise BadRequest("The request body must be a map.")
        return op(broker, target, body)
    except BrokerError as exc:
        return Reply(exc.status, str(exc), condition=exc.condition)
    except (KeyError, TypeError, ValueError) as exc:
        return Reply(400, f"Malformed request: {exc!r}", condition=BadRequest.condition)
