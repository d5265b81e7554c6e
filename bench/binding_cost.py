"""What driving the real binding costs the local host per message (docs/local-host.md).

Three extra steps stand between the SDK receiver and the function since the local host drives the real
``azurefunctions-extensions-bindings-servicebus`` binding, each measured against the direct alternative
in the same run:

* **encode**: the host's model binding data (``local.binding.binding_content``: the .NET round trip and
  the AMQP encoding) of a command message as the product receives it;
* **decode**: the package's converter (1.0.0b2, uamqp), and ``ServiceBusReceivedMessage.from_bytes``
  (pyamqp) for comparison;
* **settlement hop**: ``ServiceBusMessageActions.complete`` from inside an invocation (gRPC to the
  local ``Settlement`` service, posted to the driver thread, applied on the receiver, answered) against
  ``receiver.complete_message`` on the same peer.

Encode and decode are CPU loops (median of ``runs`` loops of ``messages`` each, in microseconds per
message); the settlement figures are medians of per-call wall times over ``messages`` messages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # before grpc loads: no GOAWAY log line at exit

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azurefunctions.extensions.bindings import servicebus

from emulators.servicebus import ServiceBusPeer
from local.binding import (
    binding_content,
    decode_from_bytes,
    decode_with_package,
    delivery_tag_of,
    install_wire_capture,
    wire_of,
)
from local.functions import IndexedFunction
from local.queue_driver import QueueDriver

QUEUE = "binding-cost"
_CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {"Name": "sbemulatorns", "Queues": [{"Name": QUEUE, "Properties": {"LockDuration": "PT1M"}}], "Topics": []}
        ]
    }
}
_COMMAND = json.dumps({"action": "terminateTask", "jobId": "render-2026-11", "taskId": "frame-0042"}).encode()


def _command(index: int) -> ServiceBusMessage:
    return ServiceBusMessage(
        _COMMAND,
        message_id=f"cost-{index}",
        content_type="application/json",
        application_properties={"attempt": "2"},
    )


def _per_message_us(work: Any, items: list[Any], runs: int) -> float:
    loops = []
    for _ in range(runs):
        started = time.perf_counter()
        for item in items:
            work(item)
        loops.append((time.perf_counter() - started) / len(items))
    return statistics.median(loops) * 1e6


def _codec(client: ServiceBusClient, messages: int, runs: int) -> dict[str, float]:
    with client.get_queue_sender(QUEUE) as sender:
        sender.send_messages([_command(i) for i in range(min(messages, 100))])
    received: list[tuple[bytes, bytes]] = []
    with client.get_queue_receiver(QUEUE) as receiver:
        while len(received) < min(messages, 100):
            for message in receiver.receive_messages(max_message_count=100, max_wait_time=2):
                received.append((wire_of(message), delivery_tag_of(message)))
                receiver.complete_message(message)
    items = (received * (messages // len(received) + 1))[:messages]
    contents = [binding_content(wire, tag) for wire, tag in items]
    return {
        "encode_us": _per_message_us(lambda item: binding_content(*item), items, runs),
        "decode_package_us": _per_message_us(decode_with_package, contents, runs),
        "decode_from_bytes_us": _per_message_us(decode_from_bytes, contents, runs),
    }


def _settle_direct(client: ServiceBusClient, messages: int) -> list[float]:
    with client.get_queue_sender(QUEUE) as sender:
        sender.send_messages([_command(i) for i in range(messages)])
    times: list[float] = []
    with client.get_queue_receiver(QUEUE, prefetch_count=0) as receiver:
        while len(times) < messages:
            for message in receiver.receive_messages(max_message_count=16, max_wait_time=2):
                started = time.perf_counter()
                receiver.complete_message(message)
                times.append(time.perf_counter() - started)
    return times


def _settle_grpc(peer: ServiceBusPeer, client: ServiceBusClient, messages: int) -> list[float]:
    times: list[float] = []
    done = threading.Event()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        started = time.perf_counter()
        actions.complete(message)
        times.append(time.perf_counter() - started)
        if len(times) >= messages:
            done.set()

    trigger = {"type": "serviceBusTrigger", "name": "message", "queueName": QUEUE}
    # One invocation at a time: the driver thread is then free to answer at once (with more in flight it
    # may first finish a receive call of up to 50 ms).
    driver = QueueDriver(IndexedFunction("binding_cost", trigger, function), peer.connection_string, QUEUE, 1)
    driver.start()
    try:
        with client.get_queue_sender(QUEUE) as sender:
            sender.send_messages([_command(i) for i in range(messages)])
        if not done.wait(120):
            raise TimeoutError(f"{len(times)} of {messages} settled through gRPC")
    finally:
        driver.stop()
    return times


def run(messages: int = 200, runs: int = 5) -> dict[str, Any]:
    install_wire_capture()
    result: dict[str, Any] = {"messages": messages, "runs": runs}
    with (
        ServiceBusPeer(_CONFIG, port=0) as peer,
        ServiceBusClient.from_connection_string(peer.connection_string) as client,
    ):
        result.update(_codec(client, messages, runs))
        direct = _settle_direct(client, messages)
        grpc = _settle_grpc(peer, client, messages)
    result["settle_direct_ms"] = statistics.median(direct) * 1000
    result["settle_grpc_ms"] = statistics.median(grpc) * 1000
    result["grpc_hop_ms"] = result["settle_grpc_ms"] - result["settle_direct_ms"]
    result["settle_ratio"] = result["settle_grpc_ms"] / result["settle_direct_ms"]
    result["extra_per_message_ms"] = (result["encode_us"] + result["decode_package_us"]) / 1000 + result["grpc_hop_ms"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.binding_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.messages, args.runs)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
