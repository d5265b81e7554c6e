"""Claims-based security: checking the tokens the SDK puts on the ``$cbs`` node.

The SDK always reports token type "jwt", so the kind is told by the token itself: a SAS token starts with
``SharedAccessSignature ``; anything else must be a JWT for the Service Bus audience.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlparse

SAS_PREFIX = "SharedAccessSignature "
JWT_AUDIENCES = frozenset({"https://servicebus.azure.net", "https://servicebus.azure.net/"})


class TokenRejected(Exception):
    """The token does not authorise the requested audience (reported as 401)."""


@dataclass(frozen=True)
class SasKey:
    name: str
    key: str


def audience_path(audience: str) -> str:
    """The entity path an ``sb://host[:port]/path`` audience covers ("" for the whole namespace)."""
    return urlparse(audience).path.strip("/").lower()


def covers(granted: str, path: str) -> bool:
    """Whether a token for the ``granted`` path authorises ``path`` (a namespace token covers all)."""
    path = path.lower()
    return not granted or path == granted or path.startswith(granted + "/")


def check_token(token: str, audience: str, sas: SasKey, now: float) -> None:
    """Raise TokenRejected unless the token is valid now for ``audience``."""
    if token.startswith(SAS_PREFIX):
        _check_sas(token[len(SAS_PREFIX) :], audience, sas, now)
    else:
        _check_jwt(token, now)


def _check_sas(token: str, audience: str, sas: SasKey, now: float) -> None:
    fields = dict(part.partition("=")[::2] for part in token.split("&"))
    try:
        resource, signature, expiry, key_name = (fields[k] for k in ("sr", "sig", "se", "skn"))
    except KeyError as exc:
        raise TokenRejected(f"SAS token lacks {exc}") from exc
    if key_name != sas.name:
        raise TokenRejected(f"unknown shared access key name '{key_name}'")
    # The signature covers the resource URI exactly as the client encoded it in the token.
    digest = hmac.new(sas.key.encode(), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), unquote_plus(signature)):
        raise TokenRejected("invalid SAS signature")
    if not expiry.isdigit() or int(expiry) <= now:
        raise TokenRejected("SAS token expired")
    if not covers(audience_path(unquote_plus(resource)), audience_path(audience)):
        raise TokenRejected(f"SAS token for '{unquote_plus(resource)}' does not cover '{audience}'")


def _check_jwt(token: str, now: float) -> None:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected("token is neither a SAS token nor a JWT")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected("unreadable JWT") from exc
    if not isinstance(claims, dict):
        raise TokenRejected("unreadable JWT")
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not JWT_AUDIENCES.intersection(a for a in audiences if isinstance(a, str)):
        raise TokenRejected(f"JWT audience {claims.get('aud')!r} is not Service Bus")
    expiry = claims.get("exp")
    if isinstance(expiry, (int, float)) and expiry <= now:
        raise TokenRejected("JWT expired")
