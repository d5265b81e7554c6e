"""``function_app.process_command`` runs under the local host with the package's own binding objects.

The local host hands it what the Python worker hands it in Azure: the message decoded from the host's
model binding data by ``azurefunctions-extensions-bindings-servicebus``'s converter, and the package's
``ServiceBusMessageActions`` singleton, which settles over gRPC (docs/local-host.md).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage
from azurefunctions.extensions.bindings.servicebus import ServiceBusMessageActions

import function_app
from local.host import LocalHost
from tests.e2e.conftest import Outcomes, send

pytestmark = pytest.mark.slow


def test_process_command_gets_the_packages_message_and_actions_and_settles_over_grpc(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Any, Any]] = []
    settled = threading.Event()
    real_settle = vars(function_app)["settle"]

    def spy(actions: Any, message: Any, settlement: Any, timeout: float) -> None:
        seen.append((actions, message))
        real_settle(actions, message, settlement, timeout)
        settled.set()

    monkeypatch.setattr(function_app, "settle", spy)  # process_command looks it up when it runs
    assert host.batch is not None
    host.batch.seed_job("binding-path")
    send(sb_client, {"action": "terminateJob", "jobId": "binding-path", "commandId": "binding-path-1"})
    assert settled.wait(30)
    actions, message = seen[0]
    assert type(actions) is ServiceBusMessageActions and actions is ServiceBusMessageActions.get_instance()
    assert type(message) is ServiceBusReceivedMessage  # what the package's ServiceBusConverter returns
    assert vars(message)["_receiver"] is None  # decoded from binding data, not the receiver's own message
    assert message.message_id == "binding-path-1"
    outcomes.wait("binding-path-1", "succeeded")
    assert host.peer is not None
    assert not [m for m in host.peer.messages("batch-commands") if m["message_id"] == "binding-path-1"]
