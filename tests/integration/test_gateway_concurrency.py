"""The Service Bus gateway under concurrency, with the real SDK against the local peer.

The Functions worker runs up to ``maxConcurrentCalls`` invocations on threads, and each publishes,
schedules and enqueues through one process-wide gateway. These tests hold it to: nothing lost and
nothing sent twice under 32 threads, and a sender broken by a peer restart replaced without losing
any message another thread sent. Entities here have no duplicate detection, so a double send would
show as two stored messages.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from azure.servicebus import ServiceBusClient

from emulators.servicebus import ServiceBusPeer
from shared.messages import Outbound
from shared.servicebus import ServiceBusGateway

THREADS: Final = 32
PER_THREAD: Final = 20
CONFIG: Final[dict[str, Any]] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [{"Name": "commands", "Properties": {"LockDuration": "PT30S", "MaxDeliveryCount": 10}}],
                "Topics": [
                    {"Name": "outcomes", "Properties": {}, "Subscriptions": [{"Name": "all", "Properties": {}}]}
                ],
            }
        ]
    }
}


def message(thread: int, n: int) -> Outbound:
    return Outbound(body=b"{}", message_id=f"t{thread}-m{n}", subject="terminateTask")


def stored_ids(peer: ServiceBusPeer, entity: str) -> Counter[str]:
    return Counter(str(stored["message_id"]) for stored in peer.messages(entity))


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(CONFIG, db_path=str(tmp_path / "peer.db")) as running:
        yield running


def gateway_for(peer: ServiceBusPeer, **client_options: Any) -> ServiceBusGateway:
    """As the runtime builds it, here under a generous time limit."""
    client = ServiceBusClient.from_connection_string(peer.connection_string, **client_options)
    return ServiceBusGateway(client, "commands", "outcomes", timeout=30)


def test_32_threads_publish_schedule_and_enqueue_each_message_exactly_once(peer: ServiceBusPeer) -> None:
    gateway = gateway_for(peer)
    later = datetime.now(UTC) + timedelta(hours=1)

    def work(thread: int) -> None:
        for n in range(PER_THREAD):
            if n % 3 == 0:
                gateway.publish(message(thread, n))
            elif n % 3 == 1:
                copy = message(thread, n)
                gateway.schedule(Outbound(copy.body, copy.message_id, copy.subject, scheduled_enqueue_time=later))
            else:
                gateway.enqueue([message(thread, n)])

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(work, range(THREADS)))
    finally:
        gateway.close()
    expected = {f"t{t}-m{n}" for t in range(THREADS) for n in range(PER_THREAD)}
    published = stored_ids(peer, "outcomes/Subscriptions/all")
    queued = stored_ids(peer, "commands")
    assert set(published) | set(queued) == expected
    assert not set(published) & set(queued)
    assert max((published + queued).values()) == 1
    assert len(published) == THREADS * len(range(0, PER_THREAD, 3))


def test_a_sender_broken_by_a_peer_restart_is_replaced_and_no_message_is_lost(peer: ServiceBusPeer) -> None:
    """Threads publish while the peer restarts; a failed send is retried (as a redelivery would do).

    Every send reported as done is stored, and after the restart every thread's sends succeed again:
    the gateway dropped the broken senders instead of handing them out again. The SDK's own retries
    are off, so the broken links reach the gateway instead of being mended inside the SDK.
    """
    gateway = gateway_for(peer, retry_total=0)
    sent: list[str] = []
    failures = Counter[int]()
    lock = threading.Lock()
    halfway = threading.Barrier(THREADS + 1)

    def work(thread: int) -> None:
        for n in range(PER_THREAD):
            if n == PER_THREAD // 2:
                halfway.wait(timeout=30)  # every thread holds a sender that the restart breaks
                halfway.wait(timeout=30)
            for _ in range(20):
                try:
                    gateway.publish(message(thread, n))
                except Exception:
                    with lock:
                        failures[thread] += 1
                    continue
                with lock:
                    sent.append(f"t{thread}-m{n}")
                break

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(work, thread) for thread in range(THREADS)]
            halfway.wait(timeout=30)
            peer.restart()
            halfway.wait(timeout=30)
            for future in futures:
                future.result(timeout=120)
    finally:
        gateway.close()
    stored = stored_ids(peer, "outcomes/Subscriptions/all")
    assert len(sent) == THREADS * PER_THREAD  # every message was eventually sent
    assert set(sent) <= set(stored)  # nothing reported as sent was lost
    assert sum(failures.values()) > 0  # the restart did break senders: the test exercised the fault
