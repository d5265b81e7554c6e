"""Where the tool connects, and the one-line errors for the usual mistakes.

Two ways to reach Service Bus, with the same subcommands: a namespace with ``DefaultAzureCredential``
(Azure, where local auth is off) or a connection string (the local peer). SDK failures are turned into
one line that says what to do, naming the role that is missing; no traceback.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import ServiceBusClient
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

# The local peer's (and the official emulator's) well-known connection string; its key is public.
LOCAL_CONNECTION: Final = (
    "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)
ENV_CONNECTION: Final = "BATCH_LIFECYCLE_CONNECTION"
ENV_NAMESPACE: Final = "BATCH_LIFECYCLE_NAMESPACE"
SENDER: Final = "Azure Service Bus Data Sender"
RECEIVER: Final = "Azure Service Bus Data Receiver"
# A SAS policy grants rights instead of roles.
_RIGHT: Final = {SENDER: "Send", RECEIVER: "Listen"}
# A CLI fails fast: two quick retries instead of the SDK's default of three with 0.8 s exponential backoff.
_RETRIES: Final = 2
_BACKOFF: Final = 0.3
_BACKOFF_MAX: Final = 2.0
_HOST: Final = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")


class CliError(Exception):
    """A failure the user can fix: printed as one line, exit code 1."""

    exit_code = 1


class UsageError(CliError):
    """The command line itself is wrong (exit code 64, as argparse's own errors in this tool)."""

    exit_code = 64


@dataclass(frozen=True)
class Target:
    """A namespace (Entra ID) or a connection string (SAS); the connection string stays out of repr."""

    namespace: str | None = None
    connection_string: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        if self.namespace is not None:
            return self.namespace
        match = re.search(r"Endpoint=sb://([^;/]+)", self.connection_string or "", re.IGNORECASE)
        return match.group(1) if match else "the connection string's endpoint"

    @property
    def local(self) -> bool:
        """The development emulator / local peer (or anything on a loopback address)."""
        text = (self.connection_string or "").lower()
        return "usedevelopmentemulator=true" in text or self.host.split(":")[0] in ("127.0.0.1", "localhost", "::1")

    def describe(self) -> str:
        if self.namespace is not None:
            return f"namespace {self.namespace}"
        return f"the local Service Bus peer at {self.host}" if self.local else f"Service Bus at {self.host}"


@dataclass(frozen=True)
class Access:
    """What an operation needs: the role (on Azure) and the entity it touches, for error messages."""

    role: str
    entity: str


def queue_access(role: str, queue: str) -> Access:
    return Access(role, f"queue '{queue}'")


def topic_access(topic: str, subscription: str) -> Access:
    return Access(RECEIVER, f"subscription '{subscription}' of topic '{topic}'")


def resolve_target(namespace: str | None, connection_string: str | None, environ: Mapping[str, str]) -> Target:
    """Flags win over the environment; without either, the local peer on 127.0.0.1:5672."""
    if namespace and connection_string:
        raise UsageError("give --namespace or --connection-string, not both")
    if namespace:
        return Target(namespace=normalize_namespace(namespace))
    if connection_string:
        return Target(connection_string=connection_string)
    env_namespace = environ.get(ENV_NAMESPACE, "").strip()
    env_connection = environ.get(ENV_CONNECTION, "").strip()
    if env_namespace and env_connection:
        raise UsageError(
            f"both {ENV_NAMESPACE} and {ENV_CONNECTION} are set; unset one, or pass --namespace or --connection-string"
        )
    if env_namespace:
        return Target(namespace=normalize_namespace(env_namespace))
    if env_connection:
        return Target(connection_string=env_connection)
    return Target(connection_string=LOCAL_CONNECTION)


def normalize_namespace(text: str) -> str:
    """``myns``, ``myns.servicebus.windows.net`` or ``sb://myns.servicebus.windows.net/`` -> the host name."""
    host = re.sub(r"^[a-z]+://", "", text.strip(), flags=re.IGNORECASE).rstrip("/")
    if not _HOST.fullmatch(host):
        raise UsageError(f"--namespace {text[:80]!r} is not a host name; use e.g. myns.servicebus.windows.net")
    return host if "." in host else f"{host}.servicebus.windows.net"


def open_client(target: Target) -> ServiceBusClient:
    if target.namespace is not None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only Azure needs it

        return ServiceBusClient(
            target.namespace,
            DefaultAzureCredential(),
            retry_total=_RETRIES,
            retry_backoff_factor=_BACKOFF,
            retry_backoff_max=_BACKOFF_MAX,
        )
    try:
        return ServiceBusClient.from_connection_string(
            target.connection_string or "",
            retry_total=_RETRIES,
            retry_backoff_factor=_BACKOFF,
            retry_backoff_max=_BACKOFF_MAX,
        )
    except ValueError:
        raise UsageError(
            "the connection string is malformed; expected "
            "Endpoint=sb://<host>;SharedAccessKeyName=<name>;SharedAccessKey=<key>[;UseDevelopmentEmulator=true]"
        ) from None


@contextlib.contextmanager
def talking(target: Target, access: Access) -> Iterator[None]:
    """Turn the SDK's failures inside the block into one CliError line."""
    try:
        yield
    except CliError:
        raise
    except (ServiceBusError, ClientAuthenticationError) as exc:
        raise CliError(explain(exc, target, access)) from None


def explain(exc: BaseException, target: Target, access: Access) -> str:  # noqa: PLR0911 - one answer per mistake
    """One line for an SDK failure: what is wrong and what to do."""
    causes = list(_causes(exc))
    if any(isinstance(cause, ClientAuthenticationError) for cause in causes):
        return (
            f"cannot get an Entra ID token for {target.host} (DefaultAzureCredential): sign in with `az login` "
            "(or set up a managed identity or the AZURE_CLIENT_ID/AZURE_TENANT_ID environment), then retry"
        )
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        if target.namespace is not None:
            return (
                f"cannot resolve {target.host}: no such namespace? check --namespace (e.g. myns.servicebus.windows.net)"
            )
        return f"cannot resolve {target.host}: check the Endpoint of the connection string"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        if target.local:
            return (
                f"no Service Bus peer is listening on {target.host} (connection refused): start it with `make run` "
                "(or `python -m emulators.servicebus`), or point --connection-string at a running one"
            )
        return f"{target.host} refused the connection: check the namespace and that AMQP (port 5671) is allowed out"
    if isinstance(exc, MessagingEntityNotFoundError):
        return f"{access.entity} does not exist in {target.describe()}: check the entity name and the namespace"
    if isinstance(exc, ServiceBusAuthorizationError):
        if target.namespace is not None:
            return (
                f'missing role: your identity needs "{access.role}" on {access.entity} (or on the namespace '
                f"{target.namespace}); a new role assignment takes a few minutes to apply"
            )
        return (
            f"not authorized: the connection string's policy needs the {_RIGHT[access.role]} right on {access.entity}"
        )
    if isinstance(exc, ServiceBusAuthenticationError):
        if target.namespace is not None:
            return (
                f"{target.namespace} refused your token: check that you signed in to the namespace's tenant and that "
                f'your identity holds "{access.role}" on {access.entity}'
            )
        return f"{target.describe()} refused the connection string's key: check SharedAccessKeyName and SharedAccessKey"
    if isinstance(exc, OperationTimeoutError):
        return f"{target.describe()} did not answer in time ({access.entity}); try again"
    if isinstance(exc, ServiceBusConnectionError | ServiceBusCommunicationError):
        return f"cannot reach {target.describe()}: {_first_line(exc)}"
    return f"Service Bus error on {access.entity} ({target.describe()}): {_first_line(exc)}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (the SDK keeps the original in ``inner_exception``)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "inner_exception", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
