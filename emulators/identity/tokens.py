"""Signing key and JWT minting for the local managed-identity endpoint."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"
# The identity a token stands for when the caller names no user-assigned identity.
SYSTEM_ASSIGNED_OBJECT_ID = "00000000-0000-4000-8000-000000000001"


class TokenIssuer:
    """Holds one RSA key pair per process and signs access tokens with it."""

    def __init__(self, lifetime_seconds: int) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # A key id derived from the key lets verifiers notice a restarted endpoint and refetch.
        self.key_id = hashlib.sha256(public_der).hexdigest()[:16]

    def issue(
        self, resource: str, issuer: str, client_id: str | None = None, lifetime: int | None = None
    ) -> tuple[str, int]:
        """Return (token, expires_on epoch seconds) for `resource`, the token's audience."""
        now = int(time.time())
        expires_on = now + (self.lifetime_seconds if lifetime is None else lifetime)
        subject = client_id or SYSTEM_ASSIGNED_OBJECT_ID
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "sub": subject,
            "oid": subject,
            "appid": client_id or SYSTEM_ASSIGNED_OBJECT_ID,
            "idtyp": "app",
            "uti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return token, expires_on

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set, the form verifiers fetch."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.key_id, "use": "sig", "alg": ALGORITHM})
        return {"keys": [jwk]}
