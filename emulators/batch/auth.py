"""Bearer-token checks: RS256 signature against the identity endpoint's JWKS, expiry and audience."""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt

from emulators.batch.errors import BatchApiError

BATCH_AUDIENCE = "https://batch.core.windows.net/"
# The default identity endpoint's key set (python -m emulators.identity with default flags).
DEFAULT_JWKS_URL = "http://127.0.0.1:8092/.well-known/jwks.json"
_CACHE_LIMIT = 10_000


def _auth_failed(detail: str) -> BatchApiError:
    return BatchApiError("AuthenticationFailed", {"AuthenticationErrorDetail": detail})


class TokenVerifier:
    """Verifies `Authorization` headers; keys are fetched lazily from `jwks_url` and cached."""

    def __init__(self, jwks_url: str | None = DEFAULT_JWKS_URL, accept_any_token: bool = False) -> None:
        self.accept_any_token = accept_any_token
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None
        # Verified token -> its expiry, so a reused token costs a dict lookup instead of an RSA check.
        self._verified: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, authorization: str | None) -> None:
        """Raise BatchApiError (401 AuthenticationFailed, 400 InvalidAuthenticationInfo) unless valid."""
        if self.accept_any_token:
            return
        if not authorization:
            raise _auth_failed("The request has no Authorization header.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BatchApiError(
                "InvalidAuthenticationInfo",
                {"AuthenticationErrorDetail": "Expected 'Authorization: Bearer <access token>'."},
            )
        token = token.strip()
        expiry = self._verified.get(token)
        if expiry is not None and expiry > time.time():
            return
        claims = self._decode(token)
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = float(claims["exp"])

    def _decode(self, token: str) -> dict[str, Any]:
        if self._jwks is None:
            raise _auth_failed("No token signing keys are configured on this emulator.")
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise _auth_failed(f"The token signing keys could not be fetched: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise _auth_failed(f"The access token is malformed or signed by an unknown key: {exc}") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=["RS256"], audience=BATCH_AUDIENCE, options={"require": ["exp", "aud"]}
            )
        except jwt.InvalidAudienceError as exc:
            audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
            raise _auth_failed(
                f"The access token has been obtained from wrong audience or resource '{audience}'. "
                f"It should exactly match (including forward slash) with the allowed audience '{BATCH_AUDIENCE}'."
            ) from exc
        except jwt.ExpiredSignatureError as exc:
            raise _auth_failed("The access token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise _auth_failed(f"The access token is not valid: {exc}") from exc
        return claims
