"""The usual mistakes end in one friendly line and exit code 1: no traceback, and the missing role named."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import ServiceBusAuthorizationError, ServiceBusError

from cli import bus
from cli.__main__ import main
from emulators.servicebus import ServiceBusPeer
from tests.cli.conftest import QUEUE, Run, Tool, dead_letter, free_port, local_connection

SUBCOMMANDS = [
    ["send", "terminateJob", "--job", "j"],
    ["send", "terminateJob", "--job", "j", "--wait", "--timeout", "5"],
    ["watch", "--timeout", "5"],
    ["dlq", "list"],
    ["dlq", "redrive", "--all"],
    ["dlq", "purge", "--yes"],
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_peer_not_running(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    port = free_port()
    result = run(capsys, *argv, "--connection-string", local_connection(port))
    assert result.code == 1
    assert one_line(result.err) == (
        f"error: no Service Bus peer is listening on 127.0.0.1:{port} (connection refused): start it with "
        "`make run` (or `python -m emulators.servicebus`), or point --connection-string at a running one"
    )


def test_wrong_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = f"no-such-ns-{uuid.uuid4().hex[:12]}.servicebus.windows.net"
    result = run(capsys, "dlq", "list", "--namespace", namespace)
    assert result.code == 1
    assert one_line(result.err) == (
        f"error: cannot resolve {namespace}: no such namespace? check --namespace (e.g. myns.servicebus.windows.net)"
    )


def test_unknown_queue(tool: Tool, peer: ServiceBusPeer) -> None:
    result = tool("dlq", "list", "--queue", "no-such-queue")
    assert result.code == 1
    assert one_line(result.err) == (
        f"error: queue 'no-such-queue' does not exist in the local Service Bus peer at 127.0.0.1:{peer.port}: "
        "check the entity name and the namespace"
    )


def test_wrong_key(capsys: pytest.CaptureFixture[str], peer: ServiceBusPeer) -> None:
    wrong = peer.connection_string.replace("SAS_KEY_VALUE", "not-the-key")
    result = run(capsys, "send", "terminateJob", "--job", "j", "--connection-string", wrong)
    assert result.code == 1
    assert "refused the connection string's key: check SharedAccessKeyName and SharedAccessKey" in one_line(result.err)
    assert "not-the-key" not in result.err


def test_malformed_connection_string(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "dlq", "list", "--connection-string", "Endpoint=nonsense")
    assert result.code == 64
    assert "the connection string is malformed" in one_line(result.err)


def refuse(*_: Any, **__: Any) -> None:
    raise ServiceBusAuthorizationError(
        message="Unauthorized access. 'Send' claim(s) are required to perform this operation."
    )


@pytest.fixture
def as_namespace(monkeypatch: pytest.MonkeyPatch, peer: ServiceBusPeer) -> None:
    """Run with --namespace, but let the SDK talk to the local peer (the peer has no Entra ID)."""
    monkeypatch.setattr(
        "cli.__main__.open_client", lambda target: ServiceBusClient.from_connection_string(peer.connection_string)
    )


@pytest.mark.parametrize(
    ("argv", "patched", "role", "entity"),
    [
        (
            ["send", "terminateJob", "--job", "j"],
            (ServiceBusSender, "send_messages"),
            "Data Sender",
            "queue 'batch-commands'",
        ),
        (["dlq", "redrive", "--all"], (ServiceBusSender, "send_messages"), "Data Sender", "queue 'batch-commands'"),
        (["dlq", "list"], (ServiceBusReceiver, "peek_messages"), "Data Receiver", "queue 'batch-commands'"),
        (["dlq", "purge", "--yes"], (ServiceBusReceiver, "peek_messages"), "Data Receiver", "queue 'batch-commands'"),
        (
            ["watch", "--timeout", "2"],
            (ServiceBusReceiver, "peek_messages"),
            "Data Receiver",
            "subscription 'all-outcomes' of topic 'batch-outcomes'",
        ),
    ],
    ids=["send", "redrive", "dlq list", "purge", "watch"],
)
def test_missing_role_is_named(
    *,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    as_namespace: None,
    client: ServiceBusClient,
    argv: list[str],
    patched: tuple[type, str],
    role: str,
    entity: str,
) -> None:
    if "redrive" in argv:  # something to resend
        dead_letter(client, [("dl-1", "RetriesExhausted", "gave up")])
    monkeypatch.setattr(*patched, refuse)
    result = run(capsys, *argv, "--namespace", "myns")
    assert result.code == 1
    assert one_line(result.err) == (
        f'error: missing role: your identity needs "Azure Service Bus {role}" on {entity} (or on the namespace '
        "myns.servicebus.windows.net); a new role assignment takes a few minutes to apply"
    )


def test_no_azure_sign_in(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, as_namespace: None
) -> None:
    def no_token(*_: Any, **__: Any) -> None:
        cause = ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")
        raise ServiceBusError("Handler failed: DefaultAzureCredential failed to retrieve a token.", error=cause)

    monkeypatch.setattr(ServiceBusSender, "send_messages", no_token)
    result = run(capsys, "send", "terminateJob", "--job", "j", "--namespace", "myns.servicebus.windows.net")
    assert result.code == 1
    assert one_line(result.err).startswith(
        "error: cannot get an Entra ID token for myns.servicebus.windows.net (DefaultAzureCredential): sign in with "
        "`az login`"
    )


def test_a_sas_policy_without_the_right(tool: Tool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ServiceBusSender, "send_messages", refuse)
    result = tool("send", "terminateJob", "--job", "j")
    assert result.code == 1
    assert one_line(result.err) == (
        "error: not authorized: the connection string's policy needs the Send right on queue 'batch-commands'"
    )


def test_the_environment_chooses_the_target(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, peer: ServiceBusPeer
) -> None:
    monkeypatch.setenv(bus.ENV_CONNECTION, peer.connection_string)
    assert run(capsys, "send", "terminateJob", "--job", "j", "--command-id", "from-env").code == 0
    assert [m["message_id"] for m in peer.messages(QUEUE)] == ["from-env"]
    monkeypatch.setenv(bus.ENV_NAMESPACE, "myns")
    both = run(capsys, "dlq", "list")
    assert both.code == 64
    assert "both BATCH_LIFECYCLE_NAMESPACE and BATCH_LIFECYCLE_CONNECTION are set" in one_line(both.err)


def test_namespace_and_connection_string_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "dlq", "list", "--namespace", "myns", "--connection-string", local_connection(1))
    assert result.code == 64
    assert "give --namespace or --connection-string, not both" in one_line(result.err)


def test_usage_errors_exit_64_and_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "send", "noSuchAction").code == 64
    assert run(capsys, "frobnicate").code == 64
    assert run(capsys).code == 64
    helped = run(capsys, "--help")
    assert helped.code == 0
    assert "exit codes: 0 done" in helped.out


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("myns", "myns.servicebus.windows.net"),
        ("myns.servicebus.windows.net", "myns.servicebus.windows.net"),
        ("sb://myns.servicebus.windows.net/", "myns.servicebus.windows.net"),
        ("myns.servicebus.usgovcloudapi.net", "myns.servicebus.usgovcloudapi.net"),
    ],
)
def test_namespace_forms(given: str, expected: str) -> None:
    assert bus.resolve_target(given, None, {}).namespace == expected


def test_defaults_and_the_secret_stays_out_of_repr() -> None:
    target = bus.resolve_target(None, None, {})
    assert target.connection_string == bus.LOCAL_CONNECTION
    assert (target.host, target.local) == ("127.0.0.1:5672", True)
    assert "SharedAccessKey" not in repr(bus.Target(connection_string="Endpoint=sb://x/;SharedAccessKey=secret"))
    with pytest.raises(bus.UsageError):
        bus.normalize_namespace("not a host/name")
