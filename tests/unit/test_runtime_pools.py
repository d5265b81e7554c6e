"""The Batch client's pool managers (shared/runtime.py): the proxy decision, TLS, one shared pool.

``proxy_for`` is the decision requests made per request, taken once per endpoint when the pools are built.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import urllib3

from shared.runtime import POOL_SIZE, make_pools, proxy_for, tls_options

PROD = "https://prod.westeurope.batch.azure.com"
LOCAL = "http://127.0.0.1:8080"


def never(host: str) -> bool:
    return False


@pytest.mark.parametrize(
    ("endpoint", "proxies", "expected"),
    [
        (PROD, {}, None),
        (PROD, {"https": "http://proxy:3128"}, "http://proxy:3128"),
        (PROD, {"https": "https://proxy:3129"}, "https://proxy:3129"),
        (PROD, {"http": "http://proxy:3128"}, None),  # HTTP_PROXY is for http endpoints only
        (LOCAL, {"http": "http://proxy:3128", "https": "http://other:1"}, "http://proxy:3128"),
        (PROD, {"all": "http://proxy:3128"}, "http://proxy:3128"),  # ALL_PROXY when none names the scheme
        (PROD, {"all": "http://all:1", "https": "http://proxy:3128"}, "http://proxy:3128"),
        (PROD, {"https": "proxy:3128"}, "http://proxy:3128"),  # no scheme: http, as requests read it
        (PROD, {"https": ""}, None),
    ],
)
def test_the_proxy_for_an_endpoint(endpoint: str, proxies: dict[str, str], expected: str | None) -> None:
    assert proxy_for(endpoint, proxies, never) == expected


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("prod.westeurope.batch.azure.com", True),
        (".batch.azure.com", True),
        ("batch.azure.com", True),
        ("*", True),
        ("other.example, .batch.azure.com", True),
        ("other.example", False),
        ("", False),
    ],
)
def test_no_proxy_exempts_endpoints(no_proxy_environment: pytest.MonkeyPatch, no_proxy: str, bypassed: bool) -> None:
    """With what make_pools passes: the environment's proxies and urllib's NO_PROXY check."""
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy:3128")
    no_proxy_environment.setenv("NO_PROXY", no_proxy)
    proxies = urllib.request.getproxies()
    expected = None if bypassed else "http://proxy:3128"
    assert proxy_for(PROD, proxies, urllib.request.proxy_bypass) == expected
    assert proxy_for(PROD + ":443", proxies, urllib.request.proxy_bypass) == expected


def test_no_proxy_with_a_port_exempts_that_port_only(no_proxy_environment: pytest.MonkeyPatch) -> None:
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy:3128")
    no_proxy_environment.setenv("NO_PROXY", "prod.westeurope.batch.azure.com:8443")
    proxies = urllib.request.getproxies()
    assert proxy_for(PROD + ":8443", proxies, urllib.request.proxy_bypass) is None
    assert proxy_for(PROD, proxies, urllib.request.proxy_bypass) == "http://proxy:3128"


def test_the_bypass_is_asked_about_the_host_and_port_only() -> None:
    asked: list[str] = []

    def bypass(host: str) -> bool:
        asked.append(host)
        return True

    assert proxy_for("https://user@prod.example:8443", {"https": "http://proxy:1"}, bypass) is None
    assert asked == ["prod.example:8443"]


def test_certificates_are_verified_against_certifi_unless_requests_was_told_otherwise(tmp_path: Path) -> None:
    assert tls_options({}) == {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
    assert tls_options({"REQUESTS_CA_BUNDLE": "/etc/corp.pem"}) == {
        "cert_reqs": "CERT_REQUIRED",
        "ca_certs": "/etc/corp.pem",
    }
    assert tls_options({"CURL_CA_BUNDLE": "/etc/curl.pem"})["ca_certs"] == "/etc/curl.pem"
    assert tls_options({"REQUESTS_CA_BUNDLE": str(tmp_path)}) == {
        "cert_reqs": "CERT_REQUIRED",
        "ca_cert_dir": str(tmp_path),
    }


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An environment without proxy settings (getproxies reads every *_proxy variable)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    yield monkeypatch


def test_every_account_shares_one_pool_manager_without_retries(no_proxy_environment: pytest.MonkeyPatch) -> None:
    pools = make_pools({"prod": PROD, "dev": "https://dev.westeurope.batch.azure.com", "local": LOCAL})
    manager = pools["prod"]
    assert type(manager) is urllib3.PoolManager
    assert pools["dev"] is manager and pools["local"] is manager
    options = manager.connection_pool_kw
    assert (options["maxsize"], options["block"], options["cert_reqs"]) == (POOL_SIZE, False, "CERT_REQUIRED")
    assert options["retries"].total is False
    assert manager.pools._maxsize == 4  # num_pools


def test_a_proxied_endpoint_gets_a_proxy_manager_and_an_exempt_one_goes_direct(
    no_proxy_environment: pytest.MonkeyPatch,
) -> None:
    no_proxy_environment.setenv("HTTPS_PROXY", "http://ops%40corp:p%3Ass@proxy.corp:3128")
    no_proxy_environment.setenv("NO_PROXY", "dev.westeurope.batch.azure.com")
    pools = make_pools(
        {"prod": PROD, "dev": "https://dev.westeurope.batch.azure.com", "eu": PROD.replace("prod", "eu")}
    )
    proxied, direct = pools["prod"], pools["dev"]
    assert isinstance(proxied, urllib3.ProxyManager) and pools["eu"] is proxied
    assert type(direct) is urllib3.PoolManager
    assert proxied.proxy is not None and (proxied.proxy.host, proxied.proxy.port) == ("proxy.corp", 3128)
    # Credentials in the proxy URL are sent as Proxy-Authorization, decoded as requests decoded them.
    assert proxied.proxy_headers == urllib3.make_headers(proxy_basic_auth="ops@corp:p:ss")
    assert proxied.connection_pool_kw["maxsize"] == POOL_SIZE
    assert proxied.connection_pool_kw["retries"].total is False


def test_an_unusable_proxy_url_fails_without_quoting_it(no_proxy_environment: pytest.MonkeyPatch) -> None:
    no_proxy_environment.setenv("HTTPS_PROXY", "socks5://user:hunter2@proxy.corp:1080")
    with pytest.raises(ValueError, match="not a usable") as raised:
        make_pools({"prod": PROD})
    assert "hunter2" not in str(raised.value) and raised.value.__cause__ is None
