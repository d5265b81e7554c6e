"""Local managed-identity endpoint (App Service protocol) that issues signed JWTs."""

from emulators.identity.server import DEFAULT_HEADER_SECRET, DEFAULT_PORT, IdentityEndpoint

__all__ = ["DEFAULT_HEADER_SECRET", "DEFAULT_PORT", "IdentityEndpoint"]
