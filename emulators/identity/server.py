"""HTTP side of the managed-identity endpoint: the App Service token protocol plus a JWKS document."""

from __future__ import annotations

import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from emulators._http import BackgroundHttpServer, QuietHandler
from emulators.identity.tokens import TokenIssuer

DEFAULT_PORT = 8092
DEFAULT_HEADER_SECRET = "local-identity-secret"  # noqa: S105 - a documented loopback default
TOKEN_PATH = "/msi/token"  # noqa: S105 - a URL path, not a secret
JWKS_PATH = "/.well-known/jwks.json"
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
SUPPORTED_API_VERSIONS = frozenset({"2019-08-01"})


class IdentityEndpoint(BackgroundHttpServer):
    """Local stand-in for the App Service managed-identity endpoint (`IDENTITY_ENDPOINT`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        header_secret: str | None = None,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__(host, port)
        self.header_secret = header_secret or os.environ.get("IDENTITY_HEADER") or DEFAULT_HEADER_SECRET
        self.issuer = TokenIssuer(token_lifetime)
        self._count_lock = threading.Lock()
        self.token_requests = 0

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    def issue_token(self, resource: str, client_id: str | None = None, lifetime: int | None = None) -> tuple[str, int]:
        """Mint a token directly, e.g. for a test that needs another audience or an expired token."""
        return self.issuer.issue(resource, issuer=self.url + "/", client_id=client_id, lifetime=lifetime)

    def count_token_request(self) -> None:
        with self._count_lock:
            self.token_requests += 1

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(_IdentityHandler):
            owner = endpoint

        return Handler


class _IdentityHandler(QuietHandler):
    owner: IdentityEndpoint

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == TOKEN_PATH:
            self._token(parse_qs(parts.query))
        elif parts.path == JWKS_PATH:
            self._json(200, self.owner.issuer.jwks())
        elif parts.path == OPENID_CONFIGURATION_PATH:
            self._json(200, {"issuer": self.owner.url + "/", "jwks_uri": self.owner.jwks_url})
        else:
            self._json(404, {"statusCode": 404, "message": f"No such path: {parts.path}"})

    def _token(self, query: dict[str, list[str]]) -> None:
        presented = self.headers.get("X-IDENTITY-HEADER", "")
        if not hmac.compare_digest(presented.encode(), self.owner.header_secret.encode()):
            self._json(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."})
            return
        api_version = query.get("api-version", [""])[0]
        if api_version not in SUPPORTED_API_VERSIONS:
            self._json(400, {"statusCode": 400, "message": f"Unsupported api-version '{api_version}'."})
            return
        resource = query.get("resource", [""])[0]
        if not resource:
            self._json(400, {"statusCode": 400, "message": "The 'resource' query parameter is required."})
            return
        client_id = query.get("client_id", [None])[0]
        self.owner.count_token_request()
        token, expires_on = self.owner.issue_token(resource, client_id)
        body: dict[str, Any] = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
        }
        if client_id:
            body["client_id"] = client_id
        self._json(200, body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_whole(status, [("Content-Type", "application/json")], body)
