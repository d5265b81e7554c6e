"""The managed-identity endpoint, driven by the real azure-identity ManagedIdentityCredential."""

from __future__ import annotations

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from emulators.batch import BATCH_AUDIENCE, DEFAULT_JWKS_URL
from emulators.identity import DEFAULT_HEADER_SECRET, DEFAULT_PORT, IdentityEndpoint
from tests.batch_emulator.helpers import BATCH_SCOPE, point_credential_at


def test_token_for_the_batch_resource(idp: IdentityEndpoint, credential: ManagedIdentityCredential) -> None:
    before = idp.token_requests
    access = credential.get_token(BATCH_SCOPE)
    keys = jwt.PyJWKClient(idp.jwks_url).get_signing_key_from_jwt(access.token)
    claims = jwt.decode(access.token, keys.key, algorithms=["RS256"], audience=BATCH_AUDIENCE)
    assert claims["aud"] == "https://batch.core.windows.net/"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(access.expires_on - claims["exp"]) <= 1
    credential.get_token(BATCH_SCOPE)  # served from the credential's cache
    assert idp.token_requests == before + 1


def test_user_assigned_identity_client_id(idp: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    point_credential_at(monkeypatch, idp.token_url, idp.header_secret)
    token = ManagedIdentityCredential(client_id="my-uami").get_token(BATCH_SCOPE).token
    assert jwt.decode(token, options={"verify_signature": False})["appid"] == "my-uami"


def test_wrong_secret_is_refused(idp: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    point_credential_at(monkeypatch, idp.token_url, "not-the-secret")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token(BATCH_SCOPE)


def test_missing_secret_or_resource_is_refused(idp: IdentityEndpoint) -> None:
    query = {"api-version": "2019-08-01", "resource": "https://batch.core.windows.net/"}
    assert requests.get(idp.token_url, params=query, timeout=5).status_code == 401
    headers = {"X-IDENTITY-HEADER": idp.header_secret}
    no_resource = requests.get(idp.token_url, params={"api-version": "2019-08-01"}, headers=headers, timeout=5)
    assert no_resource.status_code == 400
    old_version = requests.get(idp.token_url, params={**query, "api-version": "2017-09-01"}, headers=headers, timeout=5)
    assert old_version.status_code == 400


def test_lifetime_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    with IdentityEndpoint(port=0, header_secret="short", token_lifetime=600) as short:
        point_credential_at(monkeypatch, short.token_url, "short")
        token = ManagedIdentityCredential().get_token(BATCH_SCOPE).token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600


def test_secret_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "from-env")
    assert IdentityEndpoint(port=0).header_secret == "from-env"
    monkeypatch.delenv("IDENTITY_HEADER")
    assert IdentityEndpoint(port=0).header_secret == DEFAULT_HEADER_SECRET


def test_jwks_and_openid_configuration(idp: IdentityEndpoint) -> None:
    keys = requests.get(idp.jwks_url, timeout=5).json()["keys"]
    assert [(key["kty"], key["alg"], key["use"]) for key in keys] == [("RSA", "RS256", "sig")]
    config = requests.get(f"{idp.url}/.well-known/openid-configuration", timeout=5).json()
    assert config["jwks_uri"] == idp.jwks_url


def test_default_wiring_needs_no_flags() -> None:
    """Started with defaults, the Batch emulator trusts the keys of the default identity endpoint."""
    defaults = IdentityEndpoint()
    assert defaults.port == DEFAULT_PORT
    assert defaults.jwks_url == DEFAULT_JWKS_URL
