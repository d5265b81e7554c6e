"""Process-wide clients, created lazily on first use and shared by every invocation.

Nothing here runs at import time: the Functions host imports ``function_app`` while the instance
is scaling from zero, and no network call or slow construction belongs on that path. Each object
is built once per process under a lock, because the worker runs invocations on several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

import requests
from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from requests.adapters import HTTPAdapter

from shared.batch_client import BatchClient
from shared.config import load_settings
from shared.processor import Processor
from shared.servicebus import ServiceBusGateway, make_client

if TYPE_CHECKING:
    from requests.sessions import _Settings

T = TypeVar("T")
POOL_SIZE = 32  # keep-alive connections per Batch host; above the worker's default thread count


class Lazy(Generic[T]):
    """A value built on first use, exactly once, even when threads race for it."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value


def make_credential(client_id: str | None) -> TokenCredential:
    """A user-assigned managed identity by client id in Azure; the default chain for local use."""
    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


class EnvironmentOnceSession(requests.Session):
    """A ``requests.Session`` that resolves its environment settings once per host, not per request.

    With ``trust_env`` (kept on: proxies, ``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` are still honoured)
    requests scans the whole process environment twice on every request to find proxies; that was about
    a quarter of a Batch call's client CPU. The app reads its settings once per process anyway, so the
    merged result is kept per (scheme, host, port) and per argument combination. Per-request ``proxies``
    bypass the cache.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[object, ...], _Settings] = {}

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        if proxies or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment[key] = settings  # a racing thread computes the same value; dict writes are atomic
        copied = settings.copy()
        copied["proxies"] = dict(settings["proxies"])
        return copied


def make_session() -> requests.Session:
    session = EnvironmentOnceSession()
    # Retries are the policy's job (scheduled Service Bus copies), never hidden inside HTTP.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class Runtime:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.settings = Lazy(lambda: load_settings(env))
        self.credential = Lazy(lambda: make_credential(self.settings.get().client_id))
        self.batch = Lazy(self._make_batch)
        self.bus = Lazy(self._make_bus)
        self.processor = Lazy(lambda: Processor(self.settings.get(), self.batch.get(), self.bus.get()))

    def _make_batch(self) -> BatchClient:
        settings = self.settings.get()
        return BatchClient(
            settings.accounts,
            self.credential.get(),
            make_session(),
            settings.api_version,
            (settings.connect_timeout, settings.read_timeout),
        )

    def _make_bus(self) -> ServiceBusGateway:
        settings = self.settings.get()
        client = make_client(settings.servicebus, self.credential.get)
        return ServiceBusGateway(
            client, settings.servicebus.queue, settings.servicebus.topic, settings.servicebus_timeout
        )


_process_runtime = Lazy(Runtime)
_installed: Runtime | None = None


def set_runtime(replacement: Runtime | None) -> None:
    """Make every function use ``replacement`` (tests and the local host build one from their own
    settings and stand-ins); ``None`` goes back to the process default built from the environment."""
    global _installed  # noqa: PLW0603 - the one process-wide switch, by design
    _installed = replacement


def runtime() -> Runtime:
    return _installed if _installed is not None else _process_runtime.get()
