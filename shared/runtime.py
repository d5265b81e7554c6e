"""Process-wide clients, created lazily on first use and shared by every invocation.

Nothing here runs at import time: the Functions host imports ``function_app`` while the instance
is scaling from zero, and no network call or slow construction belongs on that path. Each object
is built once per process under a lock, because the worker runs invocations on several threads.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.batch_client import BatchClient
from shared.config import load_settings
from shared.processor import Processor
from shared.servicebus import ServiceBusGateway, make_client

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


def proxy_for(endpoint: str, proxies: Mapping[str, str], bypass: Callable[[str], bool]) -> str | None:
    """The proxy ``endpoint``'s calls go through, or None for a direct connection; as requests chose.

    ``proxies`` is ``urllib.request.getproxies()`` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; lower case first)
    and ``bypass`` is ``urllib.request.proxy_bypass`` (NO_PROXY). A proxy without a scheme is http.
    """
    parts = urlsplit(endpoint)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or bypass(parts.netloc.rpartition("@")[2]):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def tls_options(env: Mapping[str, str]) -> dict[str, str]:
    """Verify certificates against certifi's bundle, or a REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE file or
    directory, as requests did."""
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if bundle and os.path.isdir(bundle):
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": bundle}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle or certifi.where()}


def make_pools(endpoints: Mapping[str, str]) -> dict[str, urllib3.PoolManager]:
    """Account alias -> the pool manager its Batch calls go through, with proxies resolved once, now.

    One ``urllib3.PoolManager`` serves every account reached directly; an endpoint a proxy covers gets a
    ``urllib3.ProxyManager`` (one per proxy). Each is thread-safe and shared by the worker's threads
    without a lock of ours; ``block=False`` opens an extra connection rather than wait when all
    ``POOL_SIZE`` are busy. Retries are the policy's job (scheduled Service Bus copies), never hidden
    inside HTTP, and redirects are never followed.
    """
    options: dict[str, Any] = {
        "num_pools": 4,
        "maxsize": POOL_SIZE,
        "block": False,
        "retries": False,
        **tls_options(os.environ),
    }
    proxies = urllib.request.getproxies()
    managers: dict[str | None, urllib3.PoolManager] = {}
    pools: dict[str, urllib3.PoolManager] = {}
    for account, endpoint in endpoints.items():
        proxy = proxy_for(endpoint, proxies, urllib.request.proxy_bypass)
        if proxy not in managers:
            managers[proxy] = urllib3.PoolManager(**options) if proxy is None else _proxy_manager(proxy, options)
        pools[account] = managers[proxy]
    return pools


def _proxy_manager(proxy: str, options: Mapping[str, Any]) -> urllib3.ProxyManager:
    try:
        parts = urlsplit(proxy)
        headers = None
        if parts.username is not None:  # credentials in the proxy URL, sent as requests sent them
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers = urllib3.make_headers(proxy_basic_auth=credentials)
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)
    except ValueError:  # the text may quote the URL, and with it the proxy's credentials
        raise ValueError("the proxy environment setting for Batch is not a usable http(s) proxy URL") from None


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
            make_pools(settings.accounts),
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
