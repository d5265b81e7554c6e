"""Outgoing application properties (shared/servicebus.py): trace context under the keys the SDK uses."""

from __future__ import annotations

from shared.messages import Outbound
from shared.servicebus import to_sdk

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_trace_properties_use_bytes_keys_so_the_sdk_tracing_cannot_add_a_second_one() -> None:
    message = Outbound(
        body=b"{}",
        message_id="m",
        subject="s",
        application_properties={"traceparent": TRACEPARENT, "Diagnostic-Id": TRACEPARENT, "decision": "retry"},
    )
    properties = to_sdk(message).application_properties
    assert properties == {b"traceparent": TRACEPARENT, b"Diagnostic-Id": TRACEPARENT, "decision": "retry"}
    # What the SDK does when its own tracing is on: setdefault on bytes keys, which now keeps ours.
    properties.setdefault(b"traceparent", "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01")
    assert properties[b"traceparent"] == TRACEPARENT
