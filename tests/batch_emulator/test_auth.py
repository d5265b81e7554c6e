"""Bearer-token checks of the Batch emulator, and the api-version / routing refusals."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from tests.batch_emulator.helpers import API_VERSION_2024, RawApi, error_code, failure, make_client


def auth_detail(response: requests.Response) -> str:
    body = response.json()
    assert (response.status_code, body["code"]) == (401, "AuthenticationFailed")
    return str({item["key"]: item["value"] for item in body["values"]}["AuthenticationErrorDetail"])


def test_sdk_with_managed_identity_is_accepted(emu: BatchEmulator, client: Any, idp: IdentityEndpoint) -> None:
    emu.seed_job("job1")
    assert client.get_job("job1").id == "job1"


def test_single_slash_scope_gets_a_wrong_audience_401(
    emu: BatchEmulator, credential: ManagedIdentityCredential
) -> None:
    """The classic mistake: scope '.../.default' asks for resource 'https://batch.core.windows.net'."""
    emu.seed_job("job1")
    wrong = make_client(emu.url, credential, credential_scopes=["https://batch.core.windows.net/.default"])
    status, code = failure(lambda: wrong.get_job("job1"), ClientAuthenticationError)
    assert (status, code) == (401, "AuthenticationFailed")


def test_wrong_audience_detail(emu: BatchEmulator, idp: IdentityEndpoint) -> None:
    token, _ = idp.issue_token("https://management.azure.com/")
    response = RawApi(emu.url, token).call("GET", "/jobs")
    assert "wrong audience" in auth_detail(response)
    assert "https://management.azure.com/" in auth_detail(response)


def test_missing_header_is_401(emu: BatchEmulator) -> None:
    assert "no Authorization header" in auth_detail(RawApi(emu.url, None).call("GET", "/jobs"))


def test_expired_token_is_401(emu: BatchEmulator, idp: IdentityEndpoint) -> None:
    token, _ = idp.issue_token("https://batch.core.windows.net/", lifetime=-5)
    assert "expired" in auth_detail(RawApi(emu.url, token).call("GET", "/jobs"))


def test_token_from_another_issuer_is_401(emu: BatchEmulator) -> None:
    with IdentityEndpoint(port=0) as stranger:
        token, _ = stranger.issue_token("https://batch.core.windows.net/")
    assert "unknown key" in auth_detail(RawApi(emu.url, token).call("GET", "/jobs"))


def test_tampered_token_is_401(emu: BatchEmulator, idp: IdentityEndpoint) -> None:
    token, _ = idp.issue_token("https://batch.core.windows.net/")
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "oid": "someone-else"}, "k" * 32, algorithm="HS256").split(".")[1]
    assert "not valid" in auth_detail(RawApi(emu.url, f"{header}.{forged}.{signature}").call("GET", "/jobs"))


def test_garbage_token_is_401(emu: BatchEmulator) -> None:
    auth_detail(RawApi(emu.url, "not-a-jwt").call("GET", "/jobs"))


def test_non_bearer_scheme_is_invalid_authentication_info(emu: BatchEmulator) -> None:
    response = requests.get(
        f"{emu.url}/jobs", params={"api-version": "2025-06-01"}, headers={"Authorization": "Basic eDp5"}, timeout=5
    )
    assert (response.status_code, error_code(response)) == (400, "InvalidAuthenticationInfo")


def test_accept_any_token_switch() -> None:
    with BatchEmulator(port=0, jwks_url=None, accept_any_token=True) as open_emulator:
        open_emulator.seed_job("job1")
        response = RawApi(open_emulator.url, None).call("GET", "/jobs/job1")
        assert response.status_code == 200
        assert RawApi(open_emulator.url, "anything").call("GET", "/jobs/job1").status_code == 200


def test_keys_are_fetched_lazily_from_the_identity_url() -> None:
    """The emulator may start before the identity endpoint; keys are fetched at the first request."""
    with IdentityEndpoint(port=0) as later:
        port = later.port
    jwks_url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    with BatchEmulator(port=0, jwks_url=jwks_url) as emulator, IdentityEndpoint(port=port) as identity:
        token, _ = identity.issue_token("https://batch.core.windows.net/")
        assert RawApi(emulator.url, token).call("GET", "/jobs").status_code == 200


@pytest.mark.parametrize(
    ("api_version", "status", "code"),
    [
        (None, 400, "MissingRequiredQueryParameter"),
        ("2023-05-01.17.0", 400, "UnsupportedRequestVersion"),
        ("", 400, "MissingRequiredQueryParameter"),
    ],
)
def test_api_version_is_required(raw: RawApi, api_version: str | None, status: int, code: str) -> None:
    params = {} if api_version is None else {"api-version": api_version}
    response = raw.call("GET", "/jobs", api_version=None, params=params)
    assert (response.status_code, error_code(response)) == (status, code)


def test_both_api_versions_with_their_timeout_names(emu: BatchEmulator, raw: RawApi, credential: Any) -> None:
    emu.seed_job("job1")
    assert raw.call("GET", "/jobs/job1", params={"timeOut": "30"}).status_code == 200
    assert raw.call("GET", "/jobs/job1", api_version=API_VERSION_2024, params={"timeout": "30"}).status_code == 200
    bad = raw.call("GET", "/jobs/job1", params={"timeOut": "soon"})
    assert (bad.status_code, error_code(bad)) == (400, "InvalidQueryParameterValue")
    bad = raw.call("GET", "/jobs/job1", api_version=API_VERSION_2024, params={"timeout": "soon"})
    assert (bad.status_code, error_code(bad)) == (400, "InvalidQueryParameterValue")
    old_sdk = make_client(emu.url, credential, api_version=API_VERSION_2024)
    assert old_sdk.get_job("job1").id == "job1"


def test_unknown_paths_and_verbs(raw: RawApi) -> None:
    unknown = raw.call("GET", "/pools")
    assert (unknown.status_code, error_code(unknown)) == (400, "InvalidUri")
    wrong_verb = raw.call("PATCH", "/jobs/job1/tasks/t1")
    assert (wrong_verb.status_code, error_code(wrong_verb)) == (405, "UnsupportedHttpVerb")


def test_request_count_counts_api_calls_only(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    assert emu.request_count == 0
    raw.call("GET", "/jobs/job1")
    raw.call("GET", "/jobs/nope")
    requests.get(f"{emu.url}/_emulator/stats", timeout=5)
    assert emu.request_count == 2
