"""One peer per session with test entities, and one SDK client over a real socket to it.

Entities are named per test so tests do not see each other's messages; short lock durations and TTLs
keep the expiry tests quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from emulators.servicebus import ServiceBusPeer


def queue(name: str, **properties: Any) -> dict[str, Any]:
    return {"Name": name, "Properties": {"LockDuration": "PT30S", "MaxDeliveryCount": 10, **properties}}


def sql_rule(name: str, expression: str) -> dict[str, Any]:
    return {"Name": name, "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}}


TEST_CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    queue("settle"),
                    queue("batch"),
                    queue("defer"),
                    queue("peek"),
                    queue("schedule"),
                    queue("short-lock", LockDuration="PT1S"),
                    queue("max-delivery", MaxDeliveryCount=2),
                    queue("ttl-dlq", DeadLetteringOnMessageExpiration=True),
                    queue("ttl-drop", DefaultMessageTimeToLive="PT1S"),
                    queue(
                        "dedup",
                        RequiresDuplicateDetection=True,
                        DuplicateDetectionHistoryTimeWindow="PT10M",
                    ),
                    queue("persist"),
                    queue("tls"),
                    queue("async"),
                    queue("throughput"),
                ],
                "Topics": [
                    {
                        "Name": "events",
                        "Properties": {"RequiresDuplicateDetection": True},
                        "Subscriptions": [
                            {"Name": "all", "Properties": {"LockDuration": "PT30S"}},
                            {
                                "Name": "deadletters",
                                "Properties": {},
                                "Rules": [sql_rule("dl", "decision = 'deadLetter'")],
                            },
                            {
                                "Name": "correlated",
                                "Properties": {},
                                "Rules": [
                                    {
                                        "Name": "corr",
                                        "Properties": {
                                            "FilterType": "Correlation",
                                            "CorrelationFilter": {
                                                "Label": "outcome",
                                                "Properties": {"account": "prod"},
                                            },
                                        },
                                    }
                                ],
                            },
                            {
                                "Name": "complex",
                                "Properties": {},
                                "Rules": [
                                    sql_rule(
                                        "mixed",
                                        "(decision IN ('retry', 'deadLetter') AND NOT EXISTS(dryRun))"
                                        " OR sys.MessageId = 'forced' OR (priority <> 1 AND priority > 5)",
                                    )
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }
}


@pytest.fixture(scope="session")
def peer() -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(TEST_CONFIG) as running:
        yield running


@pytest.fixture(autouse=True)
def no_peer_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test ends with the peer's reactor thread free of handler exceptions."""
    yield
    if "peer" in request.fixturenames:
        running: ServiceBusPeer = request.getfixturevalue("peer")
        assert running.errors == []


@pytest.fixture(scope="session")
def client(peer: ServiceBusPeer) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(peer.connection_string) as sb_client:
        yield sb_client
